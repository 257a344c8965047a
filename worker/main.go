// Command worker runs a paystream worker: the pool you scale on
// Kubernetes. It polls the task queue for PartitionIngest and MicroBatch
// workflows and runs their activities against Kafka and BigQuery.
//
// Settings are flags or PAYSTREAM_* environment variables; the defaults
// reach the local devstack, so `go run ./worker` needs none.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/engine"
	"github.com/paystream/paystream/internal/memlimit"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/pipeline"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "worker:", err)
		}
		os.Exit(config.ExitCode(err))
	}
}

func run(args []string) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	cfg.RegisterClientFlags(fs) // the partition settings are starter start's
	var opts pipeline.WorkerOptions
	fs.IntVar(&opts.MaxConcurrentActivities, "max-concurrent-activities", 0, "activities run at once (0: the SDK's default)")
	fs.IntVar(&opts.MaxConcurrentWorkflows, "max-concurrent-workflow-tasks", 0, "workflow tasks run at once (0: the SDK's default)")
	fs.IntVar(&opts.BatchCacheMB, "batch-cache-mb", 0, fmt.Sprintf("MiB of parsed batches kept between a batch's activities; misses re-read Kafka (0: a quarter of the GC memory limit, at most %d)", engine.DefaultBatchCacheBytes>>20))
	fs.StringVar(&opts.SnapshotDir, "snapshot-dir", "", "directory for dedup window snapshots, so a restarted worker loads them instead of replaying the lateness window from Kafka (e.g. an emptyDir; empty: none)")
	snapshotKeyFile := fs.String("snapshot-key-file", "", "file of the keys that sign and authenticate the snapshots in --snapshot-dir (HMAC-SHA256): one a line of at least 32 bytes, the newest first, which signs; the others are still accepted, for a rotation. Set it wherever anything else can write that directory (a shared volume); without it a snapshot has only a CRC")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&opts.PartitionMetricsEvery, "partition-metrics-every", pipeline.DefaultPartitionMetricsEvery, "how often to read every partition's committed offset, log end and last load from Kafka for /metrics, whatever the partition's state")
	fs.DurationVar(&opts.StopTimeout, "stop-timeout", 30*time.Second, "on SIGTERM, how long running activities may finish before they are left to a retry elsewhere")
	checkReady := fs.Bool("check-ready", false, "ask a running worker's /readyz at --http-addr and exit 0 if ready, 1 if not: a container health check without a shell")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "where to serve /healthz, /readyz and /metrics (empty: nowhere); :8080 in a container")
	memoryLimit := fs.String("memory-limit", "", "the container's memory limit, e.g. 768Mi; the Go GC keeps the heap under 90% of it (default: the cgroup's limit; GOMEMLIMIT wins over both)")
	pprofAddr := fs.String("pprof-addr", "", "serve Go's /debug/pprof/ profiles here, a loopback address such as 127.0.0.1:6060 (kubectl port-forward reaches it); never on --http-addr (empty: not at all)")
	if err := config.Parse(fs, args); err != nil {
		return partitionSetting(err)
	}
	if *checkReady {
		return checkReadyAt(*httpAddr)
	}
	if opts.PartitionMetricsEvery < time.Second {
		return config.Usage(fmt.Errorf("--partition-metrics-every must be at least 1s, got %v", opts.PartitionMetricsEvery))
	}
	if err := checkLoopback(*pprofAddr); err != nil {
		return config.Usage(fmt.Errorf("--pprof-addr: %w", err))
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	keys, err := config.SnapshotKeys(*snapshotKeyFile)
	if err != nil {
		return fmt.Errorf("snapshot-key-file: %w", err)
	}
	opts.SnapshotKeys = keys
	var memLimit int64
	if *memoryLimit != "" {
		var err error
		if memLimit, err = memlimit.Parse(*memoryLimit); err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
	}
	level, err := zapcore.ParseLevel(*logLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log, err := logConfig(level).Build()
	if err != nil {
		return err
	}
	defer log.Sync()

	if soft, err := memlimit.Apply(memLimit); err != nil {
		log.Warn("no GC memory limit", zap.Error(err))
	} else if soft > 0 {
		log.Info("GC memory limit", zap.Int64("bytes", soft))
	}
	// The limit in force, whichever of GOMEMLIMIT, the flag or the cgroup
	// set it, sizes what the worker holds besides its dedup windows.
	gcLimit := debug.SetMemoryLimit(-1)
	if opts.BatchCacheMB == 0 {
		opts.BatchCacheMB = engine.BatchCacheBytesFor(gcLimit) >> 20
	}
	opts.MaxBatchBytes = engine.MaxBatchBytesFor(gcLimit)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if gcLimit < math.MaxInt64 {
		// The dedup windows' tables are outside the Go heap, where the
		// limit does not see them; it comes down as they grow.
		go memlimit.Follow(ctx, gcLimit, dedup.OffHeapBytes, time.Second)
	}
	m := metrics.New()
	opts.Metrics = m
	// The client connects on first use: the endpoints below are served
	// while the worker waits for Temporal (WaitForTemporal), and /readyz
	// says so.
	tc, err := pipeline.NewTemporalClient(cfg, log, m)
	if err != nil {
		return err
	}
	defer tc.Close()
	w, err := pipeline.NewWorker(ctx, cfg, tc, opts, log)
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		ln, err := listenHTTP(*httpAddr, config.IsSet(fs, "http-addr"))
		if err != nil {
			return fmt.Errorf("--http-addr: %w", err)
		}
		srv := &http.Server{Handler: w.HTTPHandler(tc, m), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("serving health and metrics", zap.String("addr", ln.Addr().String()))
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return fmt.Errorf("--pprof-addr: %w", err)
		}
		srv := &http.Server{Handler: profiles(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("serving profiles", zap.String("addr", ln.Addr().String()))
	}
	if err := w.WaitForTemporal(ctx); err != nil {
		return stoppedBeforeStart(ctx, w, err, log)
	}
	if opts.SnapshotDir != "" {
		if len(keys) == 0 {
			log.Warn("dedup snapshots are not signed: anything that can write --snapshot-dir can change what this worker decides; set --snapshot-key-file in production",
				zap.String("snapshot_dir", opts.SnapshotDir))
		}
		// Only shortens the recovery of a worker restarted in place.
		releaseStickyWorkflows(ctx, tc, cfg, opts.SnapshotDir, log)
	}
	if err := w.StartWhenReachable(ctx); err != nil {
		return stoppedBeforeStart(ctx, w, err, log)
	}
	if opts.SnapshotDir != "" {
		go preloadAssigned(ctx, tc, cfg, w, time.Minute)
	}
	log.Info("worker started", zap.String("task_queue", cfg.TaskQueue), zap.String("own_task_queue", w.Queue), zap.String("temporal", cfg.TemporalAddress),
		zap.Stringer("kafka", cfg.Kafka()), zap.String("bigquery_project", cfg.BigQueryProject), zap.Int("batch_cache_mb", opts.BatchCacheMB), zap.Int("max_batch_bytes", opts.MaxBatchBytes))
	<-ctx.Done()
	// Stop polling, let running activities finish for up to the stop
	// timeout; what does not finish is retried by another worker, and its
	// writes are idempotent.
	log.Info("worker stopping")
	w.Stop()
	return nil
}

// stoppedBeforeStart ends a worker that never started: a signal while it
// waited for Temporal is a clean exit; any other err is returned.
func stoppedBeforeStart(ctx context.Context, w *pipeline.Worker, err error, log *zap.Logger) error {
	w.Stop()
	if ctx.Err() != nil {
		log.Info("worker stopped before it connected to Temporal")
		return nil
	}
	return err
}

// partitionSetting says where a partition setting given to the worker
// belongs; any other error is returned as it is.
func partitionSetting(err error) error {
	_, name, ok := strings.Cut(err.Error(), "flag provided but not defined: -")
	if !ok {
		return err
	}
	name, _, _ = strings.Cut(name, " ")
	var cfg config.Config
	fs := flag.NewFlagSet("partition settings", flag.ContinueOnError)
	cfg.RegisterPartitionFlags(fs)
	if fs.Lookup(name) == nil {
		return err
	}
	return config.Usage(fmt.Errorf("--%s is not a worker setting: starter start gives it to each partition's workflow, which keeps it while it runs (to change it: starter stop, or starter drain for one partition, then starter start --%s ...)", name, name))
}

// releaseStickyWorkflows hands the workflows of the partitions this
// worker's predecessor ran (their snapshots are in snapshotDir) from its
// sticky queue back to the task queue (see pipeline.ReleaseStickyWorkflows).
// Failing costs only a slower recovery, so it is logged, not returned.
func releaseStickyWorkflows(ctx context.Context, tc client.Client, cfg config.Config, snapshotDir string, log *zap.Logger) {
	began := time.Now()
	partitions, err := engine.SnapshotPartitions(snapshotDir)
	if err != nil || len(partitions) == 0 {
		if err != nil {
			log.Warn("sticky workflows not released", zap.Error(err))
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := pipeline.ReleaseStickyWorkflows(ctx, tc, cfg.Namespace, partitions)
	if err != nil {
		log.Warn("sticky workflows not all released", zap.Int("released", n), zap.Error(err))
		return
	}
	log.Info("workflows of the partitions in the state directory released to the task queue", zap.Int("workflows", n),
		zap.Duration("took", time.Since(began)))
}

// preloadAssigned preloads the snapshots of the partitions the pool
// assigns this worker within keep of its start (engine.PreloadSnapshots),
// asking the pool every second: a snapshot is then decoded while its
// partition's first batch here is planned. Until the pool answers, none is
// read: on a shared volume most snapshots are other workers'. Failing
// costs only a slower first batch, so nothing is returned.
func preloadAssigned(ctx context.Context, tc client.Client, cfg config.Config, w *pipeline.Worker, keep time.Duration) {
	end := time.Now().Add(keep)
	seen := map[int]bool{}
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := tc.QueryWorkflow(qctx, contract.PoolID(cfg.TaskQueue), "", contract.ProgressQuery)
		var st contract.PoolState
		if err == nil {
			err = resp.Get(&st)
		}
		cancel()
		if err != nil {
			continue
		}
		var mine []int
		for id, queue := range st.Partitions {
			p, ok := contract.IngestPartition(cfg.Topic, id)
			if ok && queue == w.Queue && !seen[p] {
				seen[p] = true
				mine = append(mine, p)
			}
		}
		w.Engine.PreloadSnapshots(cfg.Topic, mine, keep)
	}
}

// profiles serves Go's profiles under /debug/pprof/: how the benchmark
// finds where a worker's CPU goes. A profile costs CPU and shows the
// program's insides, so it has a listener of its own, on loopback only.
func profiles() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// checkLoopback accepts an empty address or one whose host is a loopback
// address or localhost.
func checkLoopback(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address: profiles are served on 127.0.0.1 or ::1 only (e.g. 127.0.0.1:6060)", addr)
	}
	return nil
}

// logConfig is the worker's JSON log. Log pipelines (GKE, Cloud Logging,
// most others) read the level as severity; every line is kept, since
// zap's default sampling dropped "load done" lines past 100 a second.
func logConfig(level zapcore.Level) zap.Config {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.EncoderConfig.LevelKey, cfg.EncoderConfig.EncodeLevel = "severity", zapcore.CapitalLevelEncoder
	cfg.Sampling = nil
	return cfg
}

// listenHTTP listens at addr. At the default address, when another worker
// on the same machine holds it, it takes a free port instead, which the
// log names, so that several workers run side by side; an address given
// explicitly fails loudly.
func listenHTTP(addr string, explicit bool) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil || explicit || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	host, _, _ := net.SplitHostPort(addr)
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}

// checkReadyAt asks the worker serving at addr whether it is ready.
func checkReadyAt(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + pipeline.ReadyzPath)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s", resp.Status)
	}
	return nil
}
