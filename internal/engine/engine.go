// Package engine is paystream's worker in plain Go: it plans a partition's
// next range, decides its duplicates and late records, scores it, and
// writes it to every table before committing its offset. Each operation
// re-reads its range from Kafka when it must (the log is immutable, so
// every attempt sees the same records) and returns only offsets, counts
// and scores, never event data. It knows nothing of Temporal: package
// activities adapts it, and the benchmark's plain loop drives it directly.
package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"go.uber.org/zap"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/registry"
	"github.com/paystream/paystream/internal/warehouse"
)

// Config is what an engine is built from: its connections and settings.
type Config struct {
	Kafka kafkalog.Cluster
	// Metrics, when set, counts batches, events, latency, lag, retries.
	Metrics       *metrics.Pipeline
	ConsumerGroup string
	BigQuery      *bigquery.Client
	Dataset       string
	// Emulator is set when BigQuery is the emulator; StorageEndpoint is
	// then its Storage API.
	Emulator        bool
	StorageEndpoint string
	Log             *zap.Logger
	// Discard makes Write build and serialize every table's rows and then
	// upload only batch_ledger: the benchmark's "discard" sink.
	Discard bool
	// BatchCacheBytes bounds the parsed batches kept between a batch's
	// operations (0: DefaultBatchCacheBytes).
	BatchCacheBytes int
	// MaxBatchBytes, when set, bounds the batches this worker plans by
	// their parsed size, below the request's MaxRecords and MaxBytes when
	// those would not fit its memory (see MaxBatchBytesFor).
	MaxBatchBytes int
	// SnapshotDir, when set, is a directory where Decide keeps each
	// partition's window every SnapshotEvery (0: DefaultSnapshotEvery), so
	// a restarted worker need not replay the whole lateness window.
	SnapshotDir   string
	SnapshotEvery time.Duration
	// SnapshotKeys, newest first, sign the snapshots this worker writes
	// and authenticate those it reads (dedup.SnapshotAuth); none: only a
	// CRC, which anything that can write SnapshotDir can forge.
	SnapshotKeys [][]byte
	// MaxWindowIDs is the worker's --max-window-ids: the most IDs a
	// snapshot read before its partition's spec is known may hold (0:
	// dedup.DefaultMaxIDs).
	MaxWindowIDs int

	// Registry reads records in the Schema Registry wire format; nil: the
	// worker has none, and a batch holding such records waits for a
	// worker that has one.
	Registry *registry.Client

	// Streams is the Storage Write API client of the storagewrite mode;
	// nil opens a warehouse.StorageWriter on first use (tests set one).
	Streams StreamWriter
	// RebuildEveryBatch makes Decide rebuild its window from the log for
	// every batch, as a worker without a cache would: for tests that prove
	// a cold worker decides like a warm one.
	RebuildEveryBatch bool
	// LoadBackoff, when set, replaces warehouse.DefaultBackoff between
	// load jobs that failed for a transient reason (tests).
	LoadBackoff func(n int) time.Duration
}

// Engine is one worker's engine: built once, shared by every partition
// the worker runs, closed when the worker stops.
type Engine struct {
	Config
	client    *kafkalog.Client
	windows   windowCache
	snapshots *windowSnapshots
	batches   batchCache
	// buffers keep encoded rows between batches, up to half the batch
	// cache's bound: both scale with the worker's memory.
	buffers   *warehouse.Buffers
	pace      pace
	streamsMu sync.Mutex
}

// New builds an engine. The Kafka client is made here, once: it holds
// connections to the leaders and a metadata refresh, and serves every
// read, poll and offset commit. The snapshot store is opened when
// cfg.SnapshotDir is set.
func New(cfg Config) *Engine {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	e := &Engine{Config: cfg, client: cfg.Kafka.Client(10 * time.Second)}
	e.buffers = &warehouse.Buffers{Limit: e.batchCacheLimit() / 2}
	if cfg.SnapshotDir != "" {
		e.snapshots = newWindowSnapshots(cfg)
	}
	return e
}

// KafkaClient is the engine's Kafka client, for what else the worker asks
// Kafka (readiness, the partitions' offsets).
func (e *Engine) KafkaClient() *kafkalog.Client { return e.client }

// Close releases the engine's Kafka client; call it once the worker has
// stopped.
func (e *Engine) Close() { e.client.Close() }

