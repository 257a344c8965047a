package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/bigquery"
	"go.temporal.io/sdk/client"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

// env is the stack every measurement runs on, and the worker binary.
type env struct {
	stack     *devstack.Stack
	temporal  client.Client
	bq        *bigquery.Client
	workerBin string
	// workerMemoryLimit is the steady runs' worker's --memory-limit.
	workerMemoryLimit string
	dir               string
	// profiles is the path prefix the CPU profiles are kept under, beside
	// the results, for `go tool pprof`.
	profiles string
	log      io.Writer
	runs     int // names each run's topic, dataset and task queue apart
	// avro makes the next runs' events Avro records (the Schema Registry
	// wire format, the simulator's versions 1 and 2) instead of JSON.
	avro bool
	// keep leaves dir (worker logs, server state) in place at the end.
	keep bool
}

func startEnv(ctx context.Context, log io.Writer) (_ *env, err error) {
	root, err := devstack.FindRoot(".")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "paystream-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, log: log, workerBin: filepath.Join(dir, "worker")}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	build := exec.CommandContext(ctx, "go", "build", "-o", e.workerBin, "./worker")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build the worker: %w", err)
	}
	cfg := devstack.DefaultConfig()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Partitions = 1
	cfg.Log = io.Discard
	if err := devstack.UseFreePorts(&cfg); err != nil {
		return nil, err
	}
	if e.stack, err = devstack.Start(ctx, cfg); err != nil {
		return nil, err
	}
	if e.temporal, err = e.stack.DialTemporal(ctx); err != nil {
		return nil, err
	}
	base := e.stack.ClientConfig()
	if e.bq, err = warehouse.Open(ctx, base.BigQueryProject, base.BigQueryEndpoint); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.bq != nil {
		e.bq.Close()
	}
	if e.temporal != nil {
		e.temporal.Close()
	}
	if e.stack != nil {
		e.stack.Stop()
	}
	if e.keep {
		e.logf("worker logs and server state kept in %s", e.dir)
		return
	}
	os.RemoveAll(e.dir)
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "bench: "+format+"\n", args...)
}

// newRun sets up a run: a fresh topic of that many partitions with events
// simulated payments produced (none when 0), a fresh dataset, task queue
// and consumer group, so no run sees another's rows, workflows or offsets,
// and an empty emulator: the emulator slows as its database grows, which
// would make the order of runs decide their figures. writeMode is how the
// bigquery sink writes (load jobs or the Storage Write API).
func (e *env) newRun(ctx context.Context, sink, writeMode string, partitions, events int) (config.Config, simulation.Manifest, error) {
	if err := e.stack.ResetBigQuery(ctx); err != nil {
		return config.Config{}, simulation.Manifest{}, err
	}
	e.bq.Close()
	base := e.stack.ClientConfig()
	var err error
	if e.bq, err = warehouse.Open(ctx, base.BigQueryProject, base.BigQueryEndpoint); err != nil {
		return config.Config{}, simulation.Manifest{}, err
	}
	e.runs++
	cfg := e.stack.ClientConfig()
	name := fmt.Sprintf("bench-%d", e.runs)
	cfg.Topic, cfg.TaskQueue, cfg.ConsumerGroup = name, name, name
	cfg.BigQueryDataset = fmt.Sprintf("bench_%d", e.runs)
	cfg.Sink, cfg.WriteMode = sink, writeMode
	m, err := e.prepare(ctx, cfg, partitions, events)
	return cfg, m, err
}

