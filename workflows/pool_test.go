package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/paystream/paystream/activities"
	"github.com/paystream/paystream/contract"
)

func partitionIDs(n int, queue string) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("ingest/payments/%d", i)] = queue
	}
	return m
}

func loads(assigned map[string]string) map[string]int {
	n := map[string]int{}
	for _, q := range assigned {
		n[q]++
	}
	return n
}

func TestAssignSpreadsAndKeeps(t *testing.T) {
	cases := []struct {
		name       string
		members    []string
		partitions map[string]string
		want       map[string]int // load per member
		moved      int            // partitions whose queue changed, at most
	}{
		{"fresh", []string{"a", "b", "c"}, partitionIDs(6, ""), map[string]int{"a": 2, "b": 2, "c": 2}, 6},
		{"two join one that holds all", []string{"a", "b", "c"}, partitionIDs(6, "a"), map[string]int{"a": 2, "b": 2, "c": 2}, 4},
		{"uneven", []string{"a", "b", "c"}, partitionIDs(7, ""), map[string]int{"a": 3, "b": 2, "c": 2}, 7},
		{"one left", []string{"a", "b"}, map[string]string{"p0": "a", "p1": "a", "p2": "b", "p3": "b", "p4": "c", "p5": "c"}, map[string]int{"a": 3, "b": 3}, 2},
		{"every worker gone", nil, partitionIDs(3, "a"), map[string]int{"": 3}, 3},
		{"more workers than partitions", []string{"a", "b", "c"}, partitionIDs(2, "a"), map[string]int{"a": 1, "b": 1}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := assign(c.members, c.partitions)
			if len(got) != len(c.partitions) {
				t.Fatalf("assigned %d of %d partitions", len(got), len(c.partitions))
			}
			l := loads(got)
			for m, n := range c.want {
				if l[m] != n {
					t.Errorf("member %s holds %d partitions, want %d (all: %v)", m, l[m], n, l)
				}
			}
			moved := 0
			for id, q := range got {
				if c.partitions[id] != q {
					moved++
				}
			}
			if moved > c.moved {
				t.Errorf("%d partitions moved, at most %d should", moved, c.moved)
			}
			// Deterministic: workflow code replays it.
			again := assign(c.members, c.partitions)
			for id, q := range got {
				if again[id] != q {
					t.Fatalf("a second call put %s on %s, the first on %s", id, again[id], q)
				}
			}
		})
	}
}

// TestStaleAssignmentsDoNotMoveAPartitionBack: the pool's answers may
// arrive out of order. An answer older than one already applied must not
// send the partition back to a worker that has left, nor clear that
// worker's loss; a pool started afresh counts from the start again.
func TestStaleAssignmentsDoNotMoveAPartitionBack(t *testing.T) {
	pl := &placement{at: &contract.Placement{}, lost: map[string]bool{}}
	assigned := contract.Assignment{Queue: "tq/a", Seq: 1, Pool: "run1"}            // a joined
	lostA := contract.Assignment{Queue: "tq/a", Lost: "tq/a", Seq: 2, Pool: "run1"} // a died
	toB := contract.Assignment{Queue: "tq/b", Lost: "tq/a", Seq: 3, Pool: "run1"}   // its partitions go to b
	for _, as := range []contract.Assignment{lostA, toB, assigned} {                // the first arrives last
		pl.apply(as)
	}
	if pl.queue() != "tq/b" || !pl.moved("tq/a") {
		t.Fatalf("after a stale answer: queue %q, a moved %v; want tq/b and a lost", pl.queue(), pl.moved("tq/a"))
	}
	pl.apply(contract.Assignment{Queue: "tq/c", Seq: 1, Pool: "run2"}) // a new pool
	if pl.queue() != "tq/c" {
		t.Errorf("a new pool's first answer: queue %q, want tq/c", pl.queue())
	}
}

