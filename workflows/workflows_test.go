package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/activities"
	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/searchattr"
)

var (
	t0        = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	decisions = contract.Decisions{
		DuplicateOffsets: []int64{7}, DuplicateOf: []int64{3}, DuplicateIdentical: []bool{true},
		LateOffsets: []int64{9}, Records: 100, Loaded: 97, Invalid: 1,
		Next: contract.Window{Start: 42, Newest: t0},
	}
	enrichment = contract.Enrichment{Scores: make([]uint8, 97), Reasons: make([]uint16, 97)}
)

// continuedWith is the input a run handed its next one: err must be the
// run's continue-as-new.
func continuedWith(t *testing.T, err error) contract.IngestInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("run ended with %v, want continue-as-new", err)
	}
	var next contract.IngestInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	return next
}

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(PartitionIngest)
	env.RegisterWorkflow(MicroBatch)
	env.RegisterActivity(&activities.Activities{})
	return env
}

// journal records activity calls in order, from the mocks.
type journal struct {
	mu    sync.Mutex
	calls []string
}

// split prints the calls other than plans in order, then the plans.
func (j *journal) split() string {
	var rest, plans []string
	for _, c := range j.calls {
		if strings.HasPrefix(c, "plan ") {
			plans = append(plans, c)
		} else {
			rest = append(rest, c)
		}
	}
	return "[" + strings.Join(rest, " ") + " | " + strings.Join(plans, " ") + "]"
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, s)
}

// TestMicroBatchLoadsTheRecordedDecisions: Dedup and Enrich run once; a
// Load that fails and is retried gets exactly their recorded results and
// decides nothing itself (invariant 3).
func TestMicroBatchLoadsTheRecordedDecisions(t *testing.T) {
	env := newEnv(t)
	spec := contract.Spec{Range: contract.Range{Topic: "payments", Partition: 2, Start: 0, End: 100}, AllowedLateness: 10 * time.Minute}
	env.OnActivity("Dedup", mock.Anything, spec).Return(decisions, nil).Once()
	env.OnActivity("Enrich", mock.Anything, spec, decisions).Return(enrichment, nil).Once()
	loads := 0
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		loads++
		if in.Spec.ID() != spec.ID() || len(in.Decisions.DuplicateOffsets) != 1 || in.Decisions.DuplicateOf[0] != 3 || in.Decisions.LateOffsets[0] != 9 ||
			len(in.Enrichment.Scores) != 97 || !reflect.DeepEqual(in.Decisions.Next, decisions.Next) {
			t.Errorf("Load got %+v, not the recorded decisions", in)
		}
		if loads == 1 {
			return contract.Totals{}, errors.New("BigQuery unavailable")
		}
		return contract.Totals{Loaded: 97, Duplicates: 1, Late: 1, Errors: 1}, nil
	})
	env.ExecuteWorkflow(MicroBatch, spec)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res contract.Result
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if loads != 2 || res.Totals.Loaded != 97 || !reflect.DeepEqual(res.Next, decisions.Next) || res.BatchID != "batch/payments/2/0-100" {
		t.Errorf("loads %d, result %+v", loads, res)
	}
	env.AssertExpectations(t)
}

// TestBatchCountsAreSearchableOnlyWhenAsked: a batch upserts its counts as
// search attributes, a billed action, only when its partition was started
// with them asked for; a batch started before the choice existed (its
// Spec without NoCountAttributes) upserts them as it always did.
func TestBatchCountsAreSearchableOnlyWhenAsked(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		env := newEnv(t)
		spec := contract.Spec{Range: contract.Range{Topic: "payments", Partition: 2, Start: 0, End: 100}, AllowedLateness: 10 * time.Minute, NoCountAttributes: quiet}
		env.OnActivity("Dedup", mock.Anything, spec).Return(decisions, nil)
		env.OnActivity("Enrich", mock.Anything, spec, decisions).Return(enrichment, nil)
		env.OnActivity("Load", mock.Anything, mock.Anything).Return(contract.Totals{Loaded: 97, Duplicates: 1, Late: 1, Errors: 1}, nil)
		upserts := 0
		env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
			upserts++
			sa, _ := args.Get(0).(temporal.SearchAttributes)
			if v, _ := sa.GetFloat64(searchattr.BatchRejected); v != 2 {
				t.Errorf("BatchRejected upserted as %v, want 2", v)
			}
		}).Return(nil).Maybe()
		env.ExecuteWorkflow(MicroBatch, spec)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 1, true: 0}[quiet]; upserts != want {
			t.Errorf("NoCountAttributes %v: %d upserts, want %d", quiet, upserts, want)
		}
	}
}

