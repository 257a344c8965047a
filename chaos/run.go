package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/warehouse"
)

// Options configure one chaos run; the schedule comes from Seed.
type Options struct {
	Seed      uint64
	Duration  time.Duration
	WriteMode string
	// Dir holds the stack's state, the worker binary and the workers'
	// logs; a new temporary directory when empty.
	Dir string
	// CatchUp bounds the wait for ingestion to finish after production.
	CatchUp time.Duration
	Log     io.Writer
}

// Result is what a run found.
type Result struct {
	Schedule Schedule
	Verdict  Verdict
	// Findings are failures outside the books: a partition left stopped,
	// ingestion that never caught up, a reader that disagrees with the
	// producer. Each is a bug to report.
	Findings []string
	Produced int
	Aborted  int
	Rounds   map[string]int
	Done     map[Fault]int // steps carried out, by fault
	Dir      string
}

// OK is true when the run found nothing.
func (r Result) OK() bool { return r.Verdict.OK() && len(r.Findings) == 0 }

// run is the chaos run: a stack, workers, the producer and the schedule,
// then the books against the oracle.
func run(ctx context.Context, opts Options) (res Result, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.CatchUp == 0 {
		opts.CatchUp = 4 * time.Minute
	}
	sched := NewSchedule(opts.Seed, opts.Duration, opts.WriteMode)
	res.Schedule = sched
	sched.Write(opts.Log)
	logf := func(format string, args ...any) { fmt.Fprintf(opts.Log, "chaos: "+format+"\n", args...) }

	root, err := devstack.FindRoot(".")
	if err != nil {
		return res, err
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "paystream-chaos-"); err != nil {
			return res, err
		}
	}
	res.Dir = opts.Dir
	logf("state, worker logs and binary in %s", opts.Dir)
	workerBin := filepath.Join(opts.Dir, "worker")
	build := exec.CommandContext(ctx, "go", "build", "-o", workerBin, "./worker")
	build.Dir, build.Stdout, build.Stderr = root, opts.Log, opts.Log
	if err := build.Run(); err != nil {
		return res, fmt.Errorf("build the worker: %w", err)
	}

	stackCfg := devstack.DefaultConfig()
	stackCfg.Root = root
	stackCfg.StateDir = filepath.Join(opts.Dir, "state")
	stackCfg.Partitions = sched.Partitions
	if err := devstack.UseFreePorts(&stackCfg); err != nil {
		return res, err
	}
	stack, err := devstack.Start(ctx, stackCfg)
	if err != nil {
		return res, err
	}
	defer stack.Stop()

	// BigQuery refusals: the workers write through this proxy, the
	// oracle's check reads the emulator directly.
	proxy, err := newRefusingProxy(stack.BigQueryEndpoint())
	if err != nil {
		return res, err
	}
	defer proxy.Close()
	storage, err := devstacktest.StartStorageProxy(net.JoinHostPort(stackCfg.Host, strconv.Itoa(stackCfg.BigQueryGRPCPort)))
	if err != nil {
		return res, err
	}
	defer storage.Close()

	cfg := stack.ClientConfig()
	cfg.WriteMode = sched.WriteMode
	cfg.AllowedLateness = sched.Lateness
	tc, err := stack.DialTemporal(ctx)
	if err != nil {
		return res, err
	}
	defer tc.Close()
	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		return res, err
	}
	defer bq.Close()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor, tuning.SuperviseEvery = sched.MaxRecords, time.Second, 2*time.Second
	op := &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: tuning}

	workerCfg := cfg
	workerCfg.BigQueryEndpoint, workerCfg.BigQueryStorageEndpoint = proxy.URL, storage.Addr
	pool := &workerPool{bin: workerBin, dir: opts.Dir, cfg: workerCfg, log: logf}
	defer pool.killAll()
	for range sched.Workers {
		if err := pool.start(); err != nil {
			return res, err
		}
	}
	if _, err := op.Start(ctx); err != nil {
		return res, fmt.Errorf("start: %w", err)
	}

	prod, err := newProducer(sched.ProducerSeed, cfg.KafkaBrokers, cfg.Topic)
	if err != nil {
		return res, err
	}
	defer prod.close()
	began := time.Now()
	prodCtx, stopProducing := context.WithTimeout(ctx, sched.Duration)
	defer stopProducing()
	prodErr := make(chan error, 1)
	go func() { prodErr <- prod.Run(prodCtx) }()

	ex := &executor{op: op, stack: stack, pool: pool, proxy: proxy, storage: storage, log: logf, began: began, done: map[Fault]int{}}
	latenessesUsed := []time.Duration{sched.Lateness}
	for _, st := range sched.Steps {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Until(began.Add(st.At))):
		}
		ex.do(ctx, st)
		if st.Fault == FaultLateness && !slices.Contains(latenessesUsed, st.Lateness) {
			latenessesUsed = append(latenessesUsed, st.Lateness)
		}
	}
	if err := <-prodErr; err != nil {
		return res, fmt.Errorf("producer: %w", err)
	}
	produced := prod.Records()
	res.Produced, res.Rounds, res.Done = len(produced), prod.Rounds(), ex.done
	logf("%s: produced %d records in rounds %v; schedule done: %v", time.Since(began).Round(time.Second), len(produced), res.Rounds, ex.done)

	// Every hold has ended: a partition not running now was left stopped
	// by the schedule's own stop/start, drain/start or pause/resume.
	proxy.refuse.Store(false)
	storage.Refuse("")
	if pool.count() == 0 {
		if err := pool.start(); err != nil {
			return res, err
		}
	}
	res.Findings = append(res.Findings, notRunning(ctx, op, 30*time.Second)...)
	// A set-batch to one record is a fault while it lasts; the catch-up
	// runs at the starting size, as an operator would set it back.
	if _, err := op.SetBatch(ctx, nil, contract.SetBatchInput{MaxRecords: sched.MaxRecords}); err != nil {
		logf("set-batch back to %d: %v", sched.MaxRecords, err)
	}
	// Then as an operator would: start what is not running, so the books
	// can be checked whatever the finding.
	if _, err := op.Start(ctx); err != nil {
		res.Findings = append(res.Findings, fmt.Sprintf("start after the schedule: %v", err))
	}
	waitCtx, cancel := context.WithTimeout(ctx, opts.CatchUp)
	err = op.WaitCaughtUp(waitCtx, nil)
	cancel()
	if err != nil {
		st, _ := op.Status(ctx)
		var lines []string
		for _, s := range st {
			lines = append(lines, fmt.Sprintf("partition %d %s committed %d, high watermark %d, %s", s.Partition, s.State, s.Committed, s.HighWatermark, s.LastError))
		}
		res.Findings = append(res.Findings, fmt.Sprintf("not caught up %s after production ended: %v; %s", opts.CatchUp, err, strings.Join(lines, "; ")))
	}
	logf("%s: caught up", time.Since(began).Round(time.Second))

	books, err := Oracle(produced, latenessesUsed)
	if err != nil {
		return res, fmt.Errorf("oracle: %w", err)
	}
	res.Aborted = books.Aborted
	var diffs []string
	for _, step := range []int64{0, 1, int64(sched.MaxRecords)} {
		d, err := CompareLog(ctx, cfg.Kafka(), cfg.Topic, produced, step)
		if err != nil {
			return res, err
		}
		for _, line := range d {
			diffs = append(diffs, fmt.Sprintf("read in steps of %d: %s", step, line))
		}
	}
	for i, d := range diffs {
		if i == 20 {
			res.Findings = append(res.Findings, fmt.Sprintf("kafkalog: … and %d more differences from the producer", len(diffs)-i))
			break
		}
		res.Findings = append(res.Findings, "kafkalog: "+d)
	}
	bounds, err := kafkalog.AllBounds(ctx, cfg.Kafka(), cfg.Topic)
	if err != nil {
		return res, err
	}
	ends := map[int]int64{}
	for p, b := range bounds {
		ends[p] = b.Stable
	}
	if res.Verdict, err = Check(ctx, bq, cfg.BigQueryDataset, books, ends); err != nil {
		return res, err
	}
	return res, nil
}