// deadWorker mocks a partition's activities when the worker of queue dies
// while the partition's first batch loads there, and the pool does not
// know the partition (its run was terminated and a new one started): no
// assignment ever comes. Everything scheduled on queue after the death
// times out before it starts, as Temporal times out a task nothing polls,
// until a worker polls that queue again an hour later (only so that
// today's code ends where a test can look).
type deadWorker struct {
	env    *testsuite.TestWorkflowEnvironment
	queue  string
	mu     sync.Mutex
	died   bool
	diedAt time.Time
	ended  bool // the batch on queue was terminated
	j      journal
	wants  []contract.PoolWant
}

const revivedAfter = time.Hour

func (d *deadWorker) dead(ctx context.Context) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.died && activity.GetInfo(ctx).TaskQueue == d.queue && d.env.Now().Sub(d.diedAt) < revivedAfter
}

func (d *deadWorker) mock(env *testsuite.TestWorkflowEnvironment, until int64, planTakes time.Duration) {
	d.env = env
	notStarted := temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
	env.OnSignalExternalWorkflow(mock.Anything, "pool/paystream", "", contract.WantSignal, mock.Anything).Return(func(_, _, _, _ string, arg any) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.wants = append(d.wants, arg.(contract.PoolWant))
		return nil // the pool takes the signal, and never answers
	})
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(ctx context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		if d.dead(ctx) {
			d.j.add(fmt.Sprintf("plan %d on the dead queue", in.Next))
			return contract.PlanResult{}, notStarted
		}
		d.j.add(fmt.Sprintf("plan %d on %s", in.Next, activity.GetInfo(ctx).TaskQueue))
		if in.Next >= until {
			return contract.PlanResult{}, temporal.NewNonRetryableApplicationError("end of test log", contract.ErrTypeOffsetOutOfRange, nil)
		}
		return contract.PlanResult{End: in.Next + 100, HighWatermark: until}, nil
	}).After(planTakes)
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	env.OnActivity("HoldMembership", mock.Anything, mock.Anything).Return(func(ctx context.Context, _ time.Duration) error {
		if d.dead(ctx) {
			return notStarted
		}
		return nil
	})
	env.OnActivity("TerminateBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, id string) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.ended = true
		d.j.add("terminate " + id)
		return nil
	})
}

// TestABatchOnADeadQueueMovesWithoutThePool: the worker holding a
// partition dies while its batch loads, and the pool, started afresh,
// does not know the partition. The batch must not wait for ever: it is
// ended and runs again under its ID and range on a queue that is polled,
// loads once, and the partition goes on and announces itself again.
func TestABatchOnADeadQueueMovesWithoutThePool(t *testing.T) {
	const queue = "paystream/dead-worker"
	env := newEnv(t)
	env.SetTestTimeout(15 * time.Second)
	d := &deadWorker{queue: queue}
	d.mock(env, 100, 0)
	var loadedAt time.Time
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
		q := activity.GetInfo(ctx).TaskQueue
		d.mu.Lock()
		defer d.mu.Unlock()
		if q == queue && (!d.died || env.Now().Sub(d.diedAt) < revivedAfter) {
			if !d.died {
				d.died, d.diedAt = true, env.Now()
				d.j.add("load " + in.Spec.ID() + " on the worker that dies")
			}
			if d.ended {
				return contract.Totals{}, temporal.NewNonRetryableApplicationError("terminated", "Terminated", nil)
			}
			return contract.Totals{}, errors.New("the worker is gone") // retried there until it polls again
		}
		loadedAt = env.Now()
		d.j.add(fmt.Sprintf("load %s [%d, %d) on %s", in.Spec.ID(), in.Spec.Start, in.Spec.End, q))
		return contract.Totals{Loaded: 97}, nil
	})
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, PollFor: time.Second,
		Pool: "pool/paystream", Placement: contract.Placement{Queue: queue, QueueSeq: 7, QueuePool: "old-pool-run"}})
	err := env.GetWorkflowError()
	t.Logf("calls: %q; wants: %+v", d.j.calls, d.wants)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeOffsetOutOfRange {
		t.Fatalf("workflow ended with %v, want the test log's end after the batch moved", err)
	}
	loads := 0
	for _, c := range d.j.calls {
		if strings.HasPrefix(c, "load batch/payments/0/0-100 [0, 100) on ") && !strings.HasSuffix(c, queue) {
			loads++
		}
	}
	if loads != 1 || !slices.Contains(d.j.calls, "terminate batch/payments/0/0-100") {
		t.Errorf("batch 0-100 loaded %d times off the dead queue, terminated there: %v; want once, after its run there was ended", loads, slices.Contains(d.j.calls, "terminate batch/payments/0/0-100"))
	}
	if took := loadedAt.Sub(d.diedAt); took <= 0 || took > 2*time.Minute {
		t.Errorf("the batch loaded %v after its worker died, want within 2 minutes", took)
	}
	rejoined := false
	for _, w := range d.wants[1:] {
		rejoined = rejoined || w.Queue != queue
	}
	if len(d.wants) < 2 || !rejoined {
		t.Errorf("the partition told the pool %+v; want it to announce itself again off the dead queue", d.wants)
	}
}