// TestABatchNamingFraudRulesRecordsNoScores: a batch that names a fraud
// rule set records only Dedup's decisions; Load scores it (and gets no
// scores to apply), so history holds no per-record score.
func TestABatchNamingFraudRulesRecordsNoScores(t *testing.T) {
	env := newEnv(t)
	spec := contract.Spec{Range: contract.Range{Topic: "payments", Partition: 2, Start: 0, End: 100}, AllowedLateness: 10 * time.Minute, FraudRules: contract.FraudRules}
	env.OnActivity("Dedup", mock.Anything, spec).Return(decisions, nil).Once()
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		if in.Spec.FraudRules != contract.FraudRules || len(in.Enrichment.Scores) != 0 || len(in.Decisions.DuplicateOffsets) != 1 {
			t.Errorf("Load got %+v: want the recorded decisions, the rule set, and no scores", in)
		}
		return contract.Totals{Loaded: 97}, nil
	}).Once()
	env.ExecuteWorkflow(MicroBatch, spec)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	env.AssertExpectations(t) // Enrich, unmocked, would have failed the batch
}

// plan mocks PlanBatch: one range [0, 100), then the log's end as an
// error retrying cannot fix, which ends the workflow where a test can look.
func plan(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		if in.Next == 0 {
			return contract.PlanResult{End: 100, HighWatermark: 100}, nil
		}
		return contract.PlanResult{}, temporal.NewNonRetryableApplicationError("end of test log", contract.ErrTypeOffsetOutOfRange, nil)
	})
}

// TestAFailedLoadRunsAgainUnderItsID: a batch whose load fails runs again
// under the same ID, whose range it derives from (invariant 2). Load
// commits the offset after its tables (invariant 5,
// activities.TestLoadCommitsTheOffsetLast).
func TestAFailedLoadRunsAgainUnderItsID(t *testing.T) {
	env := newEnv(t)
	var j journal
	plan(env)
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	loads := 0
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
		loads++
		j.add("load by " + activity.GetInfo(ctx).WorkflowExecution.ID)
		if loads == 1 {
			return contract.Totals{}, temporal.NewNonRetryableApplicationError("schema mismatch", contract.ErrTypeLoadFailed, nil)
		}
		return contract.Totals{Loaded: 97}, nil
	})
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second, AllowedLateness: 10 * time.Minute})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeOffsetOutOfRange {
		t.Fatalf("workflow ended with %v, want the test log's end", err)
	}
	if want := "[load by batch/payments/0/0-100 load by batch/payments/0/0-100]"; fmt.Sprint(j.calls) != want {
		t.Fatalf("calls %q, want %s", j.calls, want)
	}
}

// TestContinueAsNewCarriesTheWindow: after a batch, the next run starts at
// its end with the dedup window bounds Dedup handed on.
func TestContinueAsNewCarriesTheWindow(t *testing.T) {
	env := newEnv(t)
	plan(env)
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(contract.Totals{Loaded: 97}, nil)
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second, MaxBatchesPerRun: 1})
	next := continuedWith(t, env.GetWorkflowError())
	if next.Next != 100 || !reflect.DeepEqual(next.Window, decisions.Next) || next.BatchesDone != 1 || next.RecordsDone != 100 || next.MaxBatchesPerRun != 1 {
		t.Errorf("continued with %+v", next)
	}
}

