package workerbin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/paystream/paystream/e2e"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/simulation"
)

// poolWorker is a worker process of a pool test: its own task queue and
// where it serves /metrics, both read from its log.
type poolWorker struct {
	cmd     *exec.Cmd
	queue   string
	metrics string
}

func startPoolWorker(t *testing.T, bin string, f *e2e.Stack) *poolWorker {
	t.Helper()
	cmd := f.WorkerProcess(t, bin)
	w := &poolWorker{cmd: cmd}
	deadline := time.Now().Add(time.Minute)
	for (w.queue == "" || w.metrics == "") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		logged, err := os.Open(cmd.Stdout.(*os.File).Name())
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(logged)
		for sc.Scan() {
			var line struct {
				Msg   string `json:"msg"`
				Queue string `json:"own_task_queue"`
				Addr  string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Msg {
			case "worker started":
				w.queue = line.Queue
			case "serving health and metrics":
				w.metrics = "http://" + line.Addr + "/metrics"
			}
		}
		logged.Close()
	}
	if w.queue == "" || w.metrics == "" {
		t.Fatalf("worker did not say its queue and metrics address within a minute")
	}
	return w
}

// windowBuilds reads the worker's paystream_dedup_window_builds_total by
// source.
func (w *poolWorker) windowBuilds(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(w.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, metrics.WindowBuildsTotal+"{") {
			continue
		}
		var source string
		var n float64
		i := strings.Index(line, `source="`)
		if i < 0 {
			continue
		}
		source = line[i+len(`source="`):]
		source = source[:strings.IndexByte(source, '"')]
		fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n)
		out[source] += n
	}
	return out
}

// poolState is the pool as the operator reads it; empty before a worker
// has started one, or while the query fails.
func poolState(t *testing.T, f *e2e.Stack) contract.PoolState {
	t.Helper()
	st, err := f.Operator.Pool(context.Background())
	if err != nil || st == nil {
		return contract.PoolState{}
	}
	return *st
}

// batchRun is a MicroBatch run as visibility lists it.
type batchRun struct {
	id, queue string
	partition int
	started   time.Time
}

// completedBatches lists the completed MicroBatch runs.
func completedBatches(t *testing.T, f *e2e.Stack) []batchRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []batchRun
	var token []byte
	for {
		resp, err := f.Operator.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "WorkflowType = 'MicroBatch' AND ExecutionStatus = 'Completed'", NextPageToken: token, PageSize: 1000,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			r := batchRun{id: e.GetExecution().GetWorkflowId(), queue: e.GetTaskQueue(), started: e.GetStartTime().AsTime()}
			var topic string
			var start, end int64
			if _, err := fmt.Sscanf(strings.ReplaceAll(r.id, "/", " "), "batch %s %d %d-%d", &topic, &r.partition, &start, &end); err != nil {
				t.Fatalf("batch ID %q: %v", r.id, err)
			}
			out = append(out, r)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out
		}
	}
}

// TestPoolSpreadsPartitionsAndMovesOffADeadWorker runs three worker
// processes on six partitions: each worker loads about a third of the
// batches, no window is rebuilt from the log while they all run, and when
// one is SIGKILLed its partitions load on the other two; the books balance
// to the cent.
func TestPoolSpreadsPartitionsAndMovesOffADeadWorker(t *testing.T) {
	bin := e2e.BuildWorker(t)
	f := newFaultEnv(t, 6, 36000, 61)
	var pool []*poolWorker
	for range 3 {
		pool = append(pool, startPoolWorker(t, bin, f))
	}
	e2e.WaitFor(t, time.Minute, 500*time.Millisecond, "three workers in the pool", func() bool { return len(poolState(t, f).Members) == 3 })
	if _, err := f.Operator.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Steady state: the three share the work.
	e2e.WaitFor(t, 5*time.Minute, 500*time.Millisecond, "24 batches loaded", func() bool { return len(completedBatches(t, f)) >= 24 })
	st := poolState(t, f)
	byQueue := map[string]int{}
	for _, q := range st.Partitions {
		byQueue[q]++
	}
	for _, w := range pool {
		if byQueue[w.queue] != 2 {
			t.Errorf("worker %s holds %d partitions, want 2 (pool: %+v)", w.queue, byQueue[w.queue], st)
		}
	}
	doomed := pool[0]
	killedAt := time.Now()
	before := completedBatches(t, f)
	loaded := map[string]int{}
	for _, b := range before {
		loaded[b.queue]++
	}
	even := float64(len(before)) / 3
	for _, w := range pool {
		if n := float64(loaded[w.queue]); n < even/3 || n > 2*even {
			t.Errorf("worker %s loaded %.0f of %d batches; its even share is %.1f (all: %v)", w.queue, n, len(before), even, loaded)
		}
		if builds := w.windowBuilds(t); builds[metrics.WindowFromLog] != 0 || builds[metrics.WindowFromSnapshot] != 0 {
			t.Errorf("worker %s built windows in steady state: %v", w.queue, builds)
		}
	}

	// One worker dies: its partitions go on, elsewhere.
	var orphans []int
	for id, q := range st.Partitions {
		if q == doomed.queue {
			var p int
			fmt.Sscanf(id[strings.LastIndexByte(id, '/')+1:], "%d", &p)
			orphans = append(orphans, p)
		}
	}
	if err := doomed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.cmd.Wait()
	reconcileAfter(t, f, &f.Manifest)
	moved := map[int]int{}
	for _, b := range completedBatches(t, f) {
		if !b.started.After(killedAt) {
			continue
		}
		if b.queue == doomed.queue {
			t.Errorf("batch %s ran on the killed worker after it died", b.id)
		}
		moved[b.partition]++
	}
	for _, p := range orphans {
		if moved[p] == 0 {
			t.Errorf("partition %d of the killed worker loaded nothing after it died (batches after the kill by partition: %v)", p, moved)
		}
	}
	after := poolState(t, f)
	if len(after.Members) != 2 {
		t.Errorf("the pool has %d members after the kill, want 2: %+v", len(after.Members), after)
	}
	t.Logf("batches before the kill by worker: %v; after, by partition: %v", loaded, moved)
}