// TestBatchesShareOneWatchTimer: a partition on a worker's queue watches
// its batches' worker with one timer for all the batches within
// watchEvery, not one a batch (each timer is a billed Temporal action),
// and pings the worker only for a batch that runs that long.
func TestBatchesShareOneWatchTimer(t *testing.T) {
	const queue, batches = "paystream/live-worker", 20
	env := newEnv(t)
	env.SetTestTimeout(15 * time.Second)
	d := &deadWorker{queue: queue}
	d.mock(env, batches*100, 0)
	loads := 0
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(context.Context, contract.LoadInput) (contract.Totals, error) {
		loads++
		return contract.Totals{Loaded: 97}, nil
	}).After(time.Second) // a second of workflow time each: 20 within two watches
	timers := 0
	env.SetOnTimerScheduledListener(func(string, time.Duration) { timers++ })
	pings := 0
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == contract.ActivityHoldMembership {
			pings++
		}
	})
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, PollFor: time.Second,
		Pool: "pool/paystream", Placement: contract.Placement{Queue: queue, QueueSeq: 7, QueuePool: "pool-run"}})
	if loads != batches {
		t.Fatalf("%d batches loaded, want %d (%v)", loads, batches, env.GetWorkflowError())
	}
	if timers > 2 || pings != 0 {
		t.Errorf("%d batches of a second set %d timers and pinged their worker %d times; want at most 2 timers and no ping", batches, timers, pings)
	}
}

// TestAnIdlePartitionLeavesADeadQueueWithoutThePool: a caught-up
// partition whose worker died, unknown to the pool, plans on a polled
// queue after its first plan on the dead one times out, instead of
// planning on the dead queue until continue-as-new.
func TestAnIdlePartitionLeavesADeadQueueWithoutThePool(t *testing.T) {
	const queue = "paystream/dead-worker"
	env := newEnv(t)
	env.SetTestTimeout(15 * time.Second)
	d := &deadWorker{queue: queue, died: true, diedAt: env.Now()}
	d.mock(env, 0, time.Minute) // the dead queue's plans time out after a minute; the others poll as long
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, PollFor: time.Second,
		Pool: "pool/paystream", Placement: contract.Placement{Queue: queue, QueueSeq: 7, QueuePool: "old-pool-run"}})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeOffsetOutOfRange {
		t.Fatalf("workflow ended with %v, want the test log's end planned off the dead queue (calls %d: %q)", err, len(d.j.calls), d.j.calls[:min(len(d.j.calls), 5)])
	}
	onDead := 0
	for _, c := range d.j.calls {
		if strings.HasSuffix(c, "on the dead queue") {
			onDead++
		}
	}
	if onDead != 1 {
		t.Errorf("%d plans on the dead queue, want 1: %q", onDead, d.j.calls)
	}
}

