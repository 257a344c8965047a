package workflows

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/paystream/paystream/contract"
)

// TestOperatorControls drives pause, resume, set-batch and drain through a
// partition's run: a pause answers at a batch boundary with everything
// before it committed, nothing runs while paused, a new batch size applies
// from the next plan, and a drain completes the run with the last batch
// committed.
func TestOperatorControls(t *testing.T) {
	env := newEnv(t)
	const logEnd = 600
	var j journal
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		if in.Next >= logEnd {
			time.Sleep(5 * time.Millisecond) // caught up: the real one polls
		}
		return contract.PlanResult{End: min(in.Next+int64(in.MaxRecords), logEnd), HighWatermark: logEnd}, nil
	})
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	committed := int64(0)
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		time.Sleep(20 * time.Millisecond)
		j.add(fmt.Sprintf("load %d-%d", in.Spec.Start, in.Spec.End))
		j.mu.Lock()
		committed = in.Spec.End // the real Load commits its end, last
		j.mu.Unlock()
		return contract.Totals{Loaded: int(in.Spec.End - in.Spec.Start)}, nil
	})

	// Updates answer asynchronously in the test environment: each answer
	// is kept under its name, with the number of loads at that moment.
	type answer struct {
		res       contract.ControlResult
		err       error
		loads     int
		committed int64
	}
	answers := map[string]*answer{}
	loads := func() int {
		j.mu.Lock()
		defer j.mu.Unlock()
		return len(j.calls)
	}
	update := func(key, name string, arg ...any) {
		ans := &answer{err: fmt.Errorf("update %s never answered", key)}
		answers[key] = ans
		env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { ans.err = err },
			OnComplete: func(v any, err error) {
				ans.err, ans.loads = err, loads()
				j.mu.Lock()
				ans.committed = committed
				j.mu.Unlock()
				if err == nil {
					ans.res = v.(contract.ControlResult)
				}
			},
		}, arg...)
	}
	env.RegisterDelayedCallback(func() {
		update("set-batch 0", contract.SetBatchUpdate, contract.SetBatchInput{MaxRecords: 0})
		update("set-batch 50", contract.SetBatchUpdate, contract.SetBatchInput{MaxRecords: 50})
	}, 0)
	env.RegisterDelayedCallback(func() { update("pause", contract.PauseUpdate) }, 60*time.Millisecond)
	var whilePaused contract.Progress
	var loadsWhilePaused int
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(contract.ProgressQuery)
		if err == nil {
			err = v.Get(&whilePaused)
		}
		if err != nil {
			t.Errorf("progress query: %v", err)
		}
		loadsWhilePaused = loads()
		update("resume", contract.ResumeUpdate)
	}, time.Hour)
	env.RegisterDelayedCallback(func() { update("drain", contract.DrainUpdate) }, time.Hour+time.Second)

	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("drained run ended with %v, want success", err)
	}
	if a := answers["set-batch 0"]; a.err == nil {
		t.Errorf("set-batch 0 was accepted: %+v", a.res)
	}
	if a := answers["set-batch 50"]; a.err != nil || a.res.MaxRecords != 50 {
		t.Errorf("set-batch 50: %+v", a)
	}
	paused := answers["pause"]
	if paused.err != nil || paused.res.State != contract.StatePaused || paused.res.Next <= 0 || paused.res.Next >= logEnd || paused.res.Next%50 != 0 {
		t.Errorf("pause answered %+v, want a batch boundary inside the log", paused)
	}
	if paused.loads != int(paused.res.Next/50) || paused.committed != paused.res.Next || loadsWhilePaused != paused.loads {
		t.Errorf("paused at %d after %d loads, committed %d; %d loads an hour later", paused.res.Next, paused.loads, paused.committed, loadsWhilePaused)
	}
	if whilePaused.State != contract.StatePaused || whilePaused.Next != paused.res.Next || whilePaused.MaxRecords != 50 {
		t.Errorf("progress while paused: %+v", whilePaused)
	}
	if a := answers["resume"]; a.err != nil || a.res.State != contract.StateIngesting {
		t.Errorf("resume: %+v", a)
	}
	if a := answers["drain"]; a.err != nil || a.res.State != contract.StateDrained || a.res.Next != logEnd {
		t.Errorf("drain: %+v", a)
	}
	if committed != logEnd {
		t.Errorf("committed %d at the drain, want %d", committed, logEnd)
	}
	var want []string
	for s := int64(0); s < logEnd; s += 50 {
		want = append(want, fmt.Sprintf("load %d-%d", s, s+50))
	}
	if fmt.Sprint(j.calls) != fmt.Sprint(want) {
		t.Errorf("loads %q, want %q", j.calls, want)
	}
}