// loads counts the partitions of each queue.
func loads(partitions map[string]string) map[string]int {
	n := map[string]int{}
	for _, q := range partitions {
		n[q]++
	}
	return n
}

// runningBatches lists the MicroBatch runs still open, with their queues:
// what a partition that does not catch up is waiting on.
func runningBatches(t *testing.T, f *e2e.Stack) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.Operator.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: "WorkflowType = 'MicroBatch' AND ExecutionStatus = 'Running'"})
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range resp.GetExecutions() {
		out = append(out, e.GetExecution().GetWorkflowId()+" on "+e.GetTaskQueue())
	}
	return out
}

// TestPoolTerminatedThenAWorkerDies terminates the pool workflow, as an
// operator's terminate or reset would; the workers' next join starts a
// new pool run that knows no partition. Then the worker holding a
// partition is SIGKILLed while one of its batches runs: no pool will tell
// that partition its worker left, yet every partition must catch up within
// a bounded time, and the books balance to the cent.
func TestPoolTerminatedThenAWorkerDies(t *testing.T) {
	bin := e2e.BuildWorker(t)
	ctx := context.Background()
	f := e2e.Start(t, e2e.Options{Partitions: 4, Tuning: faultTuning(), NoWorker: true})
	workers := []*poolWorker{startPoolWorker(t, bin, f), startPoolWorker(t, bin, f)}
	e2e.WaitFor(t, time.Minute, 500*time.Millisecond, "two workers in the pool", func() bool { return len(poolState(t, f).Members) == 2 })
	// The stream flows for two and a half minutes, so batches are in
	// flight whenever the worker is killed.
	produced := make(chan error, 1)
	go func() {
		opts := simulation.DefaultOptions()
		opts.Seed = 62
		cfg := f.Stack.ClientConfig()
		m, err := simulation.Produce(ctx, opts, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 30000, Rate: 200})
		f.Manifest = m
		produced <- err
	}()
	if _, err := f.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, 5*time.Minute, 500*time.Millisecond, "8 batches loaded", func() bool { return len(completedBatches(t, f)) >= 8 })

	poolID := contract.PoolID(f.Operator.Config.TaskQueue)
	poolRun := func() (string, bool) {
		d, err := f.Operator.Temporal.DescribeWorkflowExecution(ctx, poolID, "")
		if err != nil {
			return "", false
		}
		info := d.GetWorkflowExecutionInfo()
		return info.GetExecution().GetRunId(), info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}
	oldRun, _ := poolRun()
	if err := f.Operator.Temporal.TerminateWorkflow(ctx, poolID, "", "test: the pool is terminated"); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, time.Minute, 500*time.Millisecond, "a new pool run holding both workers", func() bool {
		run, running := poolRun()
		return running && run != oldRun && len(poolState(t, f).Members) == 2
	})
	t.Logf("pool run %s terminated; the new run knows %+v", oldRun, poolState(t, f))

	var doomed *poolWorker
	var inFlight string
	e2e.WaitFor(t, 2*time.Minute, 500*time.Millisecond, "a batch in flight on a worker's queue", func() bool {
		for _, r := range runningBatches(t, f) {
			for _, w := range workers {
				if id, ok := strings.CutSuffix(r, " on "+w.queue); ok {
					doomed, inFlight = w, id
					return true
				}
			}
		}
		return false
	})
	if err := doomed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.cmd.Wait()
	killedAt := time.Now()
	d, err := f.Operator.Temporal.DescribeWorkflowExecution(ctx, inFlight, "")
	stranded := err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	t.Logf("killed worker %s; batch %s still running there: %v", doomed.queue, inFlight, stranded)

	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	producedAt := time.Now()
	const bound = 3 * time.Minute
	wctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	if err := f.Operator.WaitCaughtUp(wctx, nil); err != nil {
		st, _ := f.Operator.Status(ctx)
		t.Fatalf("not caught up within %s of the stream's end (%s after the kill): %v\nstatus: %+v\npool: %+v\nbatches running: %v",
			bound, time.Since(killedAt).Round(time.Second), err, st, poolState(t, f), runningBatches(t, f))
	}
	t.Logf("every partition caught up %s after the stream's end, %s after the kill; the pool now holds %+v",
		time.Since(producedAt).Round(time.Second), time.Since(killedAt).Round(time.Second), poolState(t, f))
	reconcileAfter(t, f, &f.Manifest)
	survivor := workers[0]
	if survivor == doomed {
		survivor = workers[1]
	}
	if st := poolState(t, f); len(st.Partitions) != 4 || loads(st.Partitions)[survivor.queue] != 4 {
		t.Errorf("the new pool run holds %+v; want all 4 partitions, on the surviving worker %s", st, survivor.queue)
	}
	for _, b := range completedBatches(t, f) {
		if b.started.After(killedAt) && b.queue == doomed.queue {
			t.Errorf("batch %s ran on the killed worker after it died", b.id)
		}
	}
	if dir := os.Getenv("PAYSTREAM_RECORD_HISTORY"); dir != "" {
		for _, id := range []string{poolID, contract.SupervisorID(f.Operator.Config.Topic)} {
			name := strings.NewReplacer("/", "_").Replace(id) + ".json"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(devstacktest.HistoryJSON(t, f.Operator.Temporal, id)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