func (e *env) prepare(ctx context.Context, cfg config.Config, partitions, events int) (simulation.Manifest, error) {
	kc := cfg.Kafka().Client(10 * time.Second)
	defer kc.Close()
	if err := kc.CreateTopic(ctx, cfg.Topic, partitions); err != nil {
		return simulation.Manifest{}, err
	}
	for {
		if parts, err := kafkalog.Partitions(ctx, cfg.Kafka(), cfg.Topic); err == nil && len(parts) == partitions {
			break
		}
		select {
		case <-ctx.Done():
			return simulation.Manifest{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := schema.Apply(ctx, e.bq, cfg.BigQueryDataset, schema.Options{Emulator: true}); err != nil {
		return simulation.Manifest{}, err
	}
	if events == 0 {
		return simulation.Manifest{}, nil
	}
	popts := simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: events}
	if e.avro {
		reg, err := cfg.Registry()
		if err != nil {
			return simulation.Manifest{}, err
		}
		if popts.Encoder, err = simulation.NewAvro(ctx, reg, cfg.Topic, []int{1, 2}); err != nil {
			return simulation.Manifest{}, err
		}
	}
	return simulation.Produce(ctx, simulation.DefaultOptions(), popts)
}

func (e *env) operator(cfg config.Config, batchSize int) *operator.Operator {
	t := operator.DefaultTuning()
	t.MaxRecords = batchSize
	return &operator.Operator{Config: cfg, Temporal: e.temporal, BigQuery: e.bq, Tuning: t}
}

// workerProc is a worker binary running for one run, its memory sampled.
type workerProc struct {
	cmd       *exec.Cmd
	httpAddr  string // where it serves /metrics
	pprofAddr string // where it serves /debug/pprof/
	done      chan struct{}
	mu        sync.Mutex
	samples   []rssSample
}

type rssSample struct {
	At  time.Duration // since the worker started
	RSS int64         // bytes
}

// workerLog is where the worker of cfg's run logs; a replacement worker
// starts it afresh.
func (e *env) workerLog(cfg config.Config) string {
	return filepath.Join(e.dir, cfg.TaskQueue+".worker.log")
}

// startWorker runs the worker binary configured by environment variables,
// as a container would be, and waits until it polls.
// startWorker runs the worker for cfg; memoryLimit is its --memory-limit
// ("" for none).
func (e *env) startWorker(ctx context.Context, cfg config.Config, memoryLimit string) (*workerProc, error) {
	return e.startWorkerLogging(ctx, cfg, memoryLimit, e.workerLog(cfg))
}

// startWorkerLogging is startWorker with its log at logPath.
func (e *env) startWorkerLogging(ctx context.Context, cfg config.Config, memoryLimit, logPath string) (*workerProc, error) {
	httpAddr := os.Getenv("PAYSTREAM_HTTP_ADDR")
	if httpAddr == "" {
		var err error
		if httpAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	pprofAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.workerBin)
	cmd.Env = append(os.Environ(),
		"PAYSTREAM_TEMPORAL_ADDRESS="+cfg.TemporalAddress,
		"PAYSTREAM_TEMPORAL_NAMESPACE="+cfg.Namespace,
		"PAYSTREAM_TASK_QUEUE="+cfg.TaskQueue,
		"PAYSTREAM_KAFKA_BROKERS="+strings.Join(cfg.KafkaBrokers, ","),
		"PAYSTREAM_TOPIC="+cfg.Topic,
		"PAYSTREAM_CONSUMER_GROUP="+cfg.ConsumerGroup,
		"PAYSTREAM_BIGQUERY_PROJECT="+cfg.BigQueryProject,
		"PAYSTREAM_BIGQUERY_DATASET="+cfg.BigQueryDataset,
		"PAYSTREAM_BIGQUERY_ENDPOINT="+cfg.BigQueryEndpoint,
		"PAYSTREAM_BIGQUERY_STORAGE_ENDPOINT="+cfg.BigQueryStorageEndpoint,
		"PAYSTREAM_SINK="+cfg.Sink,
		"PAYSTREAM_SCHEMA_REGISTRY="+cfg.SchemaRegistry,
		"PAYSTREAM_HTTP_ADDR="+httpAddr,
		"PAYSTREAM_PPROF_ADDR="+pprofAddr, // the steady run takes a heap profile
		"PAYSTREAM_MEMORY_LIMIT="+memoryLimit,
		// Shared by a killed worker and its replacement, as a container's
		// restarts share its pod's emptyDir; every run has its own, as
		// every run is a pod of its own.
		"PAYSTREAM_SNAPSHOT_DIR="+filepath.Join(e.dir, "worker-snapshots", cfg.TaskQueue),
	)
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = logFile, io.MultiWriter(logFile, pw)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &workerProc{cmd: cmd, httpAddr: httpAddr, pprofAddr: pprofAddr, done: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "worker started") {
				once = true
				close(started)
			}
		}
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		logFile.Close()
		close(w.done)
	}()
	go w.sample()
	select {
	case <-started:
		return w, nil
	case <-w.done:
		out, _ := os.ReadFile(logFile.Name())
		return nil, fmt.Errorf("worker exited at start: %s", out)
	case <-ctx.Done():
		w.kill()
		return nil, ctx.Err()
	case <-time.After(time.Minute):
		w.kill()
		return nil, fmt.Errorf("worker did not start within a minute; see %s", logFile.Name())
	}
}

