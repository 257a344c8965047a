package workflows

import (
	"context"
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/paystream/paystream/contract"
)

// TestQuarantineReplaysLoadsWhatWasDecided: each batch's replay loads
// exactly the offsets its DecideReplay recorded, also when the load is
// retried, and the run reports every batch's totals in order.
func TestQuarantineReplaysLoadsWhatWasDecided(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(ReplayQuarantine)
	env.RegisterWorkflow(QuarantineReplays)
	sources := []contract.Range{{Topic: "payments", Partition: 0, Start: 0, End: 100}, {Topic: "payments", Partition: 0, Start: 100, End: 200}}
	env.OnActivity("DecideReplay", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.ReplayInput) (contract.ReplayDecision, error) {
		return contract.ReplayDecision{Quarantined: 3, Offsets: []int64{in.Source.Start + 1, in.Source.Start + 5}, DuplicateOffsets: []int64{in.Source.Start + 9}}, nil
	}).Times(2)
	attempts := map[string]int{}
	env.OnActivity("LoadReplay", mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.ReplayLoadInput) (contract.ReplayTotals, error) {
		attempts[in.Replay.ID()]++
		if len(in.Decision.Offsets) != 2 || in.Decision.Offsets[0] != in.Replay.Source.Start+1 || in.Decision.DuplicateOffsets[0] != in.Replay.Source.Start+9 {
			t.Errorf("LoadReplay of %s got %+v, not the recorded decision", in.Replay.ID(), in.Decision)
		}
		if attempts[in.Replay.ID()] == 1 {
			return contract.ReplayTotals{}, context.DeadlineExceeded // retried
		}
		return contract.ReplayTotals{Quarantined: 3, Loaded: 2, Duplicates: 1}, nil
	})
	env.ExecuteWorkflow(QuarantineReplays, sources, "")
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var out []contract.ReplayOutcome
	if err := env.GetWorkflowResult(&out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].ReplayID != "replay/batch/payments/0/0-100" || out[1].ReplayID != "replay/batch/payments/0/100-200" {
		t.Fatalf("outcomes %+v", out)
	}
	for _, o := range out {
		if o.Already || o.Totals.Loaded != 2 || o.Totals.Duplicates != 1 || attempts[o.ReplayID] != 2 {
			t.Errorf("%s: %+v after %d load attempts", o.ReplayID, o, attempts[o.ReplayID])
		}
	}
	env.AssertExpectations(t)
}