// TestRateCountsTheLastMinute: events/s spans the samples of the last
// minute, so a caught-up partition's rate falls to zero.
func TestRateCountsTheLastMinute(t *testing.T) {
	var r rate
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := r.add(t0, 0); got != 0 {
		t.Errorf("one sample: %v", got)
	}
	if got := r.add(t0.Add(10*time.Second), 5000); got != 500 {
		t.Errorf("5,000 records in 10 s: %v/s", got)
	}
	r.add(t0.Add(70*time.Second), 5000) // idle since
	if got := r.add(t0.Add(130*time.Second), 5000); got != 0 {
		t.Errorf("a minute without records: %v/s", got)
	}
}

// TestFailedBatchWaitGrows: a batch that keeps failing waits a minute,
// then longer, up to ten: BigQuery's quotas refill over hours, and each
// failed load job counts against them.
func TestFailedBatchWaitGrows(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 7; n++ {
		got = append(got, failedBatchWait(n))
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", got, want)
	}
}

// TestPauseWhileAFailedBatchWaitsThenContinueAsNew: a pause that arrives
// while a failed batch waits to run again, when the run is due to continue
// as new, is answered (the partition is retrying) and carried into the
// next run with the batch; it once deadlocked the partition, whose pause
// waited for a boundary the failed batch kept from coming.
func TestPauseWhileAFailedBatchWaitsThenContinueAsNew(t *testing.T) {
	env := newEnv(t)
	env.SetTestTimeout(30 * time.Second)
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		return contract.PlanResult{End: min(in.Next+100, 300), HighWatermark: 300}, nil
	})
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		if in.Spec.Start == 100 {
			return contract.Totals{}, temporal.NewNonRetryableApplicationError("quota exceeded", contract.ErrTypeLoadFailed, nil)
		}
		return contract.Totals{Loaded: 100}, nil
	})
	var answer *contract.ControlResult
	var answerErr error
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(contract.PauseUpdate, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { answerErr = err },
			OnComplete: func(v any, err error) {
				answerErr = err
				if err == nil {
					r := v.(contract.ControlResult)
					answer = &r
				}
			},
		})
	}, 30*time.Second) // the failed batch waits a minute
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second, MaxBatchesPerRun: 2})
	next := continuedWith(t, env.GetWorkflowError())
	if !next.Paused || next.Pending == nil || next.Pending.Start != 100 || next.Next != 100 {
		t.Errorf("next run: paused %v, pending %+v, next %d; want paused, batch 100-200 pending", next.Paused, next.Pending, next.Next)
	}
	if answerErr != nil || answer == nil || answer.State != contract.StateBackoff || answer.Next != 100 {
		t.Errorf("pause answered %+v, %v; want the partition retrying its batch at 100", answer, answerErr)
	}
}

// TestADrainUnderWayAnswersTheProgressQuery: a drain accepted while a
// failed batch waits ends the run once the batch loads, even when the
// operator's client gave up waiting; the progress query says so, and
// start reads it to wait for the run rather than answer that it runs.
func TestADrainUnderWayAnswersTheProgressQuery(t *testing.T) {
	env := newEnv(t)
	env.SetTestTimeout(30 * time.Second)
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		return contract.PlanResult{End: min(in.Next+100, 300), HighWatermark: 300}, nil
	})
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	loads := 0
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		if in.Spec.Start == 100 {
			if loads++; loads == 1 {
				return contract.Totals{}, temporal.NewNonRetryableApplicationError("quota exceeded", contract.ErrTypeLoadFailed, nil)
			}
		}
		return contract.Totals{Loaded: 100}, nil
	})
	var before, during contract.Progress
	query := func(into *contract.Progress) {
		v, err := env.QueryWorkflow(contract.ProgressQuery)
		if err == nil {
			err = v.Get(into)
		}
		if err != nil {
			t.Error(err)
		}
	}
	env.RegisterDelayedCallback(func() { query(&before) }, 20*time.Second)
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(contract.DrainUpdate, "", &testsuite.TestUpdateCallback{OnAccept: func() {}, OnReject: func(error) {}, OnComplete: func(any, error) {}})
	}, 30*time.Second) // the failed batch waits a minute
	env.RegisterDelayedCallback(func() { query(&during) }, 40*time.Second)
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("the drained run ended with %v", err)
	}
	if before.Draining || !during.Draining || during.State != contract.StateBackoff {
		t.Errorf("progress before the drain: draining %v; after it, while the batch waits: draining %v, %q; want false, then true while retrying",
			before.Draining, during.Draining, during.State)
	}
}