// TestPartitionsAnnounceThemselvesToThePool: an idle partition tells its
// pool it is there every minute, naming the pool run it knows, so that a
// pool run started afresh learns it; one the pool did not take (no pool
// runs) is sent again within seconds.
func TestPartitionsAnnounceThemselvesToThePool(t *testing.T) {
	for _, c := range []struct {
		name    string
		refused bool
		atLeast int
	}{{"pool running", false, 3}, {"no pool", true, 12}} {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			var mu sync.Mutex
			var wants []contract.PoolWant
			env.OnSignalExternalWorkflow(mock.Anything, "pool/paystream", "", contract.WantSignal, mock.Anything).Return(func(_, _, _, _ string, arg any) error {
				mu.Lock()
				defer mu.Unlock()
				wants = append(wants, arg.(contract.PoolWant))
				if c.refused {
					return errors.New("workflow not found for ID: pool/paystream")
				}
				return nil
			})
			env.OnSignalExternalWorkflow(mock.Anything, "pool/paystream", "", contract.LeaveSignal, mock.Anything).Return(nil)
			env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(contract.PlanResult{}, nil).After(5 * time.Second) // caught up
			env.RegisterDelayedCallback(env.CancelWorkflow, 150*time.Second)
			env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, PollFor: 5 * time.Second,
				Pool: "pool/paystream", Placement: contract.Placement{Queue: "paystream/w1", QueueSeq: 3, QueuePool: "pool-run-1"}})
			if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
				t.Fatalf("workflow ended with %v, want stopped", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(wants) < c.atLeast || wants[0].Pool != "" {
				t.Fatalf("in 150 s the partition told the pool %d times (%+v), want at least %d, the first asking for an answer", len(wants), wants, c.atLeast)
			}
			for _, w := range wants[1:] {
				if w.Queue != "paystream/w1" || w.Pool != "pool-run-1" {
					t.Errorf("announced %+v, want its queue and the pool run that placed it", w)
				}
			}
		})
	}
}

// TestANewPoolRunLearnsEveryPartition: a pool run started afresh knows
// no partition; partitions announcing themselves (naming an older run)
// are registered where they run and spread over the members, and an
// announcement of what this run already told gets no answer.
func TestANewPoolRunLearnsEveryPartition(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{TaskQueue: "tq"})
	env.RegisterWorkflow(WorkerPool)
	env.RegisterActivity(&activities.Activities{})
	env.OnActivity("HoldMembership", mock.Anything, mock.Anything).Return(nil).After(10 * time.Minute)
	var mu sync.Mutex
	var told []string
	var run string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.AssignSignal, mock.Anything).Return(func(_, id, _, _ string, arg any) error {
		mu.Lock()
		defer mu.Unlock()
		as := arg.(contract.Assignment)
		told, run = append(told, id+"→"+as.Queue), as.Pool
		return nil
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.JoinSignal, "tq/a")
		env.SignalWorkflow(contract.JoinSignal, "tq/b")
	}, time.Second)
	for i, at := range []time.Duration{2 * time.Second, 3 * time.Second} {
		env.RegisterDelayedCallback(func() {
			env.SignalWorkflow(contract.WantSignal, contract.PoolWant{WorkflowID: fmt.Sprintf("ingest/payments/%d", i), Queue: "tq/a", Pool: "old-run"})
		}, at)
	}
	var before int
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		before = len(told)
		as := contract.PoolWant{WorkflowID: "ingest/payments/0", Queue: "tq/a", Pool: run}
		mu.Unlock()
		env.SignalWorkflow(contract.WantSignal, as)
	}, 4*time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Second)
	st := queryPoolAt(t, env, 4500*time.Millisecond)
	env.ExecuteWorkflow(WorkerPool, contract.PoolState{})
	want := map[string]string{"ingest/payments/0": "tq/a", "ingest/payments/1": "tq/b"}
	if fmt.Sprint(st.Partitions) != fmt.Sprint(want) {
		t.Errorf("the new pool run holds %v, want %v", st.Partitions, want)
	}
	if want := "[ingest/payments/0→tq/a ingest/payments/1→tq/b]"; fmt.Sprint(told) != want || before != 2 {
		t.Errorf("the pool told %v (%d before the repeat), want %s and nothing for the repeat", told, before, want)
	}
}