func (w *workerProc) sample() {
	began := time.Now()
	path := fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid)
	for {
		if rss, ok := readRSS(path); ok {
			w.mu.Lock()
			w.samples = append(w.samples, rssSample{At: time.Since(began), RSS: rss})
			w.mu.Unlock()
		}
		select {
		case <-w.done:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// readRSS reads VmRSS from /proc/<pid>/status.
func readRSS(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

func (w *workerProc) rss() []rssSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]rssSample(nil), w.samples...)
}

func (w *workerProc) peakRSS() int64 {
	var peak int64
	for _, s := range w.rss() {
		peak = max(peak, s.RSS)
	}
	return peak
}

// stop asks the worker to stop as Kubernetes would (SIGTERM) and waits.
func (w *workerProc) stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(45 * time.Second):
		w.kill()
	}
}

// kill ends the worker at once, as a node failure would.
func (w *workerProc) kill() {
	_ = w.cmd.Process.Kill()
	<-w.done
}

// cpuSeconds is the user+system CPU a process has used, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields follow its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// cpuMeter measures the CPU each part of the stack uses over a run: the
// stack-level profile that says which part is the limit.
type cpuMeter struct {
	pids  map[string]int
	start map[string]float64
}

func (e *env) startCPU(worker *workerProc) *cpuMeter {
	temporal, emulator := e.stack.ServerPIDs()
	m := &cpuMeter{pids: map[string]int{"temporal": temporal, "bigquery-emulator": emulator, "bench+kafka": os.Getpid()}, start: map[string]float64{}}
	if worker != nil {
		m.pids["worker"] = worker.cmd.Process.Pid
	}
	for name, pid := range m.pids {
		m.start[name] = cpuSeconds(pid)
	}
	return m
}

// used returns each process's CPU seconds since startCPU.
func (m *cpuMeter) used() map[string]float64 {
	out := map[string]float64{}
	for name, pid := range m.pids {
		out[name] = cpuSeconds(pid) - m.start[name]
	}
	return out
}

// freeAddr is a free loopback port: a fixed one collides with whatever
// else runs.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// get reads path from w's HTTP server, or its profiles' for /debug/pprof/.
func (w *workerProc) get(ctx context.Context, path string) ([]byte, error) {
	addr := w.httpAddr
	if strings.HasPrefix(path, "/debug/pprof/") {
		addr = w.pprofAddr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %v", path, resp.Status, err)
	}
	return body, nil
}

// metric reads one unlabelled figure from w's /metrics.
func (w *workerProc) metric(ctx context.Context, name string) (float64, error) {
	body, err := w.get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metrics: no %s", name)
}

// heapTop takes w's heap profile (live bytes after a GC) and returns what
// `go tool pprof -top` makes of it: the summary line and the largest
// holders. path is where the profile is kept.
func (w *workerProc) heapTop(ctx context.Context, path string) ([]string, error) {
	body, err := w.get(ctx, "/debug/pprof/heap?gc=1")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=10", "-sample_index=inuse_space", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -top %s: %w", path, err)
	}
	var top []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// Keep the totals and the table; drop the file, type and time lines.
		if strings.HasPrefix(l, "Showing nodes") || strings.HasPrefix(strings.TrimSpace(l), "flat") || strings.Contains(l, "%") && !strings.Contains(l, ":") {
			top = append(top, strings.TrimRight(l, " "))
		}
	}
	return top, nil
}
