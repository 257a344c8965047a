package workflows

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/searchattr"
)

// TestBackfillStartsBatchesAsIngestDoes: each batch a backfill runs is a
// MicroBatch under its range's ID, carrying the search attributes the web
// UI's partition filter uses, one after another, in order.
func TestBackfillStartsBatchesAsIngestDoes(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(Backfill)
	env.OnWorkflow("MicroBatch", mock.Anything, mock.Anything).Return(contract.Result{}, nil)
	var started []string
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, ctx workflow.Context, _ converter.EncodedValues) {
		sa := workflow.GetTypedSearchAttributes(ctx)
		p, _ := sa.GetInt64(searchattr.KafkaPartition)
		start, _ := sa.GetInt64(searchattr.BatchStartOffset)
		end, _ := sa.GetInt64(searchattr.BatchEndOffset)
		topic, _ := sa.GetKeyword(searchattr.KafkaTopic)
		started = append(started, fmt.Sprintf("%s %s/%d/%d-%d", info.WorkflowExecution.ID, topic, p, start, end))
	})
	batch := func(start, end int64) contract.Spec {
		return contract.Spec{Range: contract.Range{Topic: "payments", Partition: 3, Start: start, End: end}}
	}
	env.ExecuteWorkflow(Backfill, contract.BackfillInput{Batches: []contract.Spec{batch(0, 500), batch(500, 900)}})
	var out []contract.BackfillOutcome
	if err := env.GetWorkflowResult(&out); err != nil {
		t.Fatal(err)
	}
	want := "[batch/payments/3/0-500 payments/3/0-500 batch/payments/3/500-900 payments/3/500-900]"
	if fmt.Sprint(started) != want {
		t.Errorf("started %v, want %s", started, want)
	}
	if len(out) != 2 || out[0].Outcome != contract.BackfillLoaded || out[1].BatchID != "batch/payments/3/500-900" {
		t.Errorf("outcomes %+v", out)
	}
}