// storageWriteEnv is an env whose run creates the streams prefix/<table>
// once and plans batches of 100, each deciding as decisions does.
func storageWriteEnv(t *testing.T, prefix string) *testsuite.TestWorkflowEnvironment {
	env := newEnv(t)
	env.OnActivity("CreateStreams", mock.Anything, contract.LoadOrder).Return(func(_ context.Context, tables []string) (map[string]string, error) {
		out := map[string]string{}
		for _, table := range tables {
			out[table] = prefix + "/" + table
		}
		return out, nil
	}).Once()
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		return contract.PlanResult{End: in.Next + 100, HighWatermark: 1000}, nil
	})
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	return env
}

// TestStorageWriteOffsetsFollowTheRows: in storagewrite mode a run creates
// one stream per table, each batch appends at the offsets the rows before
// it ended at, a failed batch is retried at the same offsets, and the
// next run (continue-as-new) keeps the mode and creates new streams.
func TestStorageWriteOffsetsFollowTheRows(t *testing.T) {
	env := storageWriteEnv(t, "streams")
	var j journal
	loads := 0
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		loads++
		tx := in.Spec.Streams["transactions"]
		j.add(fmt.Sprintf("%d-%d %s@%d ledger@%d", in.Spec.Start, in.Spec.End, tx.Name, tx.Offset, in.Spec.Streams["batch_ledger"].Offset))
		if loads == 2 {
			return contract.Totals{}, temporal.NewNonRetryableApplicationError("stream unavailable", contract.ErrTypeLoadFailed, nil)
		}
		return contract.Totals{Loaded: 97, Rows: map[string]int{"transactions": 97, "batch_ledger": 1}}, nil
	})
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, PollFor: time.Second, MaxBatchesPerRun: 4, WriteMode: config.WriteModeStorageWrite}) // the failed run counts
	next := continuedWith(t, env.GetWorkflowError())
	want := []string{
		"0-100 streams/transactions@0 ledger@0",
		"100-200 streams/transactions@97 ledger@1", // failed
		"100-200 streams/transactions@97 ledger@1", // the same batch, the same offsets
		"200-300 streams/transactions@194 ledger@2",
	}
	if fmt.Sprint(j.calls) != fmt.Sprint(want) {
		t.Errorf("loads\n%q\nwant\n%q", j.calls, want)
	}
	if next.WriteMode != config.WriteModeStorageWrite || next.Next != 300 {
		t.Errorf("continued with %+v", next)
	}
	env.AssertExpectations(t)
}

// TestAPendingBatchLeavesTheNewStreamsAlone: in storagewrite mode a batch
// that failed in an earlier run is retried on that run's streams, at its
// offsets; once it loads, the new run's own streams still start at 0.
// Before, its rows were added to the new streams' offsets, and the next
// append landed past their end (OUT_OF_RANGE, for good).
func TestAPendingBatchLeavesTheNewStreamsAlone(t *testing.T) {
	env := storageWriteEnv(t, "new")
	// The pending batch is from before Load scored: its scores are Enrich's.
	env.OnActivity("Enrich", mock.Anything, mock.Anything, mock.Anything).Return(enrichment, nil)
	var j journal
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
		tx := in.Spec.Streams["transactions"]
		j.add(fmt.Sprintf("%d-%d %s@%d", in.Spec.Start, in.Spec.End, tx.Name, tx.Offset))
		return contract.Totals{Loaded: 97, Rows: map[string]int{"transactions": 97}}, nil
	})
	pending := &contract.Spec{Range: contract.Range{Topic: "payments", Start: 0, End: 100}, Streams: map[string]contract.StreamOffset{"transactions": {Name: "old/transactions", Offset: 500}}}
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, PollFor: time.Second, MaxBatchesPerRun: 3,
		WriteMode: config.WriteModeStorageWrite, Retry: contract.Retry{Pending: pending}})
	want := []string{"0-100 old/transactions@500", "100-200 new/transactions@0", "200-300 new/transactions@97"}
	if fmt.Sprint(j.calls) != fmt.Sprint(want) {
		t.Errorf("loads\n%q\nwant\n%q", j.calls, want)
	}
}

