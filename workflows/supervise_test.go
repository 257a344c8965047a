package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// TestSupervisorRespacesWhenPartitionsAreAdded: under a load-job budget,
// a partition added to a 2-partition topic starts spaced for 3, and the 2
// running partitions are told the wider spacing, so the topic's load jobs
// a table stay within the budget.
func TestSupervisorRespacesWhenPartitionsAreAdded(t *testing.T) {
	const budget = 1200
	env := newEnv(t)
	env.RegisterWorkflow(TopicSupervisor)
	var mu sync.Mutex // the mocks run on the test environment's goroutines
	looks := 0
	env.OnActivity(contract.ActivityNewPartitions, mock.Anything, mock.Anything).Return(func(context.Context, contract.PartitionsInput) ([]int64, error) {
		mu.Lock()
		defer mu.Unlock()
		looks++
		if looks == 2 {
			return []int64{0}, nil // partition 2 appears
		}
		return nil, nil
	})
	var started []contract.IngestInput
	env.OnWorkflow("PartitionIngest", mock.Anything, mock.Anything).Return(func(_ workflow.Context, in contract.IngestInput) error {
		mu.Lock()
		defer mu.Unlock()
		started = append(started, in)
		return nil
	})
	want := contract.Budget{Partitions: 3, MinBatchInterval: contract.BatchInterval(3, budget)}
	told := map[string]contract.Budget{}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", contract.BudgetSignal, mock.Anything).Return(func(_, id, _, _ string, arg any) error {
		mu.Lock()
		defer mu.Unlock()
		told[id] = arg.(contract.Budget)
		return nil
	})
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*contract.DefaultSuperviseEvery)
	env.ExecuteWorkflow(TopicSupervisor, contract.SuperviseInput{Topic: "payments", Partitions: 2, LoadJobBudget: budget,
		Template: contract.IngestInput{Spacing: contract.Spacing{MinBatchInterval: contract.BatchInterval(2, budget)}}})
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("supervisor ended with %v, want cancelled by the test", err)
	}
	if len(started) != 1 || started[0].Partition != 2 || started[0].MinBatchInterval != want.MinBatchInterval {
		t.Fatalf("started %+v, want partition 2 spaced %v", started, want.MinBatchInterval)
	}
	for p := range 2 {
		if got := told[contract.IngestID("payments", p)]; got != want {
			t.Errorf("partition %d was told %+v, want %+v", p, got, want)
		}
	}
	if len(told) != 2 {
		t.Errorf("told %v, want the 2 running partitions only", told)
	}
	// Each table's load jobs a day across the topic, at the new spacing.
	if perDay := 3 * float64(24*time.Hour) / float64(want.MinBatchInterval); perDay > budget {
		t.Errorf("%.0f load jobs a table a day, over the budget of %d", perDay, budget)
	}
}

// TestANewSpacingAppliesToTheWaitUnderWay: a partition waiting out its
// spacing is told another (BudgetSignal) a minute into the wait; its next
// batch comes the new interval after the last one, later or sooner.
func TestANewSpacingAppliesToTheWaitUnderWay(t *testing.T) {
	for _, c := range []struct {
		from, to time.Duration
	}{
		{10 * time.Minute, 20 * time.Minute}, // partitions added
		{10 * time.Minute, 5 * time.Minute},  // a larger budget at the next start
	} {
		t.Run(fmt.Sprintf("%v to %v", c.from, c.to), func(t *testing.T) {
			env := newEnv(t)
			env.OnActivity(contract.ActivityPlanBatch, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
				if in.Next >= 300 {
					return contract.PlanResult{}, temporal.NewNonRetryableApplicationError("end of test log", contract.ErrTypeOffsetOutOfRange, nil)
				}
				return contract.PlanResult{End: in.Next + 100, HighWatermark: 1000}, nil
			})
			env.OnActivity(contract.ActivityDedup, mock.Anything, mock.Anything).Return(decisions, nil)
			env.OnActivity(contract.ActivityEnrich, mock.Anything, mock.Anything, mock.Anything).Return(enrichment, nil)
			var starts []time.Time
			env.OnActivity(contract.ActivityLoad, mock.Anything, mock.Anything).Return(func(context.Context, contract.LoadInput) (contract.Totals, error) {
				starts = append(starts, env.Now())
				return contract.Totals{Loaded: 97}, nil
			})
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow(contract.BudgetSignal, contract.Budget{Partitions: 2, MinBatchInterval: c.to})
			}, time.Minute)
			env.ExecuteWorkflow(PartitionIngest, contract.IngestInput{Topic: "payments", MaxRecords: 100, MaxBytes: 1 << 20, PollFor: time.Second,
				AllowedLateness: 10 * time.Minute, Spacing: contract.Spacing{MinBatchInterval: c.from}})
			var appErr *temporal.ApplicationError
			if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != contract.ErrTypeOffsetOutOfRange {
				t.Fatalf("workflow ended with %v, want the test log's end", err)
			}
			if len(starts) != 3 {
				t.Fatalf("%d batches, want 3", len(starts))
			}
			for i := 1; i < len(starts); i++ {
				// The batch itself takes a moment of the test clock.
				if gap := starts[i].Sub(starts[i-1]); gap < c.to || gap > c.to+time.Minute {
					t.Errorf("batches %d and %d started %v apart, want %v", i-1, i, gap, c.to)
				}
			}
		})
	}
}

