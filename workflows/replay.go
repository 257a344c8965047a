package workflows

import (
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// ReplayQuarantine loads one batch's quarantined late records, once an
// operator decided they belong in transactions: DecideReplay decides once,
// recorded in history; LoadReplay applies it idempotently. Its workflow ID
// is the replay's ID, so a batch's quarantine is replayed at most once.
func ReplayQuarantine(ctx workflow.Context, in contract.ReplayInput) (contract.ReplayTotals, error) {
	workflow.SetCurrentDetails(ctx, "Deciding which quarantined records of "+in.Source.ID()+" to load")
	var d contract.ReplayDecision
	if err := workflow.ExecuteActivity(withSummary(ctx, readOptions, "find the "+in.ReplayReason()+" records of "+in.Source.ID()+" not loaded yet"),
		contract.ActivityDecideReplay, in).Get(ctx, &d); err != nil {
		return contract.ReplayTotals{}, err
	}
	summary := fmt.Sprintf("load %d of %d quarantined records; %d stay (transaction_id loaded already)", len(d.Offsets), d.Quarantined, len(d.DuplicateOffsets))
	var totals contract.ReplayTotals
	if err := workflow.ExecuteActivity(withSummary(ctx, loadOptions, summary), contract.ActivityLoadReplay,
		contract.ReplayLoadInput{Replay: in, Decision: d}).Get(ctx, &totals); err != nil {
		return contract.ReplayTotals{}, err
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Replayed** %d of %d quarantined records of `%s`; %d stay in quarantine as duplicates",
		totals.Loaded, totals.Quarantined, in.Source.ID(), totals.Duplicates))
	return totals, nil
}

// QuarantineReplays replays the quarantine of each batch in turn, as its
// own ReplayQuarantine child. A batch replayed before is refused its
// second run by its workflow ID and reported as such. Its "progress" query
// answers how many batches are done.
//
// reason is the ingest_errors reason replayed: "" (runs from before it
// existed) for late records.
func QuarantineReplays(ctx workflow.Context, sources []contract.Range, reason string) ([]contract.ReplayOutcome, error) {
	out := make([]contract.ReplayOutcome, 0, len(sources))
	if err := workflow.SetQueryHandler(ctx, contract.ProgressQuery, func() (int, error) { return len(out), nil }); err != nil {
		return nil, err
	}
	for i, src := range sources {
		in := contract.ReplayInput{Source: src, Reason: reason}
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("Replaying %d of %d: %s", i+1, len(sources), src.ID()))
		childCtx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            in.ID(),
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
			StaticSummary:         "replay the quarantined " + in.ReplayReason() + " records of " + batchSummary(contract.Spec{Range: src}),
		})
		var totals contract.ReplayTotals
		err := workflow.ExecuteChildWorkflow(childCtx, ReplayQuarantine, in).Get(ctx, &totals)
		switch {
		case temporal.IsWorkflowExecutionAlreadyStartedError(err):
			out = append(out, contract.ReplayOutcome{ReplayID: in.ID(), Already: true})
		case err != nil:
			return out, fmt.Errorf("replay %s: %w", in.ID(), err)
		default:
			out = append(out, contract.ReplayOutcome{ReplayID: in.ID(), Totals: totals})
		}
	}
	return out, nil
}