// notRunning waits up to wait for every partition's workflow to run, and
// names those that do not.
func notRunning(ctx context.Context, op *operator.Operator, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		parts, err := kafkalog.Partitions(ctx, op.Config.Kafka(), op.Config.Topic)
		var out []string
		for p := range parts {
			id := contract.IngestID(op.Config.Topic, p)
			desc, err := op.Temporal.DescribeWorkflowExecution(ctx, id, "")
			state := "not found"
			if err == nil {
				state = desc.GetWorkflowExecutionInfo().GetStatus().String()
				if desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
					continue
				}
			}
			out = append(out, fmt.Sprintf("partition %d is %s after the schedule ended, with its last control undone (stopped for good)", p, state))
		}
		if err == nil && len(out) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				out = append(out, fmt.Sprintf("list partitions: %v", err))
			}
			return out
		}
		time.Sleep(time.Second)
	}
}

// executor carries out the schedule's steps, one after another.
type executor struct {
	op    *operator.Operator
	stack *devstack.Stack
	pool  *workerPool
	proxy *refusingProxy
	// storage refuses Storage Write appends to one table at a time.
	storage *devstacktest.StorageProxy
	log     func(string, ...any)
	began   time.Time
	done    map[Fault]int
}

func (e *executor) do(ctx context.Context, st Step) {
	e.log("at %-7s %s", time.Since(e.began).Round(100*time.Millisecond), st)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	err := e.apply(ctx, st)
	if err != nil {
		// A control refused because of an earlier fault (pausing a drained
		// partition) is part of the chaos; the books judge the run.
		e.log("         %s: %v", st.Fault, err)
		return
	}
	e.done[st.Fault]++
}

