package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// What the Temporal web UI shows for a batch without decoding a payload:
// a one-line summary and Markdown details on each MicroBatch, a summary on
// each activity, and the counts as current details once loaded. They hold
// offsets, counts and amount totals only, never a card, customer or
// transaction ID (invariant 1).

// batchSummary is MicroBatch's one line: which partition and offsets.
func batchSummary(spec contract.Spec) string {
	return fmt.Sprintf("%s partition %d, offsets %d–%d (%d offsets)", spec.Topic, spec.Partition, spec.Start, spec.End-1, spec.End-spec.Start)
}

func batchDetails(spec contract.Spec) string {
	newest := "none yet"
	if !spec.Window.Newest.IsZero() {
		newest = spec.Window.Newest.UTC().Format("2006-01-02 15:04:05.000 MST")
	}
	return fmt.Sprintf("**Batch** `%s`\n\n| | |\n|---|---|\n| Topic | %s |\n| Partition | %d |\n| Offsets | %d to %d, end exclusive: %d |\n"+
		"| Dedup window | from offset %d, newest event %s |\n| Allowed lateness | %s |\n",
		spec.ID(), spec.Topic, spec.Partition, spec.Start, spec.End, spec.End-spec.Start, spec.Window.Start, newest, spec.AllowedLateness)
}

func dedupSummary(spec contract.Spec) string {
	return fmt.Sprintf("dedup offsets %d–%d", spec.Start, spec.End-1)
}

func enrichSummary(d contract.Decisions) string {
	return fmt.Sprintf("fraud-score %d records to load", d.Loaded)
}

// loadSummary is what Dedup decided, which Load applies.
func loadSummary(d contract.Decisions) string {
	return fmt.Sprintf("load %d records: %d loaded, %d duplicates, %d errors, %d late",
		d.Records, d.Loaded, len(d.DuplicateOffsets), d.Invalid+len(d.ConflictOffsets), len(d.LateOffsets))
}

// totalsDetails is the batch's outcome, as reconciliation counts it.
func totalsDetails(spec contract.Spec, t contract.Totals) string {
	var amounts []string
	//workflowcheck:ignore sorted before use
	for _, cur := range slices.Sorted(maps.Keys(t.AmountByCurrency)) {
		amounts = append(amounts, fmt.Sprintf("%s %s", t.AmountByCurrency[cur], cur))
	}
	if len(amounts) == 0 {
		amounts = append(amounts, "none")
	}
	return fmt.Sprintf("**Loaded** offsets %d–%d of partition %d\n\n| Outcome | Records |\n|---|---|\n| loaded | %d |\n| duplicates | %d |\n| errors | %d |\n| late | %d |\n| high risk | %d |\n\nAmounts loaded: %s\n",
		spec.Start, spec.End-1, spec.Partition, t.Loaded, t.Duplicates, t.Errors, t.Late, t.HighRisk, strings.Join(amounts, ", "))
}

func withSummary(ctx workflow.Context, opts workflow.ActivityOptions, summary string) workflow.Context {
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}
