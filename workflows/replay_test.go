package workflows

import (
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// Histories recorded from real runs on the devstack, replayed against the
// current code: CI fails when a change would break running workflows.
// Record them again, with PAYSTREAM_RECORD_HISTORY=$PWD/workflows/testdata,
// when a change is meant to (docs/deploy.md, "Rolling out workflow
// changes").
var recordedHistories = []string{
	"testdata/batch_payments_0_0-1500.json", // internal/operator TestEndToEnd
	// A batch from before Load scored: Enrich recorded its scores.
	"testdata/batch_payments_0_0-1500_scored_by_enrich.json",
	"testdata/ingest_payments_0.json", // TestEndToEnd
	// Paused, resized, resumed and drained by updates (starter's
	// TestControlOnARunningPipeline).
	"testdata/ingest_payments_1_controlled.json",
	// A pool run started afresh after its predecessor was terminated:
	// workers join, partitions announce themselves, a worker is killed
	// (worker TestPoolTerminatedThenAWorkerDies).
	"testdata/pool_paystream.json",
	"testdata/supervise_payments.json", // TestPoolTerminatedThenAWorkerDies
	// Avro records of a schema ID the registry did not know: the plans
	// record the verdicts (e2e TestUnknownSchemaQuarantinedThenReplayedOnce).
	"testdata/ingest_payments_0_schemas.json",
}

func TestReplayRecordedHistories(t *testing.T) {
	for _, file := range recordedHistories {
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflow(PartitionIngest)
		r.RegisterWorkflow(MicroBatch)
		r.RegisterWorkflow(WorkerPool)
		r.RegisterWorkflow(TopicSupervisor)
		if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
			t.Errorf("replay %s: %v", file, err)
		}
	}
}

// microBatchReordered is MicroBatch with Enrich scheduled before Dedup: a
// change that would corrupt running batches.
func microBatchReordered(ctx workflow.Context, spec contract.Spec) (contract.Result, error) {
	ctx = workflow.WithActivityOptions(ctx, readOptions)
	var enr contract.Enrichment
	if err := workflow.ExecuteActivity(ctx, contract.ActivityEnrich, spec, contract.Decisions{}).Get(ctx, &enr); err != nil {
		return contract.Result{}, err
	}
	var d contract.Decisions
	err := workflow.ExecuteActivity(ctx, contract.ActivityDedup, spec).Get(ctx, &d)
	return contract.Result{}, err
}

func TestReplayCatchesNonDeterministicChange(t *testing.T) {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(microBatchReordered, workflow.RegisterOptions{Name: "MicroBatch"})
	err := r.ReplayWorkflowHistoryFromJSONFile(nil, recordedHistories[0])
	if err == nil {
		t.Fatal("replaying a batch history against reordered activities passed; non-determinism would go unnoticed")
	}
	t.Logf("caught as expected: %v", err)
}
