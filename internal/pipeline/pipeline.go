// Package pipeline is the worker's wiring: the Temporal client, the SDK
// workers on the shared and the worker's own task queue with the
// workflows and activities registered, the pool membership, and the
// health and metrics endpoints. The operator's side is internal/operator.
package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/paystream/paystream/contract"

	"cloud.google.com/go/bigquery"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/paystream/paystream/activities"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/engine"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/sdkmetrics"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/workflows"
)

// DialTemporal connects to Temporal with the SDK's logs sent to log.
func DialTemporal(ctx context.Context, cfg config.Config, log *zap.Logger) (client.Client, error) {
	return DialTemporalWithMetrics(ctx, cfg, log, nil)
}

// DialTemporalWithMetrics is DialTemporal with the SDK's metrics exported
// to m's registry (the worker's /metrics); nil m exports none.
func DialTemporalWithMetrics(ctx context.Context, cfg config.Config, log *zap.Logger, m *metrics.Pipeline) (client.Client, error) {
	c, err := client.DialContext(ctx, temporalOptions(cfg, log, m))
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	return c, nil
}

// NewTemporalClient is DialTemporalWithMetrics without connecting: bad
// options fail here, an unreachable server only on the first call
// (Worker.WaitForTemporal makes it, with backoff).
func NewTemporalClient(cfg config.Config, log *zap.Logger, m *metrics.Pipeline) (client.Client, error) {
	c, err := client.NewLazyClient(temporalOptions(cfg, log, m))
	if err != nil {
		return nil, fmt.Errorf("make a client for Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	return c, nil
}

func temporalOptions(cfg config.Config, log *zap.Logger, m *metrics.Pipeline) client.Options {
	var metricsHandler client.MetricsHandler
	if m != nil {
		metricsHandler = sdkmetrics.Handler(m.Registry)
	}
	opts := client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.Namespace,
		Logger:    sdkLogger(log),
		// Mutual TLS (self-hosted or Temporal Cloud) or an API key
		// (Temporal Cloud), as cfg.Validate loaded them.
		ConnectionOptions: client.ConnectionOptions{TLS: cfg.TemporalTLS(), GrpcCompression: &client.GrpcCompressionNone{},
			DialOptions: resumeSoon},
		MetricsHandler: metricsHandler,
	}
	if cfg.TemporalCompression == config.CompressionGzip {
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionGzip{}
	}
	if key := cfg.TemporalAPIKey(); key != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(key)
	}
	return opts
}

// resumeSoon makes a worker take tasks again within about a second of
// Temporal's return from an outage, rather than ten: the connection is
// dialed again at least every second (the SDK's default backoff grows to
// ten), and a poll made while it is down waits for it to be up (WaitForReady)
// instead of failing at once, which would put the SDK's poller into its
// own backoff, also growing to ten seconds. A poll is a long wait anyway;
// other calls still fail at once, so their callers see the outage.
var resumeSoon = []grpc.DialOption{
	grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 20 * time.Second,
	}),
	grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasPrefix(path.Base(method), "Poll") {
			opts = append(opts, grpc.WaitForReady(true))
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}),
}

