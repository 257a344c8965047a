package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/workflows"
)

// produceAndStart produces a simulated stream of n records and starts
// ingesting it.
func produceAndStart(t *testing.T, e *Stack, n int) simulation.Manifest {
	t.Helper()
	m := e.Produce(t, simulation.DefaultOptions(), n)
	if _, err := e.Operator.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTemporalRestartMidRun stops the Temporal server while batches are in
// flight and starts it again on the same state: the worker reconnects by
// itself and the books balance.
func TestTemporalRestartMidRun(t *testing.T) {
	ctx := context.Background()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	e := Start(t, Options{Partitions: 2, Tuning: tuning})
	m := produceAndStart(t, e, 8000)
	time.Sleep(2 * time.Second)
	if err := e.Stack.RestartTemporal(ctx); err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)
}

// TestTwoWorkersAndTwoStarters runs a second worker beside the first and
// two starters at once, then backfills what was ingested: still exactly once.
func TestTwoWorkersAndTwoStarters(t *testing.T) {
	ctx := context.Background()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 600, time.Second
	e := Start(t, Options{Partitions: 3, Tuning: tuning})
	cfg := e.Operator.Config
	second, err := pipeline.NewWorker(ctx, cfg, e.Operator.Temporal, pipeline.WorkerOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop)
	m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 8000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.Operator.Start(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent start: %v", err)
		}
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	for p := range 3 {
		if _, err := e.Operator.Backfill(ctx, p, 0, m.EndOffsets[p]); err != nil {
			t.Fatal(err)
		}
	}
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)
}

// TestKafkaFaultsAndBrokerRestart fails half of the broker's requests for a
// while, by closing the connection, then restarts the broker from its data
// directory mid-run.
func TestKafkaFaultsAndBrokerRestart(t *testing.T) {
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	e := Start(t, Options{Partitions: 2, Tuning: tuning})
	m := produceAndStart(t, e, 8000)
	var faulting atomic.Bool
	faulting.Store(true)
	failed := atomic.Int64{}
	n := atomic.Int64{}
	e.Stack.Kafka().Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		if !faulting.Load() {
			e.Stack.Kafka().DropControl()
			return nil, nil, false
		}
		e.Stack.Kafka().KeepControl()
		if n.Add(1)%2 == 0 {
			failed.Add(1)
			return nil, errors.New("injected fault"), true
		}
		return nil, nil, false
	})
	time.Sleep(4 * time.Second)
	faulting.Store(false)
	if failed.Load() == 0 {
		t.Fatal("no Kafka request failed; the fault was never injected")
	}
	if err := e.Stack.RestartKafka(); err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)
	t.Logf("%d Kafka requests failed by injection, then the broker restarted", failed.Load())
}

