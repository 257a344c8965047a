package warehouse

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The storagewrite mode (docs/design.md §3.4) writes a batch's rows to a COMMITTED
// Storage Write API stream per (partition, table) at an offset the
// partition's workflow holds. BigQuery's documented offset semantics make
// an append exactly once: an append at the stream's end is written; at an
// offset already written it is refused with ALREADY_EXISTS, which means an
// earlier attempt wrote it (appends are atomic); past the end it is refused
// with OUT_OF_RANGE, which means an earlier batch is missing.

// Appender is a Storage Write API client: streams and appends. The
// production one is StorageWriter; tests use one that follows the
// documented semantics.
type Appender interface {
	// CreateStream creates a COMMITTED stream on table and names it.
	CreateStream(ctx context.Context, table string) (string, error)
	// Append writes rows (serialized protos of table's row message) to
	// stream at offset, all or nothing. The rows are the caller's again
	// once it returns.
	Append(ctx context.Context, stream, table string, offset int64, rows [][]byte) error
}

// StreamWriter is the Storage Write API as the storagewrite mode uses it:
// streams, appends at offsets, and each table's rows encoded for it
// (StorageWriter in production; tests use one that follows the documented
// semantics).
type StreamWriter interface {
	Appender
	Encode(ctx context.Context, table string, ndjson []byte) ([][]byte, error)
}

// ErrOffsetAhead: the stream ends before the offset appended at, so a
// batch before this one never wrote its rows. Retrying cannot fix it.
var ErrOffsetAhead = errors.New("append offset is past the stream's end")

// ErrRowsRejected: the API refused the rows themselves (INVALID_ARGUMENT,
// "a malformed request or data", as after a schema changed by hand), so
// appending the same rows at once would be refused again.
var ErrRowsRejected = errors.New("rows rejected")

// MaxAppendRows bounds one append request, well under the API's 10 MB
// request limit for paystream's widest rows (about 1 KB). A batch's rows
// are split the same way on every attempt, so each chunk has a fixed
// offset.
const MaxAppendRows = 5000

// AppendOnce makes rows be at [offset, offset+len(rows)) of stream exactly
// once, whatever earlier attempts did: each chunk already written is
// skipped (ALREADY_EXISTS).
func AppendOnce(ctx context.Context, a Appender, stream, table string, offset int64, rows [][]byte) error {
	for start := 0; start < len(rows); start += MaxAppendRows {
		chunk := rows[start:min(start+MaxAppendRows, len(rows))]
		at := offset + int64(start)
		err := a.Append(ctx, stream, table, at, chunk)
		switch {
		case err == nil, alreadyExists(err):
		case outOfRange(err):
			return fmt.Errorf("%w: %s at offset %d: %v", ErrOffsetAhead, stream, at, err)
		case status.Code(err) == codes.InvalidArgument:
			return fmt.Errorf("%w: %d rows to %s at offset %d: %v", ErrRowsRejected, len(chunk), stream, at, err)
		default:
			return fmt.Errorf("append %d rows to %s at offset %d: %w", len(chunk), stream, at, err)
		}
	}
	return nil
}

// alreadyExists and outOfRange read the answer both ways the API gives
// it: as the gRPC status code, or as a StorageError in its details.
func alreadyExists(err error) bool {
	return status.Code(err) == codes.AlreadyExists || storageCode(err) == storagepb.StorageError_OFFSET_ALREADY_EXISTS
}

func outOfRange(err error) bool {
	return status.Code(err) == codes.OutOfRange || storageCode(err) == storagepb.StorageError_OFFSET_OUT_OF_RANGE
}

func storageCode(err error) storagepb.StorageError_StorageErrorCode {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if se, ok := d.(*storagepb.StorageError); ok {
				return se.GetCode()
			}
		}
	}
	return storagepb.StorageError_STORAGE_ERROR_CODE_UNSPECIFIED
}
