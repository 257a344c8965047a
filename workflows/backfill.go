package workflows

import (
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// Backfill runs a partition's batches again, one at a time, started as
// PartitionIngest starts them (startBatch: the same IDs, search
// attributes and summaries, so the web UI's partition filter finds them).
// A batch that completed before is refused a second run and reported as
// already loaded; a failed one runs again under its ID, safely.
func Backfill(ctx workflow.Context, in contract.BackfillInput) ([]contract.BackfillOutcome, error) {
	var out []contract.BackfillOutcome
	err := workflow.SetQueryHandler(ctx, contract.ProgressQuery, func() (contract.BackfillProgress, error) {
		return contract.BackfillProgress{Done: len(out), Total: len(in.Batches)}, nil
	})
	if err != nil {
		return nil, err
	}
	for _, spec := range in.Batches {
		err := startBatch(ctx, spec, "").Get(ctx, nil)
		switch {
		case temporal.IsWorkflowExecutionAlreadyStartedError(err):
			out = append(out, contract.BackfillOutcome{BatchID: spec.ID(), Outcome: contract.BackfillAlreadyRun})
		case err != nil:
			return out, err
		default:
			out = append(out, contract.BackfillOutcome{BatchID: spec.ID(), Outcome: contract.BackfillLoaded})
		}
	}
	return out, nil
}