// TestJoinTakesOnlyWorkerQueuesUpToTheCap: the pool of task queue "tq"
// takes a join only from a worker's own queue ("tq/<identity>") and only
// up to contract.MaxPoolMembers; the shared queue, another task queue's
// worker and an empty identity are refused, and so is the member past
// the cap, while a member joining again is still taken.
func TestJoinTakesOnlyWorkerQueuesUpToTheCap(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{TaskQueue: "tq"})
	env.RegisterWorkflow(WorkerPool)
	env.RegisterActivity(&activities.Activities{})
	var mu sync.Mutex
	leases := map[string]int{}
	env.OnActivity("HoldMembership", mock.Anything, mock.Anything).Return(nil).After(10 * time.Minute)
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		leases[info.TaskQueue]++
		mu.Unlock()
	})
	refused := []string{"tq", "tq/", "other/w1", "tqx/w1", ""}
	env.RegisterDelayedCallback(func() {
		for _, q := range refused {
			env.SignalWorkflow(contract.JoinSignal, q)
		}
		for i := range contract.MaxPoolMembers + 1 {
			env.SignalWorkflow(contract.JoinSignal, fmt.Sprintf("tq/w%04d", i))
		}
		env.SignalWorkflow(contract.JoinSignal, "tq/w0000") // a member again
	}, time.Second)
	st := queryPoolAt(t, env, 2*time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Second)
	env.ExecuteWorkflow(WorkerPool, contract.PoolState{})
	if len(st.Members) != contract.MaxPoolMembers {
		t.Fatalf("the pool holds %d members, want %d", len(st.Members), contract.MaxPoolMembers)
	}
	last := fmt.Sprintf("tq/w%04d", contract.MaxPoolMembers)
	for _, q := range append(refused, last) {
		if slices.Contains(st.Members, q) {
			t.Errorf("the pool took %q", q)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leases) != contract.MaxPoolMembers || leases["tq/w0000"] != 1 || leases[last] != 0 || leases["tq"] != 0 {
		t.Errorf("leases on %d queues (tq/w0000: %d, %s: %d, tq: %d); want one on each of the %d members only",
			len(leases), leases["tq/w0000"], last, leases[last], leases["tq"], contract.MaxPoolMembers)
	}
}

// TestAWorkerGoneMovesItsPartitionsAtOnce: a worker restarted in place
// knows its predecessor died and says so; the pool moves the dead
// worker's partitions to the members left at once, without waiting for
// its lease to time out, and tells each partition which queue was lost.
// A gone signal for a queue that is not a member changes nothing.
func TestAWorkerGoneMovesItsPartitionsAtOnce(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{TaskQueue: "tq"})
	env.RegisterWorkflow(WorkerPool)
	env.RegisterActivity(&activities.Activities{})
	// Leases never end by themselves here: the dead worker's would time
	// out only after the test.
	env.OnActivity("HoldMembership", mock.Anything, mock.Anything).Return(nil).After(time.Hour)
	var mu sync.Mutex
	var told []contract.Assignment
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.AssignSignal, mock.Anything).Return(func(_, id, _, _ string, arg any) error {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, arg.(contract.Assignment))
		return nil
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.JoinSignal, "tq/a")
		for i := range 4 {
			env.SignalWorkflow(contract.WantSignal, contract.PoolWant{WorkflowID: fmt.Sprintf("ingest/payments/%d", i)})
		}
	}, time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.JoinSignal, "tq/b") }, 2*time.Second)
	// The partitions' workflows are released from sticky queues before
	// they hear of the loss.
	var released []string
	releasedAfter := -1
	env.OnActivity(contract.ActivityReleaseWorkflows, mock.Anything, mock.Anything).Return(func(_ context.Context, ids []string) error {
		mu.Lock()
		defer mu.Unlock()
		released, releasedAfter = ids, len(told)
		return nil
	})
	var before int
	env.RegisterDelayedCallback(func() {
		mu.Lock()
		before = len(told)
		mu.Unlock()
		env.SignalWorkflow(contract.GoneSignal, "tq/nobody")
		env.SignalWorkflow(contract.GoneSignal, "tq/a")
	}, 3*time.Second)
	st := queryPoolAt(t, env, 3500*time.Millisecond)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Second)
	env.ExecuteWorkflow(WorkerPool, contract.PoolState{})
	if fmt.Sprint(st.Members) != "[tq/b]" || loads(st.Partitions)["tq/b"] != 4 {
		t.Fatalf("after tq/a was gone the pool holds members %v and partitions %v; want all 4 on tq/b", st.Members, st.Partitions)
	}
	mu.Lock()
	defer mu.Unlock()
	moved := map[string]bool{}
	for _, as := range told[before:] {
		if as.Lost != "tq/a" {
			t.Errorf("after tq/a was gone the pool told %+v; want tq/a lost", as)
		}
		if as.Queue == "tq/b" {
			moved[as.Queue] = true
		}
	}
	if len(told)-before < 4 || !moved["tq/b"] {
		t.Errorf("after tq/a was gone the pool told %v; want its partitions moved to tq/b", told[before:])
	}
	if len(released) != 4 || releasedAfter != before {
		t.Errorf("released %v after %d assignments; want the 4 partitions' workflows released before the %d-th", released, releasedAfter, before+1)
	}
}

