package warehouse

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
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
	Encode(ctx context.Context, table string, rows []Row) ([][]byte, error)
}

// ErrOffsetAhead: the stream ends before the offset appended at, so a
// batch before this one never wrote its rows. Retrying cannot fix it.
var ErrOffsetAhead = errors.New("append offset is past the stream's end")

// ErrRowsRejected: the API refused the rows themselves (INVALID_ARGUMENT,
// "a malformed request or data", as after a schema changed by hand), so
// appending the same rows at once would be refused again.
var ErrRowsRejected = errors.New("rows rejected")

// ErrSchemaNotSeen: the stream does not see columns the rows have yet
// (SCHEMA_MISMATCH_EXTRA_FIELDS): columns just added to the table, which
// BigQuery shows to the Storage Write API minutes later. Nothing was
// written; the same append succeeds once the stream sees them.
var ErrSchemaNotSeen = errors.New("the stream does not see the table's new columns yet")

// ErrRowTooLarge: one row is larger than an append request can carry, so
// the Storage Write API cannot take it however the rows are split (load
// jobs take rows up to 100 MB; see AppendRequestLimit).
var ErrRowTooLarge = errors.New("row larger than one append request can carry")

// AppendRequestLimit is BigQuery's limit on one AppendRows request: "10 MB"
// in its documentation, refused with INVALID_ARGUMENT ("AppendRows request
// too large: N limit 10485760"). It is read here as 10,000,000 bytes, the
// stricter reading, which the local Storage Write API enforces too.
const AppendRequestLimit = 10_000_000

// appendEnvelope is the room each request keeps for what goes with its
// rows: the stream's name, the offset, the trace ID and, in a
// connection's first request, the writer schema (a few KB for paystream's
// widest table).
const appendEnvelope = 1 << 20

// MaxAppendBytes bounds the rows of one append as they go on the wire
// (each row with its field tag and length): the request limit less the
// envelope. It is also the largest row the storagewrite mode can write.
const MaxAppendBytes = AppendRequestLimit - appendEnvelope

// MaxAppendRows bounds the rows of one append, so that a batch of small
// rows still goes in requests the API answers quickly.
const MaxAppendRows = 5000

// appendChunk is one append request: rows at a stream offset.
type appendChunk struct {
	Offset int64
	Rows   [][]byte
	Bytes  int // the rows' size on the wire
}

// appendChunks splits rows, to be written from offset on, into the
// appends AppendOnce makes, in order: each takes as many rows as fit in
// maxRows and in maxBytes on the wire, and starts where the one before
// ended. The split depends only on the rows' sizes, which are the same on
// every attempt of a batch (its rows follow from its records and recorded
// decisions; loaded_at, the one value that changes, is a TIMESTAMP whose
// encoding is 8 bytes for any time from 1988 to 4253), so each attempt
// appends the same ranges at the same offsets. A row larger than maxBytes
// is ErrRowTooLarge, before anything is appended.
func appendChunks(offset int64, rows [][]byte, maxRows, maxBytes int) ([]appendChunk, error) {
	var chunks []appendChunk
	start, size := 0, 0
	for i, row := range rows {
		n := rowWireSize(row)
		if n > maxBytes {
			return nil, fmt.Errorf("%w: the row at offset %d is %d bytes on the wire, an append carries at most %d",
				ErrRowTooLarge, offset+int64(i), n, maxBytes)
		}
		if i > start && (i-start == maxRows || size+n > maxBytes) {
			chunks = append(chunks, appendChunk{Offset: offset + int64(start), Rows: rows[start:i], Bytes: size})
			start, size = i, 0
		}
		size += n
	}
	if start < len(rows) {
		chunks = append(chunks, appendChunk{Offset: offset + int64(start), Rows: rows[start:], Bytes: size})
	}
	return chunks, nil
}

// rowWireSize is the size of a serialized row in an append request: an
// element of ProtoRows.serialized_rows (field 1), its tag and length first.
func rowWireSize(row []byte) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(row))
}

// AppendOnce makes rows be at [offset, offset+len(rows)) of stream exactly
// once, whatever earlier attempts did: the rows go in the appends
// appendChunks splits them into, and one refused as already written
// (ALREADY_EXISTS) is completed if the stream ends inside it.
func AppendOnce(ctx context.Context, a Appender, stream, table string, offset int64, rows [][]byte) error {
	chunks, err := appendChunks(offset, rows, MaxAppendRows, MaxAppendBytes)
	if err != nil {
		return fmt.Errorf("append %d rows to %s (%s) at offset %d: %w", len(rows), table, stream, offset, err)
	}
	for _, c := range chunks {
		err := a.Append(ctx, stream, table, c.Offset, c.Rows)
		if alreadyExists(err) {
			err = completeWritten(ctx, a, stream, table, c)
		}
		switch {
		case err == nil:
		case outOfRange(err):
			return fmt.Errorf("%w: %s at offset %d: %v", ErrOffsetAhead, stream, c.Offset, err)
		case storageCode(err) == storagepb.StorageError_SCHEMA_MISMATCH_EXTRA_FIELDS:
			return fmt.Errorf("%w: %s at offset %d: %v", ErrSchemaNotSeen, stream, c.Offset, err)
		case status.Code(err) == codes.InvalidArgument:
			return fmt.Errorf("%w: %d rows (%d bytes) to %s at offset %d: %v", ErrRowsRejected, len(c.Rows), c.Bytes, stream, c.Offset, err)
		default:
			return fmt.Errorf("append %d rows (%d bytes) to %s at offset %d: %w", len(c.Rows), c.Bytes, stream, c.Offset, err)
		}
	}
	return nil
}

// completeWritten makes all of c be in the stream once an append of c was
// refused as already written. An earlier attempt that split the rows
// otherwise (another version, rows of other sizes) may have left the
// stream ending inside c. The end is found by appends of one row each, at
// offset o the row that belongs there, which are written only if the
// stream ends at o: a search from c's last row, which on a retry of the
// same split is the one append it takes. The rows after the end then go
// in one append.
func completeWritten(ctx context.Context, a Appender, stream, table string, c appendChunk) error {
	for {
		end := c.Offset + int64(len(c.Rows))
		lo, hi := c.Offset+1, end // the stream ends in [lo, hi]
		probe := end - 1
		for {
			if lo == end {
				return nil // all of c is written
			}
			i := probe - c.Offset
			err := a.Append(ctx, stream, table, probe, c.Rows[i:i+1])
			if err == nil {
				break
			}
			switch {
			case alreadyExists(err):
				lo = probe + 1
			case outOfRange(err):
				hi = probe - 1
			default:
				return err
			}
			if hi < lo { // another attempt appended meanwhile: the next attempt looks again
				return fmt.Errorf("the end of %s moved while appending rows [%d, %d) again", stream, c.Offset, end)
			}
			probe = lo + (hi-lo)/2
		}
		// The stream ended at probe and holds its row now: the rest follows.
		rest := appendChunk{Offset: probe + 1, Rows: c.Rows[probe+1-c.Offset:]}
		if len(rest.Rows) == 0 {
			return nil
		}
		err := a.Append(ctx, stream, table, rest.Offset, rest.Rows)
		if !alreadyExists(err) {
			return err
		}
		c = rest // another attempt wrote some of it meanwhile
	}
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