func (e *executor) apply(ctx context.Context, st Step) error {
	hold := func() { time.Sleep(st.Hold) }
	switch st.Fault {
	case FaultKill, FaultTerm:
		if err := e.pool.stop(st.Worker, st.Fault == FaultKill); err != nil {
			return err
		}
		hold()
		return e.pool.start()
	case FaultAddWorker:
		if e.pool.count() >= maxWorkers {
			return errors.New("already at the most workers")
		}
		return e.pool.start()
	case FaultRemoveWorker:
		if e.pool.count() <= 1 {
			return errors.New("only one worker left")
		}
		return e.pool.stop(st.Worker, false)
	case FaultPause:
		paused, err := e.op.Control(ctx, contract.PauseUpdate, st.Partitions)
		if err != nil {
			// Those that paused before the error are resumed, as an
			// operator who read it would.
			for _, r := range paused {
				if _, rerr := e.op.Control(ctx, contract.ResumeUpdate, []int{r.Partition}); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			return err
		}
		hold()
		_, err = e.op.Control(ctx, contract.ResumeUpdate, st.Partitions)
		return err
	case FaultDrain:
		if _, err := e.op.Control(ctx, contract.DrainUpdate, st.Partitions); err != nil {
			return err
		}
		hold()
		_, err := e.op.Start(ctx)
		return err
	case FaultStopStart:
		if _, err := e.op.Stop(ctx); err != nil {
			return err
		}
		hold()
		_, err := e.op.Start(ctx)
		return err
	case FaultSetBatch:
		_, err := e.op.SetBatch(ctx, st.Partitions, contract.SetBatchInput{MaxRecords: st.Records})
		return err
	case FaultLateness:
		// The documented way to change a setting: stop, wait until
		// stopped, start with the new one.
		if _, err := e.op.Stop(ctx); err != nil {
			return err
		}
		if err := waitStopped(ctx, e.op); err != nil {
			return err
		}
		e.op.Config.AllowedLateness = st.Lateness
		_, err := e.op.Start(ctx)
		return err
	case FaultRestartTemporal:
		return e.stack.RestartTemporal(ctx)
	case FaultTerminatePool:
		return e.op.Temporal.TerminateWorkflow(ctx, contract.PoolID(e.op.Config.TaskQueue), "", "chaos: pool terminated")
	case FaultAddPartitions:
		c := e.op.Config.Kafka().Client(10 * time.Second)
		defer c.Close()
		parts, err := c.Partitions(ctx, e.op.Config.Topic)
		if err != nil {
			return err
		}
		return c.GrowTopic(ctx, e.op.Config.Topic, len(parts)+st.Records)
	case FaultRefuseBigQuery:
		// Load jobs and queries get 503; Storage Write appends to one
		// table get INVALID_ARGUMENT, as rows BigQuery cannot take.
		table := refusedTables[st.Worker%len(refusedTables)]
		e.proxy.refuse.Store(true)
		e.storage.Refuse(table)
		hold()
		e.proxy.refuse.Store(false)
		e.storage.Refuse("")
		e.log("         BigQuery refused %d HTTP writes and %d appends (to %s) so far", e.proxy.refused.Load(), e.storage.Refused(), table)
		return nil
	}
	return fmt.Errorf("unknown fault %q", st.Fault)
}

// refusedTables are the tables whose appends a refusal refuses: the first
// a batch writes, one in the middle, and the ledger, written last.
var refusedTables = []string{"transactions", "ingest_errors", "batch_ledger"}

// waitStopped waits until no partition's workflow runs.
func waitStopped(ctx context.Context, op *operator.Operator) error {
	for {
		parts, err := kafkalog.Partitions(ctx, op.Config.Kafka(), op.Config.Topic)
		if err != nil {
			return err
		}
		running := 0
		for p := range parts {
			desc, err := op.Temporal.DescribeWorkflowExecution(ctx, contract.IngestID(op.Config.Topic, p), "")
			if err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				running++
			}
		}
		if running == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d partitions still running: %w", running, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// refusingProxy forwards the workers' BigQuery calls to the emulator and,
// while refuse is set, answers every write (POST: load jobs, uploads,
// inserts) with 503, as BigQuery answers when it is unavailable.
type refusingProxy struct {
	URL     string
	srv     *http.Server
	refuse  atomic.Bool
	refused atomic.Int64
}

func newRefusingProxy(target string) (*refusingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &refusingProxy{URL: "http://" + ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	// Calls a worker abandons (killed, timed out) are no news.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.refuse.Load() && r.Method == http.MethodPost {
			p.refused.Add(1)
			http.Error(w, `{"error":{"code":503,"message":"chaos: BigQuery unavailable"}}`, http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *refusingProxy) Close() { p.srv.Close() }

// workerPool is the worker processes of the run; all share one snapshot
// directory, as a pod's restarts share its volume.
type workerPool struct {
	bin string
	dir string
	cfg config.Config
	log func(string, ...any)

	mu      sync.Mutex
	running []*workerProc
	started int
}

type workerProc struct {
	n    int
	cmd  *exec.Cmd
	done chan struct{}
}

func (wp *workerPool) count() int {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	return len(wp.running)
}

// start runs one more worker.
func (wp *workerPool) start() error {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	wp.started++
	n := wp.started
	c := wp.cfg
	cmd := exec.Command(wp.bin, "--temporal-address", c.TemporalAddress, "--kafka-brokers", strings.Join(c.KafkaBrokers, ","),
		"--bigquery-endpoint", c.BigQueryEndpoint, "--bigquery-storage-endpoint", c.BigQueryStorageEndpoint,
		"--snapshot-dir", filepath.Join(wp.dir, "snapshots"), "--http-addr", "127.0.0.1:0", "--log-level", "info")
	logFile, err := os.Create(filepath.Join(wp.dir, fmt.Sprintf("worker-%d.log", n)))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A chaos run killed from outside leaves no worker behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start worker %d: %w", n, err)
	}
	w := &workerProc{n: n, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(w.done)
	}()
	wp.running = append(wp.running, w)
	wp.log("         worker %d started (pid %d)", n, cmd.Process.Pid)
	return nil
}

// stop ends running worker pick (modulo the count): SIGKILL when kill,
// SIGTERM otherwise, and waits for it.
func (wp *workerPool) stop(pick int, kill bool) error {
	wp.mu.Lock()
	if len(wp.running) == 0 {
		wp.mu.Unlock()
		return errors.New("no worker running")
	}
	i := pick % len(wp.running)
	w := wp.running[i]
	wp.running = slices.Delete(wp.running, i, i+1)
	wp.mu.Unlock()
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = w.cmd.Process.Signal(sig)
	select {
	case <-w.done:
	case <-time.After(60 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	wp.log("         worker %d %s", w.n, map[bool]string{true: "killed", false: "stopped"}[kill])
	return nil
}

func (wp *workerPool) killAll() {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	for _, w := range wp.running {
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	wp.running = nil
}