// TestSetBatchReachesPartitionsAddedLater: set-batch sent to the topic's
// supervisor changes the batch size of the partitions it starts from then
// on; before it, a partition added to the topic started with start's
// size, and kept it after set-batch resized the running ones.
func TestSetBatchReachesPartitionsAddedLater(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(TopicSupervisor)
	var mu sync.Mutex
	looks := 0
	env.OnActivity(contract.ActivityNewPartitions, mock.Anything, mock.Anything).Return(func(context.Context, contract.PartitionsInput) ([]int64, error) {
		mu.Lock()
		defer mu.Unlock()
		looks++
		if looks == 3 {
			return []int64{0}, nil // partition 2 appears after the set-batch
		}
		return nil, nil
	})
	var started []contract.IngestInput
	env.OnWorkflow("PartitionIngest", mock.Anything, mock.Anything).Return(func(_ workflow.Context, in contract.IngestInput) error {
		mu.Lock()
		defer mu.Unlock()
		started = append(started, in)
		return nil
	})
	var answer contract.TopicBatch
	var answerErr error
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(contract.SetBatchUpdate, "set-batch-1", &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { answerErr = err },
			OnComplete: func(v any, err error) {
				if err == nil {
					answer = v.(contract.TopicBatch)
				}
				answerErr = err
			},
		}, contract.SetBatchInput{MaxRecords: 700, MaxBytes: 3 << 20})
	}, contract.DefaultSuperviseEvery+time.Second)
	refused := errors.New("not answered")
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(contract.SetBatchUpdate, "set-batch-2", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnComplete: func(any, error) {},
			OnReject: func(err error) { refused = err },
		}, contract.SetBatchInput{MaxRecords: contract.MaxBatchRecords + 1})
	}, contract.DefaultSuperviseEvery+2*time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*contract.DefaultSuperviseEvery)
	env.ExecuteWorkflow(TopicSupervisor, contract.SuperviseInput{Topic: "payments", Partitions: 2,
		Template: contract.IngestInput{MaxRecords: 5000, MaxBytes: 8 << 20}})
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("supervisor ended with %v, want cancelled by the test", err)
	}
	if answerErr != nil || answer.Partitions != 2 || answer.MaxRecords != 700 || answer.MaxBytes != 3<<20 || answer.Every != contract.DefaultSuperviseEvery {
		t.Errorf("set-batch answered %+v, %v; want 2 partitions kept, batches of 700 records or 3 MiB, every %v", answer, answerErr, contract.DefaultSuperviseEvery)
	}
	if refused == nil || refused.Error() == "not answered" {
		t.Errorf("a batch size over %d records: %v, want refused", contract.MaxBatchRecords, refused)
	}
	if len(started) != 1 || started[0].Partition != 2 || started[0].MaxRecords != 700 || started[0].MaxBytes != 3<<20 {
		t.Fatalf("started %+v, want partition 2 with batches of 700 records or 3 MiB", started)
	}
}