func sdkLogger(log *zap.Logger) sdklog.Logger {
	if log == nil {
		return sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}
	// One frame for zapSDKLogger's own method: the line names the code
	// that logged, not this file.
	return zapSDKLogger{log.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

// zapSDKLogger lets the Temporal SDK log through zap. It implements the
// SDK's With and WithCallerSkip, so the SDK neither wraps it in a logger
// of its own nor loses the caller of a workflow's log line.
type zapSDKLogger struct{ s *zap.SugaredLogger }

func (l zapSDKLogger) With(kv ...interface{}) sdklog.Logger { return zapSDKLogger{l.s.With(kv...)} }
func (l zapSDKLogger) WithCallerSkip(n int) sdklog.Logger {
	return zapSDKLogger{l.s.WithOptions(zap.AddCallerSkip(n))}
}

func (l zapSDKLogger) Debug(msg string, kv ...interface{}) { l.s.Debugw(msg, kv...) }
func (l zapSDKLogger) Info(msg string, kv ...interface{})  { l.s.Infow(msg, kv...) }
func (l zapSDKLogger) Warn(msg string, kv ...interface{})  { l.s.Warnw(msg, kv...) }
func (l zapSDKLogger) Error(msg string, kv ...interface{}) { l.s.Errorw(msg, kv...) }

// Worker is a running paystream worker. It polls two task queues: the
// one its pool shares, for the partitions' and supervisors' workflows, and
// its own (contract.WorkerQueue), for the plans and batches of the
// partitions its pool assigns it.
type Worker struct {
	worker.Worker // on the shared task queue
	own           worker.Worker
	// Queue is the worker's own task queue.
	Queue string
	// Engine does the work that Activities adapt to Temporal.
	Engine     *engine.Engine
	Activities *activities.Activities
	bq         *bigquery.Client
	cfg        config.Config
	tc         client.Client
	wopts      worker.Options
	log        *zap.Logger
	stopJoin   context.CancelFunc
	// started: the SDK workers poll, so Stop stops them.
	started bool
	// waiting, while not empty, is why the worker does not use Temporal
	// yet (WaitForTemporal); /readyz shows it.
	waitMu  sync.Mutex
	waiting string
	// lock is this worker's lock in its state directory; gone are the
	// queues of the dead workers it replaced there, which the pool is
	// told of once this worker has joined it.
	lock *workerLock
	gone []string
	// partitionsEvery is how often the partition metrics are read.
	partitionsEvery time.Duration
	// readiness caches /readyz (HTTPHandler).
	readyOnce sync.Once
	readiness *readiness
}

// WorkerOptions size the worker.
type WorkerOptions struct {
	MaxConcurrentActivities int
	MaxConcurrentWorkflows  int
	// BatchCacheMB bounds the parsed batches kept between a batch's
	// activities (0: engine.DefaultBatchCacheBytes).
	BatchCacheMB int
	// MaxBatchBytes bounds the batches the worker plans by their parsed
	// size (0: only the starter's --max-records and --max-bytes do).
	MaxBatchBytes int
	// SnapshotDir is where Dedup keeps each partition's window for a fast
	// restart (empty: nowhere; a restart replays the window from Kafka).
	SnapshotDir string
	// SnapshotKeys sign and authenticate those snapshots, the newest
	// first (config.SnapshotKeys); none: a CRC only.
	SnapshotKeys [][]byte
	// Metrics, when set, receives the activities' figures.
	Metrics *metrics.Pipeline
	// StopTimeout is how long Stop lets running activities finish
	// (0: 30 s); keep a pod's termination grace period above it.
	StopTimeout time.Duration
	// PartitionMetricsEvery is how often the worker reads every
	// partition's offsets from Kafka for Metrics (0:
	// DefaultPartitionMetricsEvery).
	PartitionMetricsEvery time.Duration
}

// NewWorker builds a worker for cfg's task queue with every workflow and
// activity registered. Start or Run it; Stop it to let running activities
// finish (or hand back after the worker's stop timeout).
func NewWorker(ctx context.Context, cfg config.Config, tc client.Client, opts WorkerOptions, log *zap.Logger) (*Worker, error) {
	if log == nil {
		log = zap.NewNop()
	}
	bq, err := warehouse.OpenIn(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint, cfg.BigQueryLocation)
	if err != nil {
		return nil, err
	}
	reg, err := cfg.Registry()
	if err != nil {
		return nil, err
	}
	eng := engine.New(engine.Config{
		Kafka: cfg.Kafka(), ConsumerGroup: cfg.ConsumerGroup, Registry: reg,
		BigQuery: bq, Dataset: cfg.BigQueryDataset, Emulator: cfg.BigQueryEndpoint != "", Log: log,
		Discard: cfg.Sink == config.SinkDiscard, BatchCacheBytes: opts.BatchCacheMB << 20, MaxBatchBytes: opts.MaxBatchBytes, Metrics: opts.Metrics,
		SnapshotDir: opts.SnapshotDir, SnapshotKeys: opts.SnapshotKeys, MaxWindowIDs: cfg.MaxWindowIDs,
		StorageEndpoint: cfg.BigQueryStorageEndpoint,
	})
	identity := workerIdentity()
	wopts := worker.Options{
		Identity:                               identity,
		MaxConcurrentActivityExecutionSize:     opts.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskExecutionSize: opts.MaxConcurrentWorkflows,
		WorkerStopTimeout:                      cmp.Or(opts.StopTimeout, 30*time.Second),
		// A workflow task cached on a worker that died waits this long
		// before any worker may take it (default 5 s); part of recovery.
		// A live worker polls its sticky queue without pause, so a task
		// that waits a second there is on a worker that is gone.
		StickyScheduleToStartTimeout: time.Second,
		// The SDK sends heartbeats at most every 80 % of the heartbeat
		// timeout, leaving a busy server one second to record them before
		// it gives up on a live activity (seen on a saturated machine).
		// Sending them every second leaves four within an activity's 5 s,
		// two within the pool lease's 3 s.
		MaxHeartbeatThrottleInterval: time.Second,
	}
	queue := contract.WorkerQueue(cfg.TaskQueue, identity)
	w := &Worker{Queue: queue, Engine: eng, Activities: &activities.Activities{Engine: eng, Temporal: tc, Queue: queue}, bq: bq, cfg: cfg, tc: tc, wopts: wopts, log: log,
		partitionsEvery: cmp.Or(opts.PartitionMetricsEvery, DefaultPartitionMetricsEvery),
		waiting:         "waiting to connect to " + cfg.TemporalAddress}
	if opts.SnapshotDir != "" {
		host, _ := os.Hostname()
		if w.lock, w.gone, err = lockWorker(opts.SnapshotDir, cmp.Or(host, "worker"), cfg.TaskQueue, queue); err != nil {
			log.Warn("worker lock not taken: a worker restarted here waits for this one's lease to time out", zap.Error(err))
		}
	}
	w.newSDKWorkers()
	return w, nil
}

// newSDKWorkers makes the SDK workers of both task queues with every
// workflow and activity registered. An SDK worker's Start cannot be tried
// again once it failed, so a failed Start makes new ones.
func (w *Worker) newSDKWorkers() {
	w.Worker = worker.New(w.tc, w.cfg.TaskQueue, w.wopts)
	w.own = worker.New(w.tc, w.Queue, w.wopts)
	for _, sw := range []worker.Worker{w.Worker, w.own} {
		workflows.Register(sw)
		activities.Register(sw, w.Activities)
	}
}

// workerIdentity names this worker uniquely, and readably in the web UI:
// host (the pod), process and a random suffix, since a restarted pod
// keeps its name and a test runs several workers in one process.
func workerIdentity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%04x", cmp.Or(host, "worker"), os.Getpid(), rand.Uint32N(1<<16))
}

// rejoinEvery is how often a worker tells its pool it is there: a pool
// that lost it (a lease timed out on a stalled machine) or was restarted
// has it back within this.
const rejoinEvery = 30 * time.Second

// Start polls both task queues and joins the pool. It may be called again
// after it failed (StartWhenReachable does).
func (w *Worker) Start() error {
	if err := w.own.Start(); err != nil {
		w.newSDKWorkers()
		return fmt.Errorf("start worker on task queue %s: %w", w.Queue, err)
	}
	if err := w.Worker.Start(); err != nil {
		w.own.Stop()
		w.newSDKWorkers()
		return fmt.Errorf("start worker on task queue %s: %w", w.cfg.TaskQueue, err)
	}
	w.started = true
	w.setWaiting("")
	ctx, cancel := context.WithCancel(context.Background())
	w.stopJoin = cancel
	if w.Engine.Metrics != nil {
		go w.exportPartitions(ctx, w.partitionsEvery)
	}
	go func() {
		if len(w.gone) > 0 {
			w.releasePool(ctx)
		}
		for {
			err := w.join(ctx)
			if err == nil {
				err = w.sayGone(ctx)
			}
			if err != nil && ctx.Err() == nil {
				w.Engine.Log.Warn("worker not joined to its pool; retrying", zap.String("queue", w.Queue), zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(rejoinEvery):
			}
		}
	}()
	return nil
}

// join tells the pool this worker is there, starting the pool when it
// does not run.
func (w *Worker) join(ctx context.Context) error {
	// The pool refuses what this refuses, silently; the worker says why.
	if err := contract.CheckJoin(w.cfg.TaskQueue, w.Queue, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := w.tc.SignalWithStartWorkflow(ctx, contract.PoolID(w.cfg.TaskQueue), contract.JoinSignal, w.Queue, client.StartWorkflowOptions{
		TaskQueue:             w.cfg.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowTaskTimeout:   contract.TaskTimeout,
		StaticSummary:         "assigns the partitions of task queue " + w.cfg.TaskQueue + " to its workers",
	}, workflows.WorkerPool, contract.PoolState{})
	return err
}

// sayGone tells the pool of the dead workers this one replaced in place,
// so that their partitions move now, not when their leases time out.
func (w *Worker) sayGone(ctx context.Context) error {
	for len(w.gone) > 0 {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := w.tc.SignalWorkflow(ctx, contract.PoolID(w.cfg.TaskQueue), "", contract.GoneSignal, w.gone[0])
		cancel()
		if err != nil {
			return fmt.Errorf("tell the pool worker %s is gone: %w", w.gone[0], err)
		}
		w.log.Info("told the pool the worker this one replaced is gone", zap.String("queue", w.gone[0]))
		w.gone = w.gone[1:]
	}
	return nil
}

// releasePool sends the pool's next workflow task to the task queue: the
// dead worker this one replaced may have run it last, and its sticky
// queue would hold the task for the sticky schedule-to-start timeout.
// Failing costs only those seconds.
func (w *Worker) releasePool(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := w.tc.WorkflowService().ResetStickyTaskQueue(ctx, &workflowservice.ResetStickyTaskQueueRequest{
		Namespace: w.cfg.Namespace,
		Execution: &commonpb.WorkflowExecution{WorkflowId: contract.PoolID(w.cfg.TaskQueue)},
	})
	if err != nil {
		w.log.Info("pool workflow not released from its sticky queue", zap.Error(err))
	}
}

// Stop stops polling, waits for running activities up to the stop timeout,
// and closes the BigQuery and Kafka clients. The worker's lease ends as
// the stop begins, so its partitions move at once.
func (w *Worker) Stop() {
	if w.stopJoin != nil {
		w.stopJoin()
	}
	if w.started {
		stopped := make(chan struct{})
		go func() { w.own.Stop(); close(stopped) }()
		w.Worker.Stop()
		<-stopped
	}
	w.bq.Close()
	w.Engine.Close()
	w.lock.release()
}