// TestBigQueryFaults puts a reverse proxy in front of the emulator that, in
// turn, holds the look-up of a ledger job whose creation the client never
// heard of longer than the heartbeat timeout (the emulator's answers take
// that long once its tables have grown), answers 503 before forwarding,
// forwards and then answers 503 (the job was accepted, the client never
// hears), and answers slowly.
func TestBigQueryFaults(t *testing.T) {
	ctx := context.Background()
	var target atomic.Value // *url.URL of the emulator
	var mode atomic.Value   // "", "stall", "503", "503-after", "slow"
	mode.Store("")
	injected := atomic.Int64{}
	var stallMu sync.Mutex
	refusedInStall, stalled := map[string]string{}, map[string]bool{} // ledger job ID → its batch ID; batch IDs
	batchOfRows := regexp.MustCompile(`"batch_id":"([^"]+)"`)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp := httputil.NewSingleHostReverseProxy(target.Load().(*url.URL))
		current := mode.Load()
		if current == "stall" {
			// The ledger job is accepted and the client hears 503: its
			// retry finds the job, and Load asks whether its rows landed.
			if id, err := ledgerLoadJob(r); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			} else if id != "" {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				if m := batchOfRows.FindSubmatch(body); m != nil {
					stallMu.Lock()
					refusedInStall[id] = string(m[1])
					stallMu.Unlock()
				}
				current = "503-after"
			}
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/jobs/") {
			id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			stallMu.Lock()
			batch, refused := refusedInStall[id]
			hold := refused && !stalled[batch]
			if hold {
				stalled[batch] = true
			}
			stallMu.Unlock()
			if hold {
				injected.Add(1)
				time.Sleep(10 * time.Second) // the heartbeat timeout is 8 s
			}
		}
		switch current {
		case "503":
			injected.Add(1)
			http.Error(w, `{"error":{"code":503,"message":"injected"}}`, http.StatusServiceUnavailable)
			return
		case "503-after":
			if r.Method == http.MethodPost {
				injected.Add(1)
				rec := httptest.NewRecorder()
				rp.ServeHTTP(rec, r)
				http.Error(w, `{"error":{"code":503,"message":"injected after the fact"}}`, http.StatusServiceUnavailable)
				return
			}
		case "slow":
			injected.Add(1)
			time.Sleep(1500 * time.Millisecond)
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 600, time.Second
	e := Start(t, Options{Partitions: 2, Tuning: tuning, Worker: func(c *config.Config) { c.BigQueryEndpoint = proxy.URL }})
	u, err := url.Parse(e.Stack.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	target.Store(u)
	m := produceAndStart(t, e, 8000)
	// The stall comes first, so a Load it holds is a first attempt.
	for _, m := range []string{"stall", "503", "503-after", "slow", "503-after", ""} {
		mode.Store(m)
		time.Sleep(3 * time.Second)
	}
	if injected.Load() == 0 {
		t.Fatal("no BigQuery request was faulted")
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)
	t.Logf("%d BigQuery requests faulted", injected.Load())

	// A Load attempt waiting on a slow call is alive: it must not be
	// timed out and run again.
	stallMu.Lock()
	defer stallMu.Unlock()
	if len(stalled) == 0 {
		t.Fatal("no retried ledger job's look-up was held: the test proves nothing")
	}
	for id := range stalled {
		if n := loadAttempts(ctx, t, e, id); n != 1 {
			t.Errorf("batch %s: Load finished on attempt %d after a 7 s call, want 1: a live attempt was timed out", id, n)
		}
	}
}

// loadAttempts is the attempt on which batch id's Load activity finished.
func loadAttempts(ctx context.Context, t *testing.T, e *Stack, id string) int32 {
	t.Helper()
	it := e.Operator.Temporal.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	loads := map[int64]bool{} // scheduled event IDs of Load
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "Load" {
			loads[ev.GetEventId()] = true
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && loads[a.GetScheduledEventId()] {
			return a.GetAttempt()
		}
	}
	t.Fatalf("batch %s: no Load started in its history", id)
	return 0
}

// TestStopWhileABatchRetries: every partition's first batch writes its
// data tables and then fails for good on the ledger, so each partition
// waits to run it again. Partition 1 is stopped there: the stop waits for
// that batch, which loads under its own ID once the ledger takes it, and
// only then does the partition stop; a start typed meanwhile waits for
// that and starts it again after the batch. Partition 0 is terminated there by
// hand; started again at another batch size, it must run that very batch
// again, not re-plan its range under a new batch ID and write its rows a
// second time.
func TestStopWhileABatchRetries(t *testing.T) {
	ctx := context.Background()
	var target atomic.Value // *url.URL of the emulator
	var failLedger atomic.Bool
	failLedger.Store(true)
	refused := atomic.Int64{}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failLedger.Load() {
			id, err := ledgerLoadJob(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if id != "" {
				// The job is accepted and fails, as a load into a table
				// whose schema was changed by hand would.
				refused.Add(1)
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"kind":"bigquery#job","jobReference":{"projectId":"p","jobId":%q},"status":{"state":"DONE",`+
					`"errorResult":{"reason":"invalid","message":"injected: ledger refused"},"errors":[{"reason":"invalid","message":"injected: ledger refused"}]}}`, id)
				return
			}
		}
		httputil.NewSingleHostReverseProxy(target.Load().(*url.URL)).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	e := Start(t, Options{Partitions: 2, Tuning: tuning, Worker: func(c *config.Config) { c.BigQueryEndpoint = proxy.URL }})
	u, err := url.Parse(e.Stack.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	target.Store(u)
	m := produceAndStart(t, e, 3000)

	waitStates(t, e, contract.StateBackoff)
	if refused.Load() == 0 {
		t.Fatal("no ledger load was refused")
	}
	first := func(p int) string {
		return contract.Range{Topic: e.Operator.Config.Topic, Partition: p, Start: 0, End: 500}.ID()
	}
	if err := e.Operator.Temporal.TerminateWorkflow(ctx, contract.IngestID(e.Operator.Config.Topic, 0), "", "by hand, in the test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Operator.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Partition 1 does not stop while its failed batch waits.
	time.Sleep(3 * time.Second)
	if st := partitionState(t, e, 1); st != contract.StateBackoff {
		t.Fatalf("partition 1 is %q while its failed batch waits, want %q", st, contract.StateBackoff)
	}
	// The data tables hold the failed batches' rows, the ledger nothing.
	table := func(name string) string {
		return fmt.Sprintf("`%s.%s.%s`", e.Operator.BigQuery.Project(), e.Operator.Config.BigQueryDataset, name)
	}
	if n := rows(t, e, "SELECT COUNT(*) FROM "+table("transactions"))[0][0].(int64); n == 0 {
		t.Fatal("the failed batches wrote no transactions; the test needs them to")
	}
	ledgerRows := func(id string) int64 {
		return rows(t, e, "SELECT COUNT(*) FROM "+table("batch_ledger")+" WHERE batch_id = '"+id+"'")[0][0].(int64)
	}

	failLedger.Store(false)
	// Started at once, while partition 1 still runs to load its failed
	// batch: start waits for that run to stop (within two minutes, the
	// second failure's wait) and only then starts it again, from the
	// ledger that batch wrote.
	e.Operator.Tuning.MaxRecords = 700 // a re-plan would make another range
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	res, err := e.Operator.Start(startCtx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if n := ledgerRows(first(1)); n != 1 {
		t.Fatalf("batch %s has %d ledger rows, want 1: the stop did not wait for it", first(1), n)
	}
	for _, r := range res {
		want := startWant{From: 500, AfterStop: true}
		if r.Partition == 0 {
			want = startWant{From: 0, Pending: first(0)}
		}
		if got := (startWant{From: r.From, Pending: r.Pending, AfterStop: r.AfterStop}); got != want || r.Already {
			t.Fatalf("partition %d: start answered %+v (already running: %v), want %+v", r.Partition, got, r.Already, want)
		}
	}
	e.WaitCaughtUp(t, 3*time.Minute)
	for p := range 2 {
		if n := ledgerRows(first(p)); n != 1 {
			t.Errorf("batch %s has %d ledger rows, want 1: it did not run again as it was", first(p), n)
		}
	}
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)

	// A run handed a stop as a drain (one whose history was full when the
	// stop met continue-as-new) is stopping too: start waits for it, and
	// does not answer that the partition runs. Here no worker takes it,
	// so the start runs out of time naming it.
	if _, err := e.Operator.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	id := contract.IngestID(e.Operator.Config.Topic, 0)
	if _, err := e.Operator.WaitStopped(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Operator.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "no-worker-polls-this"},
		workflows.PartitionIngest, contract.IngestInput{Topic: e.Operator.Config.Topic, Partition: 0, Control: contract.Control{Draining: true}}); err != nil {
		t.Fatal(err)
	}
	defer e.Operator.Temporal.TerminateWorkflow(ctx, id, "", "the test's end")
	startCtx, cancel = context.WithTimeout(ctx, 5*time.Second)
	res, err = e.Operator.Start(startCtx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), id) {
		t.Fatalf("start beside a run handed a drain answered %+v, %v; want it to wait for %s and run out of time", res, err, id)
	}
}

// TestStorageWriteStopWhileABatchFails is the same stop in storagewrite
// mode: every partition's first batch appends its data tables' rows, then
// the Storage API refuses its ledger rows (INVALID_ARGUMENT, as after a
// schema changed by hand), so each partition waits to run that batch
// again. The stop waits for those batches; once the ledger takes rows
// again they run at the stream offsets they were given, so the data rows
// already appended are not appended twice, and the partitions stop.
// Started again on new streams, at another batch size, the rest loads and
// everything reconciles to the cent.
func TestStorageWriteStopWhileABatchFails(t *testing.T) {
	ctx := context.Background()
	stackCfg := devstacktest.Config(t, 2)
	proxy := devstacktest.NewStorageProxy(t, net.JoinHostPort(stackCfg.Host, strconv.Itoa(stackCfg.BigQueryGRPCPort)))
	proxy.Refuse(contract.TableBatchLedger)
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	e := Start(t, Options{Servers: &stackCfg, Tuning: tuning, Worker: func(c *config.Config) { c.BigQueryStorageEndpoint = proxy.Addr }})
	e.Operator.Config.WriteMode = config.WriteModeStorageWrite
	m := produceAndStart(t, e, 3000)

	waitStates(t, e, contract.StateBackoff)
	table := func(name string) string {
		return fmt.Sprintf("`%s.%s.%s`", e.Operator.BigQuery.Project(), e.Operator.Config.BigQueryDataset, name)
	}
	count := func(sql string) int64 { return rows(t, e, sql)[0][0].(int64) }
	if proxy.Refused() == 0 || count("SELECT COUNT(*) FROM "+table(contract.TableTransactions)) == 0 {
		t.Fatalf("%d ledger appends refused and no transactions written: the test needs the failed batches to write their data rows", proxy.Refused())
	}
	ids, err := e.Operator.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A wait for the stop ends with the partitions still running, and
	// says so, naming each and what it waits on.
	waitCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = e.Operator.WaitStopped(waitCtx, ids)
	cancel()
	if !errors.Is(err, operator.ErrStillRunning) || strings.Count(err.Error(), "("+contract.StateBackoff+")") != 2 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("waiting 3 s for partitions whose failed batches cannot load: %v; want one line naming both, %q", err, contract.StateBackoff)
	}
	for p := range 2 {
		if st := partitionState(t, e, p); st != contract.StateBackoff {
			t.Fatalf("partition %d is %q while its failed batch waits, want %q", p, st, contract.StateBackoff)
		}
	}

	proxy.Refuse("")
	deadline := time.Now().Add(3 * time.Minute)
	for partitionState(t, e, 0) != "stopped" || partitionState(t, e, 1) != "stopped" {
		if time.Now().After(deadline) {
			t.Fatalf("partitions did not stop once their failed batches could load: %q, %q", partitionState(t, e, 0), partitionState(t, e, 1))
		}
		time.Sleep(time.Second)
	}
	for p := range 2 {
		id := contract.Range{Topic: e.Operator.Config.Topic, Partition: p, Start: 0, End: 500}.ID()
		if n := count("SELECT COUNT(*) FROM " + table(contract.TableBatchLedger) + " WHERE batch_id = '" + id + "'"); n != 1 {
			t.Fatalf("batch %s has %d ledger rows, want 1: the stop did not wait for it", id, n)
		}
	}

	e.Operator.Tuning.MaxRecords = 700
	res, err := e.Operator.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.From != 500 || r.Pending != "" {
			t.Fatalf("partition %d started at %d with pending batch %q, want 500 and none", r.Partition, r.From, r.Pending)
		}
	}
	e.WaitCaughtUp(t, 3*time.Minute)
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)
}

// TestStorageWriteTerminatedWhileABatchFails: in storagewrite mode every
// partition's first batch appends its data tables' rows to COMMITTED
// streams, visible at once, and then the ledger append is refused, so each
// partition waits to run that batch again. An operator terminates both
// partitions there (temporal workflow terminate), lets the ledger take rows
// again, and does what start says. Start must run each failed batch again
// as it first ran, at the stream offsets it recorded, so the rows already
// appended are refused as already written rather than added twice; then the
// rest loads at another batch size and everything reconciles to the cent.
func TestStorageWriteTerminatedWhileABatchFails(t *testing.T) {
	ctx := context.Background()
	stackCfg := devstacktest.Config(t, 2)
	proxy := devstacktest.NewStorageProxy(t, net.JoinHostPort(stackCfg.Host, strconv.Itoa(stackCfg.BigQueryGRPCPort)))
	proxy.Refuse(contract.TableBatchLedger)
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	e := Start(t, Options{Servers: &stackCfg, Tuning: tuning, Worker: func(c *config.Config) { c.BigQueryStorageEndpoint = proxy.Addr }})
	e.Operator.Config.WriteMode = config.WriteModeStorageWrite
	m := produceAndStart(t, e, 3000)

	waitStates(t, e, contract.StateBackoff)
	table := func(name string) string {
		return fmt.Sprintf("`%s.%s.%s`", e.Operator.BigQuery.Project(), e.Operator.Config.BigQueryDataset, name)
	}
	count := func(sql string) int64 { return rows(t, e, sql)[0][0].(int64) }
	written := count("SELECT COUNT(*) FROM " + table(contract.TableTransactions))
	if proxy.Refused() == 0 || written == 0 {
		t.Fatalf("%d ledger appends refused and %d transactions written: the test needs the failed batches to write their data rows", proxy.Refused(), written)
	}
	// As an operator would: the supervisor first, so that it does not
	// start the partitions again itself.
	for _, id := range []string{contract.SupervisorID(e.Operator.Config.Topic), contract.IngestID(e.Operator.Config.Topic, 0), contract.IngestID(e.Operator.Config.Topic, 1)} {
		if err := e.Operator.Temporal.TerminateWorkflow(ctx, id, "", "by hand, in the test"); err != nil {
			t.Fatal(err)
		}
	}
	proxy.Refuse("")

	first := func(p int) string {
		return contract.Range{Topic: e.Operator.Config.Topic, Partition: p, Start: 0, End: 500}.ID()
	}
	e.Operator.Tuning.MaxRecords = 700 // a re-plan would make another range
	res, err := e.Operator.Start(ctx)
	if err != nil {
		// Follow the advice, as an operator would, so that a step that
		// loads twice shows in the books below.
		t.Errorf("start refused: %v", err)
		if !strings.Contains(err.Error(), "--write-mode load") {
			t.FailNow()
		}
		e.Operator.Config.WriteMode = config.WriteModeLoad
		if res, err = e.Operator.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range res {
		if r.From != 0 || r.Pending != first(r.Partition) {
			t.Errorf("partition %d started at %d with pending batch %q, want 0 and %q", r.Partition, r.From, r.Pending, first(r.Partition))
		}
	}
	e.WaitCaughtUp(t, 3*time.Minute)
	for p := range 2 {
		if n := count("SELECT COUNT(*) FROM " + table(contract.TableBatchLedger) + " WHERE batch_id = '" + first(p) + "'"); n != 1 {
			t.Errorf("batch %s has %d ledger rows, want 1", first(p), n)
		}
	}
	if n := count("SELECT COUNT(*) FROM (SELECT transaction_id FROM " + table(contract.TableTransactions) + " GROUP BY 1 HAVING COUNT(*) > 1)"); n != 0 {
		t.Errorf("%d transaction_ids loaded more than once", n)
	}
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)
}

// startWant is what Start should report for a partition.
type startWant struct {
	From      int64
	Pending   string
	AfterStop bool // it waited for a stopping run to end
}

// partitionState is one partition's status.
func partitionState(t *testing.T, e *Stack, p int) string {
	t.Helper()
	sts, err := e.Operator.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Partition == p {
			return st.State
		}
	}
	t.Fatalf("no status for partition %d", p)
	return ""
}

var loadJobID = regexp.MustCompile(`"jobId":"([^"]+)"`)

// ledgerLoadJob is the job ID of r when r creates a load job into
// batch_ledger, "" for any other request. It leaves r's body to be read
// again.
func ledgerLoadJob(r *http.Request) (string, error) {
	if r.Method != http.MethodPost || !strings.Contains(r.URL.Path, "/upload/") {
		return "", nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if m := loadJobID.FindSubmatch(body); m != nil && bytes.Contains(body, []byte(`"tableId":"batch_ledger"`)) {
		return string(m[1]), nil
	}
	return "", nil
}

// waitStates waits until every partition's status is state.
func waitStates(t *testing.T, e *Stack, state string) {
	t.Helper()
	WaitFor(t, 2*time.Minute, 500*time.Millisecond, "every partition "+state, func() bool {
		sts, err := e.Operator.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		all := len(sts) > 0
		for _, st := range sts {
			all = all && st.State == state
		}
		return all
	})
}