// queryPoolAt queries the pool's state at the given time of the test's
// clock; the returned state is filled in once the workflow has run.
func queryPoolAt(t *testing.T, env *testsuite.TestWorkflowEnvironment, at time.Duration) *contract.PoolState {
	t.Helper()
	st := new(contract.PoolState)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(contract.ProgressQuery)
		if err == nil {
			err = v.Get(st)
		}
		if err != nil {
			t.Error(err)
		}
	}, at)
	return st
}

// TestALeaseMissedInAnOutageIsHeldAgain: two members' leases time out on
// heartbeats at once. Worker a's last beat is 20 s old when the timeout
// reaches the pool — the server was down and could not record beats —
// so its lease is held again, and it keeps its partitions since it takes
// the new one; worker b's is only the heartbeat timeout old — it died —
// so it leaves and its partitions move to a.
func TestALeaseMissedInAnOutageIsHeldAgain(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{TaskQueue: "tq"})
	env.RegisterWorkflow(WorkerPool)
	env.RegisterActivity(&activities.Activities{})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.AssignSignal, mock.Anything).Return(nil)
	env.OnActivity(contract.ActivityReleaseWorkflows, mock.Anything, mock.Anything).Return(nil)
	var mu sync.Mutex
	leases := map[string]int{}
	env.OnActivity("HoldMembership", mock.Anything, mock.Anything).Return(func(ctx context.Context, _ time.Duration) error {
		q := activity.GetInfo(ctx).TaskQueue
		mu.Lock()
		leases[q]++
		n := leases[q]
		mu.Unlock()
		if n > 1 {
			return nil // the lease held again runs its time
		}
		missed := map[string]time.Duration{"tq/a": 20 * time.Second, "tq/b": leaseHeartbeat}[q]
		return temporal.NewHeartbeatTimeoutError(contract.LeaseBeat{At: env.Now().Add(-missed)})
	}).After(5 * time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.JoinSignal, "tq/a")
		env.SignalWorkflow(contract.JoinSignal, "tq/b")
		for i := range 4 {
			env.SignalWorkflow(contract.WantSignal, contract.PoolWant{WorkflowID: fmt.Sprintf("ingest/payments/%d", i)})
		}
	}, time.Second)
	st := queryPoolAt(t, env, 12*time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 13*time.Second)
	env.ExecuteWorkflow(WorkerPool, contract.PoolState{})
	if fmt.Sprint(st.Members) != "[tq/a]" || loads(st.Partitions)["tq/a"] != 4 {
		t.Errorf("after both leases timed out the pool holds members %v and partitions %v; want tq/a kept with all 4, tq/b gone", st.Members, st.Partitions)
	}
	mu.Lock()
	defer mu.Unlock()
	if leases["tq/a"] != 2 || leases["tq/b"] != 1 {
		t.Errorf("leases started: %v; want tq/a's held again once and tq/b's not", leases)
	}
}