// TestAFailedBatchOutlivesItsRun: a batch that failed is retried as it
// was, under the same ID and range, even across continue-as-new and at a
// batch size that would plan another range; only then does planning go on
// from its end.
func TestAFailedBatchOutlivesItsRun(t *testing.T) {
	in := contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second}
	run := func(in contract.IngestInput, loadErr error, suggestAt time.Duration) (*journal, error) {
		env := newEnv(t)
		j := &journal{}
		env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
			j.add(fmt.Sprintf("plan %d", in.Next))
			if in.Next >= 140 {
				return contract.PlanResult{}, temporal.NewNonRetryableApplicationError("end of test log", contract.ErrTypeOffsetOutOfRange, nil)
			}
			return contract.PlanResult{End: in.Next + int64(in.MaxRecords), HighWatermark: 1000}, nil
		})
		env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
		env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.LoadInput) (contract.Totals, error) {
			j.add("load " + in.Spec.ID())
			if loadErr == nil {
				j.add(fmt.Sprintf("commit %d", in.Spec.End)) // as the real Load does, last
			}
			return contract.Totals{Loaded: 97}, loadErr
		})
		if suggestAt > 0 {
			env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, suggestAt)
		}
		env.ExecuteWorkflow(PartitionIngest, in)
		return j, env.GetWorkflowError()
	}

	// The batch fails; while the run waits to retry it, Temporal suggests
	// continue-as-new, and the next run is handed the batch.
	j, err := run(in, temporal.NewNonRetryableApplicationError("schema mismatch", contract.ErrTypeLoadFailed, nil), 30*time.Second)
	next := continuedWith(t, err)
	// Planning runs beside the batch, so only the plans' offsets are
	// compared, not their order; the plan from 100 is called off when
	// the batch fails, so it may not have run by then.
	if got := j.split(); got != "[load batch/payments/0/0-100 | plan 0 plan 100]" && got != "[load batch/payments/0/0-100 | plan 0]" {
		t.Errorf("first run called %s, want the batch's load and the plan from 0, maybe that from 100", got)
	}
	if want := "batch/payments/0/0-100"; next.Pending == nil || next.Pending.ID() != want || next.Next != 0 {
		t.Fatalf("continued at %d with pending batch %+v, want %s", next.Next, next.Pending, want)
	}

	// The next run, at a smaller batch size, loads it first, commits its
	// end, and plans from there.
	next.MaxRecords = 40
	j, err = run(next, nil, 0)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeOffsetOutOfRange {
		t.Fatalf("second run ended with %v, want the test log's end", err)
	}
	if want := "[load batch/payments/0/0-100 commit 100 load batch/payments/0/100-140 commit 140 | plan 100 plan 140]"; j.split() != want {
		t.Errorf("second run called %s, want %s", j.split(), want)
	}

	// A pending batch that does not start where the run does is refused.
	bad := next
	bad.Next = 100
	if _, err := run(bad, nil, 0); !errors.As(err, &appErr) || appErr.Type() != "BadPendingBatch" {
		t.Errorf("a pending batch at another offset: %v", err)
	}
}

// TestStopWaitsForAFailedBatch: a stop while a failed batch waits to run
// again ends the run only after that batch has run again, under its ID
// and range, and loaded: a stop never forgets a batch whose tables may
// hold part of its rows.
func TestStopWaitsForAFailedBatch(t *testing.T) {
	env := newEnv(t)
	plan(env)
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	var loaded []string
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
		loaded = append(loaded, in.Spec.ID())
		if len(loaded) == 1 {
			return contract.Totals{}, temporal.NewNonRetryableApplicationError("ledger refused", contract.ErrTypeLoadFailed, nil)
		}
		return contract.Totals{Loaded: 97}, nil
	})
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Second) // within the minute's wait
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second, AllowedLateness: 10 * time.Minute})
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow ended with %v, want stopped", err)
	}
	if want := "[batch/payments/0/0-100 batch/payments/0/0-100]"; fmt.Sprint(loaded) != want {
		t.Fatalf("loads %v, want the failed batch again before the stop: %s", loaded, want)
	}
}