// TestEverySettableFieldSurvivesContinueAsNew: each part of a partition's
// state that a signal or update changes during a run — the pool's
// assignment, the batch size, a pause, a drain, the batch spacing, a failed
// batch and its failures — reaches the next run whole, beside the position
// and totals and every setting the run started with. The run changes the
// state in place and hands it on as it is; a field kept in a copy and not
// copied back would fail here.
func TestEverySettableFieldSurvivesContinueAsNew(t *testing.T) {
	env := newEnv(t)
	env.SetTestTimeout(30 * time.Second)
	env.OnSignalExternalWorkflow(mock.Anything, "pool/paystream", "", contract.WantSignal, mock.Anything).Return(nil)
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		return contract.PlanResult{End: min(in.Next+100, 300), HighWatermark: 300}, nil
	})
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	var failed contract.Spec
	var failedAt time.Time
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		if in.Spec.Start == 100 {
			failed, failedAt = in.Spec, env.Now()
			return contract.Totals{}, temporal.NewNonRetryableApplicationError("quota exceeded", contract.ErrTypeLoadFailed, nil)
		}
		return contract.Totals{Loaded: 100}, nil
	})
	update := func(name string, args ...any) {
		env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("%s refused: %v", name, err) }, OnComplete: func(any, error) {},
		}, args...)
	}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(contract.AssignSignal, contract.Assignment{Queue: "tq/a", Seq: 3, Pool: "run-1"})
	}, time.Second)
	// While batch 100 waits a minute to run again after failing.
	env.RegisterDelayedCallback(func() {
		update(contract.SetBatchUpdate, contract.SetBatchInput{MaxRecords: 250, MaxBytes: 1 << 20})
		env.SignalWorkflow(contract.BudgetSignal, contract.Budget{Partitions: 3, MinBatchInterval: 45 * time.Second})
		update(contract.PauseUpdate)
		update(contract.DrainUpdate)
	}, 50*time.Second)
	start := contract.IngestInput{
		Topic: "payments", Partition: 2, MaxRecords: 100, MaxBytes: 8 << 20, AllowedLateness: 10 * time.Minute, MaxWindowIDs: 5000,
		PollFor: time.Second, Linger: time.Second, MaxBatchesPerRun: 2, SearchableCounts: true, WriteMode: contract.WriteModeLoad, Pool: "pool/paystream",
	}
	start.MinBatchInterval = 30 * time.Second
	env.ExecuteWorkflow(PartitionIngest, start)
	next := continuedWith(t, env.GetWorkflowError())

	want := start
	want.MaxRecords, want.MaxBytes = 250, 1<<20
	want.Next, want.Window = 100, failed.Window
	want.BatchesDone, want.RecordsDone = 1, 100
	want.Paused, want.Draining = true, true
	want.MinBatchInterval = 45 * time.Second
	want.Pending, want.Failures = &failed, 1
	want.Queue, want.QueueSeq, want.QueuePool = "tq/a", 3, "run-1"
	// The spacing moved the next batch's time by the 15 s it grew.
	if wantAt := failedAt.Add(45 * time.Second); next.NextBatchAt.Sub(wantAt).Abs() > time.Second {
		t.Errorf("next batch at %s, want %s: 45 s after the failed batch started", next.NextBatchAt, wantAt)
	}
	want.NextBatchAt = next.NextBatchAt
	if failed.Start != 100 || !reflect.DeepEqual(want.Window, decisions.Next) {
		t.Fatalf("the failed batch %+v: want 100-200 from the window %+v batch 0 left", failed.Range, decisions.Next)
	}
	if !reflect.DeepEqual(next, want) {
		t.Errorf("the next run's state:\n%+v\nwant\n%+v", next, want)
	}
}
