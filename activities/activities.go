// Package activities holds paystream's Temporal activities: plan a range,
// dedup it, enrich it, load it, commit its offsets. Each re-reads its range
// from Kafka — the log is immutable, so every attempt sees the same records —
// and returns only offsets, counts and scores, never event data.
package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
)

// Activities are registered on the worker as one struct; its fields are
// the connections they share.
type Activities struct {
	Kafka kafkalog.Cluster
	// Temporal ends batches stranded on a worker that left the pool.
	Temporal client.Client
	// Queue is the worker's own task queue (contract.WorkerQueue): the
	// only one its pool lease may run on (HoldMembership). Empty: any.
	Queue string
	// Metrics, when set, counts batches, events, latency, lag, retries.
	Metrics       *metrics.Pipeline
	ConsumerGroup string
	BigQuery      *bigquery.Client
	Dataset       string
	// Emulator is set when BigQuery is the emulator (see warehouse.Loader).
	Emulator bool
	Log      *zap.Logger
	// Discard makes Load build and serialize every table's rows and then
	// upload only batch_ledger: the benchmark's "discard" sink.
	Discard bool
	// RebuildEveryBatch makes Dedup rebuild its window from the log for
	// every batch, as a worker without a cache would: for tests that prove
	// a cold worker decides like a warm one.
	RebuildEveryBatch bool
	// BatchCacheBytes bounds the parsed batches kept between a batch's
	// activities (0: DefaultBatchCacheBytes).
	BatchCacheBytes int
	// MaxBatchBytes, when set, bounds the batches this worker plans by
	// their parsed size, below the request's MaxRecords and MaxBytes when
	// those would not fit its memory (see MaxBatchBytesFor).
	MaxBatchBytes int
	// SnapshotDir, when set, is a directory where Dedup keeps each
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
	// config.DefaultMaxWindowIDs).
	MaxWindowIDs int

	client        *kafkalog.Client // see kafkaClient
	clientOnce    sync.Once
	windows       windowCache
	snapshots     *windowSnapshots
	snapshotsOnce sync.Once
	batches       batchCache
	rowBuffers    bufferPool
	pace          pace

	// Streams is the Storage Write API client of the storagewrite mode;
	// nil opens a warehouse.StorageWriter on first use (tests set one).
	Streams StreamWriter
	// LoadBackoff, when set, replaces warehouse.DefaultBackoff between
	// load jobs that failed for a transient reason (tests).
	LoadBackoff func(n int) time.Duration
	// StorageEndpoint is the emulator's Storage API, used when Emulator.
	StorageEndpoint string
	streamsMu       sync.Mutex
}

// kafkaClient is the worker's one Kafka client, for every read, poll and
// offset commit: a client holds connections to the leaders and a metadata
// refresh, so it is made once, not per batch or poll.
func (a *Activities) kafkaClient() *kafkalog.Client {
	a.clientOnce.Do(func() { a.client = a.Kafka.Client(10 * time.Second) })
	return a.client
}

// KafkaClient is the worker's one Kafka client, for what else the worker
// asks Kafka (readiness, the partitions' offsets); nil when Close ran
// before any was made.
// (A function, not a method, as Close is.)
func KafkaClient(a *Activities) *kafkalog.Client { return a.kafkaClient() }

// Close releases a's Kafka client; call it once the worker has stopped.
// (A function, not a method: every exported method of Activities is
// registered as an activity.)
func Close(a *Activities) {
	a.clientOnce.Do(func() {}) // no client made after this
	if a.client != nil {
		a.client.Close()
	}
}

// heartbeatQuiet is how long an attempt runs before its first heartbeat.
// Each heartbeat that reaches the server is a billed Temporal action, and
// the SDK sends the first at once, so heartbeating from the start would
// bill nearly every plan and load; most end sooner. The workflows'
// heartbeat timeout (8 s) leaves room for it.
const heartbeatQuiet = 4 * time.Second

// quiet tells whether an activity attempt is still in its first
// heartbeatQuiet, by the server's start time: keepAlive and PlanBatch,
// which keep an attempt alive, count on the worker's own clock instead,
// so that a worker clock behind the server's cannot delay their first
// heartbeat past the timeout.
func quiet(ctx context.Context) bool {
	return time.Since(activity.GetInfo(ctx).StartedTime) < heartbeatQuiet
}

// heartbeatEvery sends a heartbeat at every 5,000th step n of a long loop
// in an activity (a no-op outside one, and in its first heartbeatQuiet):
// often enough for the heartbeat timeout on a busy machine, rarely enough
// to cost nothing.
func heartbeatEvery(ctx context.Context, n int, detail any) {
	if n%5000 != 0 || !activity.IsActivity(ctx) || quiet(ctx) {
		return
	}
	activity.RecordHeartbeat(ctx, detail)
}

// keepAlive heartbeats the activity every second past its first
// heartbeatQuiet (the SDK sends them on at most every 80 % of the
// heartbeat timeout), with detail, until the returned stop is called;
// outside an activity it does nothing. A call
// into BigQuery can block longer than the heartbeat timeout, which is
// there to notice a worker that died; StartToCloseTimeout and the
// clients' own timeouts bound a call that hangs. ctx must be the
// activity's own context: the SDK sends a throttled
// heartbeat later with the context it was given, and one that has ended
// by then makes it cancel the whole activity.
func keepAlive(ctx context.Context, detail any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	began := time.Now()
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
				if time.Since(began) >= heartbeatQuiet {
					activity.RecordHeartbeat(ctx, detail)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// readRange reads [start, end) of a partition as a read_committed consumer,
// heartbeating as it goes, and turns "offsets deleted by retention" into a
// non-retryable error. The tally counts the markers and aborted records it
// passed over.
func (a *Activities) readRange(ctx context.Context, topic string, partition int, start, end int64, fn func(kafkalog.Record) error) (kafkalog.Tally, error) {
	n := 0
	t, err := a.kafkaClient().ReadRange(ctx, topic, partition, start, end, func(r kafkalog.Record) error {
		if n++; n == 100 {
			faults.At("read")
		}
		heartbeatEvery(ctx, n, r.Offset)
		return fn(r)
	})
	if errors.Is(err, kafkalog.ErrOffsetOutOfRange) {
		return t, temporal.NewNonRetryableApplicationError(err.Error(), contract.ErrTypeOffsetOutOfRange, err)
	}
	return t, err
}

func (a *Activities) logger(ctx context.Context, spec contract.Spec) *zap.Logger {
	l := a.Log
	if l == nil {
		l = zap.NewNop()
	}
	fields := []zap.Field{zap.String("topic", spec.Topic), zap.Int("partition", spec.Partition), zap.String("batch_id", spec.ID()),
		zap.Int64("offset", spec.Start), zap.Int64("end_offset", spec.End)}
	if activity.IsActivity(ctx) {
		// The run that scheduled it: the web UI's way to the batch.
		info := activity.GetInfo(ctx)
		fields = append(fields, zap.String("workflow_id", info.WorkflowExecution.ID), zap.String("run_id", info.WorkflowExecution.RunID),
			zap.Int32("attempt", info.Attempt))
	}
	return l.With(fields...)
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