// TestAStopIsNotHandedOnAsADrain: a stop while a failed batch waits,
// in a run that is due to continue as new, ends that very run once the
// batch has loaded. Handed on, it would become the next run's drain, a
// run that start takes for a running partition and that then ends.
func TestAStopIsNotHandedOnAsADrain(t *testing.T) {
	env := newEnv(t)
	plan(env)
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
	var loaded []string
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
		loaded = append(loaded, in.Spec.ID())
		if len(loaded) == 1 {
			return contract.Totals{}, temporal.NewNonRetryableApplicationError("ledger refused", contract.ErrTypeLoadFailed, nil)
		}
		return contract.Totals{Loaded: 97}, nil
	})
	env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, 5*time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Second) // within the minute's wait
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second, MaxBatchesPerRun: 1})
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("workflow ended with %v, want stopped", err)
	}
	if want := "[batch/payments/0/0-100 batch/payments/0/0-100]"; fmt.Sprint(loaded) != want {
		t.Fatalf("loads %v, want the failed batch again before the stop: %s", loaded, want)
	}
}

// TestAPendingBatchAtAnotherLatenessHandsOnAFloor: a start at a longer
// lateness than a pending batch first ran at runs that batch as it was,
// at its own lateness; the batch after it gets the window with the old
// watermark kept as a floor, as start gives a partition with none
// pending, so that no resend older than what the window held loads twice.
func TestAPendingBatchAtAnotherLatenessHandsOnAFloor(t *testing.T) {
	env := newEnv(t)
	env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		if in.Next < 200 {
			return contract.PlanResult{End: in.Next + 100, HighWatermark: 200}, nil
		}
		return contract.PlanResult{}, temporal.NewNonRetryableApplicationError("end of test log", contract.ErrTypeOffsetOutOfRange, nil)
	})
	var windows []contract.Window
	env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(func(_ context.Context, spec contract.Spec) (contract.Decisions, error) {
		windows = append(windows, spec.Window)
		return decisions, nil
	})
	env.OnActivity("Enrich", mock.Anything, mock.Anything, mock.Anything).Return(enrichment, nil) // the pending batch's
	env.OnActivity("Load", mock.Anything, mock.Anything).Return(contract.Totals{Loaded: 97}, nil)
	pending := contract.Spec{Range: contract.Range{Topic: "payments", Partition: 0, Start: 0, End: 100}, AllowedLateness: 10 * time.Minute}
	env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second,
		AllowedLateness: time.Hour, Retry: contract.Retry{Pending: &pending}})
	if len(windows) != 2 {
		t.Fatalf("%d batches deduplicated, want 2 (%v)", len(windows), env.GetWorkflowError())
	}
	want := []contract.Floor{{Offset: 100, Time: decisions.Next.Newest.Add(-10 * time.Minute)}}
	if got := windows[1].Floors; !reflect.DeepEqual(got, want) {
		t.Errorf("the batch after the pending one has floors %v, want %v", got, want)
	}
}

// TestBudgetSpacesBatchesAndGrowsThem: under a load-job budget a
// partition starts a batch at most every MinBatchInterval, and a plan
// after the wait asks for up to MaxBatchRecords, so that what accumulated
// goes in one batch; without a budget the plans keep the configured size.
func TestBudgetSpacesBatchesAndGrowsThem(t *testing.T) {
	for _, interval := range []time.Duration{0, 10 * time.Minute} {
		env := newEnv(t)
		var starts []time.Time
		var asked []int
		env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
			if in.Next >= 300 {
				return contract.PlanResult{}, temporal.NewNonRetryableApplicationError("end of test log", contract.ErrTypeOffsetOutOfRange, nil)
			}
			asked = append(asked, in.MaxRecords)
			return contract.PlanResult{End: in.Next + 100, HighWatermark: 1000}, nil
		})
		env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
		env.OnActivity("Load", mock.Anything, mock.Anything).Return(func(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
			starts = append(starts, env.Now())
			return contract.Totals{Loaded: 97}, nil
		})
		env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, MaxBytes: 1 << 20, PollFor: time.Second,
			AllowedLateness: 10 * time.Minute, Spacing: contract.Spacing{MinBatchInterval: interval}})
		var appErr *temporal.ApplicationError
		if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeOffsetOutOfRange {
			t.Fatalf("interval %v: workflow ended with %v, want the test log's end", interval, err)
		}
		if len(starts) != 3 {
			t.Fatalf("interval %v: %d batches, want 3", interval, len(starts))
		}
		for i := 1; i < len(starts); i++ {
			if gap := starts[i].Sub(starts[i-1]); gap < interval {
				t.Errorf("interval %v: batches %d and %d started %v apart", interval, i-1, i, gap)
			}
		}
		want := []int{100, 100, 100}
		if interval > 0 {
			want = []int{contract.MaxBatchRecords, contract.MaxBatchRecords, contract.MaxBatchRecords}
		}
		if fmt.Sprint(asked) != fmt.Sprint(want) {
			t.Errorf("interval %v: plans asked for %v records, want %v", interval, asked, want)
		}
	}
}