// Observer hears how an operation goes: the activities layer turns its
// progress into Temporal heartbeats and names the run in log lines.
type Observer interface {
	// Progress says the operation is alive, at detail (an offset, a
	// table). It is called often and must be cheap.
	Progress(detail any)
	// LogFields name the operation's caller in its log lines.
	LogFields() []zap.Field
}

type observerKey struct{}

// WithObserver attaches o to the operations run with ctx.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

func observerOf(ctx context.Context) Observer {
	o, _ := ctx.Value(observerKey{}).(Observer)
	return o
}

// progress tells the observer, if any, that the operation is alive.
func progress(ctx context.Context, detail any) {
	if o := observerOf(ctx); o != nil {
		o.Progress(detail)
	}
}

// progressEvery tells the observer at every 5,000th step n of a long loop:
// often enough for a heartbeat timeout on a busy machine, rarely enough
// to cost nothing.
func progressEvery(ctx context.Context, n int, detail any) {
	if n%5000 == 0 {
		progress(ctx, detail)
	}
}

// keepAlive tells the observer every second, with detail, until the
// returned stop is called. A call into BigQuery can block longer than a
// heartbeat timeout, which is there to notice a worker that died; the
// clients' own timeouts bound a call that hangs.
func keepAlive(ctx context.Context, detail any) (stop func()) {
	if observerOf(ctx) == nil {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				progress(ctx, detail)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// Permanent is an error that retrying cannot fix, of a contract error
// type (contract.ErrType...): the activities layer makes it non-retryable.
type Permanent struct {
	Type string
	Err  error
}

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

func permanent(typ string, err error) error { return &Permanent{Type: typ, Err: err} }

// readRange reads [start, end) of a partition as a read_committed consumer,
// telling the observer as it goes, and turns "offsets deleted by
// retention" into a Permanent error. The tally counts the markers and
// aborted records it passed over.
func (e *Engine) readRange(ctx context.Context, topic string, partition int, start, end int64, fn func(kafkalog.Record) error) (kafkalog.Tally, error) {
	n := 0
	t, err := e.client.ReadRange(ctx, topic, partition, start, end, func(r kafkalog.Record) error {
		if n++; n == 100 {
			faults.At("read")
		}
		progressEvery(ctx, n, r.Offset)
		return fn(r)
	})
	if errors.Is(err, kafkalog.ErrOffsetOutOfRange) {
		return t, permanent(contract.ErrTypeOffsetOutOfRange, err)
	}
	return t, err
}

// logger is the engine's log with the batch's fields and the observer's.
func (e *Engine) logger(ctx context.Context, spec contract.Spec) *zap.Logger {
	fields := []zap.Field{zap.String("topic", spec.Topic), zap.Int("partition", spec.Partition), zap.String("batch_id", spec.ID()),
		zap.Int64("offset", spec.Start), zap.Int64("end_offset", spec.End)}
	if o := observerOf(ctx); o != nil {
		fields = append(fields, o.LogFields()...)
	}
	return e.Log.With(fields...)
}

// windowCache keeps each partition's dedup window on this worker between
// batches. A window is taken out while a Dedup uses it, so two attempts for
// one partition never share one; a miss only costs a rebuild from the log.
// A window whose partition has had neither a plan nor a batch here for
// windowIdle is dropped: the pool has moved the partition to another
// worker, and the window may be the bulk of this one's memory.
type windowCache struct {
	mu   sync.Mutex
	m    map[string]*dedup.Window
	used map[string]time.Time
}

// windowIdle is well above the longest gap between a partition's plans
// (its poll, 5 s by default) and below the time a moved partition's stale
// window should keep memory.
const windowIdle = 2 * time.Minute

func (c *windowCache) take(key string) *dedup.Window {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.m[key]
	delete(c.m, key)
	return w
}

func (c *windowCache) put(key string, w *dedup.Window) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m, c.used = map[string]*dedup.Window{}, map[string]time.Time{}
	}
	c.m[key] = w
	c.touchLocked(key, time.Now())
}

// touch marks the partition's window as in use here (a plan ran for it).
func (c *windowCache) touch(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used != nil {
		c.touchLocked(key, time.Now())
	}
}

func (c *windowCache) touchLocked(key string, now time.Time) {
	c.used[key] = now
	for k, at := range c.used {
		if now.Sub(at) > windowIdle {
			delete(c.m, k) // its tables are freed once collected
			delete(c.used, k)
		}
	}
}

func windowKey(topic string, partition int) string { return fmt.Sprintf("%s/%d", topic, partition) }

// since formats a duration for logs.
func since(t time.Time) zap.Field { return zap.Duration("took", time.Since(t)) }
