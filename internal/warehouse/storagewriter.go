package warehouse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// StorageWriter is the Storage Write API client of the storagewrite mode:
// COMMITTED streams, appends at offsets, rows encoded from each table's
// schema. Safe for concurrent use.
type StorageWriter struct {
	client  *managedwriter.Client
	bq      *bigquery.Client
	dataset string

	mu       sync.Mutex
	encoders map[string]*RowEncoder
	streams  map[string]*managedwriter.ManagedStream
	// streamEnc is the encoder whose descriptor each stream was opened with.
	streamEnc map[string]*RowEncoder
	// lastUsed is when each open stream connection last appended: a
	// partition's run creates new streams at each continue-as-new, and a
	// connection left open for each old one would pile up for ever.
	lastUsed idleSet
	// oneAtATime serializes appends on the emulator, whose SQLite answers
	// concurrent ones with "database table is locked".
	oneAtATime *sync.Mutex
}

// streamIdle is how long a stream connection stays open without an
// append: well above the gap between a partition's batches, so a live
// partition keeps its connection, and reopening one costs a round trip.
const streamIdle = 5 * time.Minute

// idleSet tracks when names were last used.
type idleSet struct {
	at map[string]time.Time
}

// use marks name used at now.
func (s *idleSet) use(name string, now time.Time) {
	if s.at == nil {
		s.at = map[string]time.Time{}
	}
	s.at[name] = now
}

// idle removes and returns the names unused for longer than d at now.
func (s *idleSet) idle(now time.Time, d time.Duration) []string {
	var out []string
	for name, at := range s.at {
		if now.Sub(at) > d {
			out = append(out, name)
			delete(s.at, name)
		}
	}
	return out
}

// NewStorageWriter connects to the Storage Write API of bq's project:
// BigQuery's with Application Default Credentials, or the emulator's gRPC
// endpoint (host:port, plaintext) when emulator is set.
func NewStorageWriter(ctx context.Context, bq *bigquery.Client, dataset, emulator string) (*StorageWriter, error) {
	var opts []option.ClientOption
	if emulator != "" {
		opts = append(opts, option.WithEndpoint(emulator), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	// gRPC's reconnect backoff grows to two minutes; capped at two seconds,
	// as the HTTP client's dials are (redialing), appends go on within
	// seconds of an outage's end.
	opts = append(opts, option.WithGRPCDialOption(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: 2 * time.Second},
		MinConnectTimeout: 20 * time.Second,
	})))
	c, err := managedwriter.NewClient(ctx, bq.Project(), opts...)
	if err != nil {
		return nil, fmt.Errorf("open the Storage Write API of %s: %w", bq.Project(), err)
	}
	w := &StorageWriter{client: c, bq: bq, dataset: dataset, encoders: map[string]*RowEncoder{}, streams: map[string]*managedwriter.ManagedStream{}, streamEnc: map[string]*RowEncoder{}}
	if emulator != "" {
		w.oneAtATime = &sync.Mutex{}
	}
	return w, nil
}

// CreateStream creates a COMMITTED stream on table: rows appended to it
// are visible at once, and its offsets make appends exactly once.
func (w *StorageWriter) CreateStream(ctx context.Context, table string) (string, error) {
	ws, err := w.client.CreateWriteStream(ctx, &storagepb.CreateWriteStreamRequest{
		Parent:      managedwriter.TableParentFromParts(w.bq.Project(), w.dataset, table),
		WriteStream: &storagepb.WriteStream{Type: storagepb.WriteStream_COMMITTED},
	})
	if err != nil {
		return "", fmt.Errorf("create a write stream on %s: %w", table, err)
	}
	return ws.GetName(), nil
}

// Encode turns table's rows into its protos. A row with a column the
// table's schema, as first read, lacks has the schema read again: a
// column added since (a schema applied after the worker started) is
// written, not refused until a restart.
func (w *StorageWriter) Encode(ctx context.Context, table string, rows []Row) ([][]byte, error) {
	enc, err := w.encoder(ctx, table)
	if err != nil {
		return nil, err
	}
	encoded, err := enc.Encode(rows)
	if !errors.Is(err, ErrNotAColumn) {
		return encoded, err
	}
	w.mu.Lock()
	if w.encoders[table] == enc {
		delete(w.encoders, table)
	}
	w.mu.Unlock()
	if enc, err = w.encoder(ctx, table); err != nil {
		return nil, err
	}
	return enc.Encode(rows)
}

// Append writes rows to stream at offset, all or nothing; the answer is
// the API's (AppendOnce reads ALREADY_EXISTS and OUT_OF_RANGE).
func (w *StorageWriter) Append(ctx context.Context, stream, table string, offset int64, rows [][]byte) error {
	if w.oneAtATime != nil {
		w.oneAtATime.Lock()
		defer w.oneAtATime.Unlock()
	}
	ms, err := w.managed(ctx, stream, table)
	if err != nil {
		return err
	}
	res, err := ms.AppendRows(ctx, rows, managedwriter.WithOffset(offset))
	if err == nil {
		_, err = res.GetResult(ctx)
	}
	if err != nil {
		// A stream connection that failed is not reused.
		w.mu.Lock()
		delete(w.streams, stream)
		delete(w.streamEnc, stream)
		w.mu.Unlock()
		ms.Close()
	}
	return err
}

func (w *StorageWriter) managed(ctx context.Context, stream, table string) (*managedwriter.ManagedStream, error) {
	enc, err := w.encoder(ctx, table)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for _, name := range w.lastUsed.idle(now, streamIdle) {
		if ms := w.streams[name]; ms != nil && name != stream {
			ms.Close()
			delete(w.streams, name)
			delete(w.streamEnc, name)
		}
	}
	w.lastUsed.use(stream, now)
	if ms := w.streams[stream]; ms != nil && w.streamEnc[stream] == enc {
		return ms, nil
	} else if ms != nil {
		ms.Close() // opened with a schema read before a column was added
	}
	// The stream connection outlives the activity that opened it: later
	// batches append on it, so it is not bound to this call's context.
	ms, err := w.client.NewManagedStream(context.WithoutCancel(ctx), managedwriter.WithStreamName(stream), managedwriter.WithSchemaDescriptor(enc.Descriptor))
	if err != nil {
		return nil, fmt.Errorf("open write stream %s: %w", stream, err)
	}
	w.streams[stream], w.streamEnc[stream] = ms, enc
	return ms, nil
}

func (w *StorageWriter) encoder(ctx context.Context, table string) (*RowEncoder, error) {
	w.mu.Lock()
	enc := w.encoders[table]
	w.mu.Unlock()
	if enc != nil {
		return enc, nil
	}
	md, err := w.bq.Dataset(w.dataset).Table(table).Metadata(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the schema of %s: %w", table, err)
	}
	if enc, err = NewRowEncoder(md.Schema); err != nil {
		return nil, fmt.Errorf("schema of %s: %w", table, err)
	}
	w.mu.Lock()
	w.encoders[table] = enc
	w.mu.Unlock()
	return enc, nil
}

// Close closes every stream connection and the client.
func (w *StorageWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ms := range w.streams {
		ms.Close()
	}
	return w.client.Close()
}