// TestTheFailedBatchWaitGrowsAcrossContinueAsNew: a batch that keeps
// failing waits longer each time, also when continue-as-new comes between
// two failures: the count of failures in a row goes with the batch.
func TestTheFailedBatchWaitGrowsAcrossContinueAsNew(t *testing.T) {
	run := func(in contract.IngestInput, suggestAt time.Duration) (contract.IngestInput, time.Duration) {
		env := newEnv(t)
		env.OnActivity("PlanBatch", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
			return contract.PlanResult{End: in.Next + int64(in.MaxRecords), HighWatermark: 1000}, nil
		})
		env.OnActivity("Dedup", mock.Anything, mock.Anything).Return(decisions, nil)
		env.OnActivity("Load", mock.Anything, mock.Anything).Return(contract.Totals{}, temporal.NewNonRetryableApplicationError("quota", contract.ErrTypeLoadFailed, nil))
		env.RegisterDelayedCallback(func() { env.SetContinueAsNewSuggested(true) }, suggestAt)
		began := env.Now()
		env.ExecuteWorkflow(PartitionIngest, in)
		return continuedWith(t, env.GetWorkflowError()), env.Now().Sub(began)
	}
	in := contract.IngestInput{Topic: "payments", Partition: 0, MaxRecords: 100, PollFor: time.Second}
	next, _ := run(in, 10*time.Second)
	if next.Pending == nil || next.Failures != 1 {
		t.Fatalf("first run handed on pending %v after %d failures, want the batch after 1", next.Pending, next.Failures)
	}
	// The second run fails the batch again at once, and waits as for a
	// second failure in a row before it can hand it on.
	next, took := run(next, 10*time.Second)
	if next.Failures != 2 || took < failedBatchWait(2) {
		t.Errorf("second run: %d failures, handed on after %v; want 2, after at least %v", next.Failures, took, failedBatchWait(2))
	}
}

// TestABudgetGrowsBatchBytesWithinTheBound: under a load-job budget a plan
// takes up to MaxBatchRecords and the bytes in proportion, but never more
// than MaxBatchBytes, whatever set-batch made the records.
func TestABudgetGrowsBatchBytesWithinTheBound(t *testing.T) {
	for _, c := range []struct {
		records int
		bytes   int64
		want    int64
	}{
		{20_000, 16 << 20, 160 << 20},
		{1, 16 << 20, contract.MaxBatchBytes},
		{1, 1 << 62, contract.MaxBatchBytes},
		{contract.MaxBatchRecords, 1 << 30, 1 << 30}, // already at the most records: as set
	} {
		p := &partition{in: contract.IngestInput{Spacing: contract.Spacing{MinBatchInterval: time.Minute}, MaxRecords: c.records, MaxBytes: c.bytes}}
		if got := p.planInput(); got.MaxBytes != c.want || got.MaxRecords != contract.MaxBatchRecords {
			t.Errorf("%d records, %d bytes: plan asks %d records, %d bytes; want %d, %d", c.records, c.bytes, got.MaxRecords, got.MaxBytes, contract.MaxBatchRecords, c.want)
		}
	}
}
