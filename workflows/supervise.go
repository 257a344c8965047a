package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// TopicSupervisor keeps one PartitionIngest per partition of a topic:
// partitions added to the topic while it runs are started within Every,
// with no operator action. It starts only partitions that never had a
// workflow, so a partition an operator drained or stopped stays so.
// Cancelling it (starter stop) ends it.
func TopicSupervisor(ctx workflow.Context, in contract.SuperviseInput) error {
	every := in.Every
	if every <= 0 {
		every = contract.DefaultSuperviseEvery
	}
	progress := &contract.SupervisorProgress{Topic: in.Topic, Partitions: in.Partitions}
	if err := workflow.SetQueryHandler(ctx, contract.ProgressQuery, func() (contract.SupervisorProgress, error) { return *progress, nil }); err != nil {
		return err
	}
	// starting is set while new partitions are being started: set-batch
	// waits it out, so that a partition is either started before the new
	// size (and running, where set-batch reaches it) or after it.
	starting := false
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.SetBatchUpdate, func(ctx workflow.Context, s contract.SetBatchInput) (contract.TopicBatch, error) {
		if err := workflow.Await(ctx, func() bool { return !starting }); err != nil {
			return contract.TopicBatch{}, err
		}
		in.Template.MaxRecords = s.MaxRecords
		if s.MaxBytes > 0 {
			in.Template.MaxBytes = s.MaxBytes
		}
		return contract.TopicBatch{Partitions: in.Partitions, MaxRecords: in.Template.MaxRecords, MaxBytes: in.Template.MaxBytes, Every: every}, nil
	}, workflow.UpdateHandlerOptions{Validator: validateSetBatch}); err != nil {
		return fmt.Errorf("register update %s: %w", contract.SetBatchUpdate, err)
	}
	actCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, RetryPolicy: retry, Summary: "look for partitions added to " + in.Topic,
	})
	for checks := 0; ; checks++ {
		var firsts []int64
		if err := workflow.ExecuteActivity(actCtx, contract.ActivityNewPartitions, contract.PartitionsInput{Topic: in.Topic, From: in.Partitions}).Get(ctx, &firsts); err != nil {
			if ctx.Err() != nil {
				return temporal.NewCanceledError("stopped")
			}
			return err
		}
		before := in.Partitions
		if len(firsts) > 0 && in.LoadJobBudget > 0 {
			// More partitions share the tables' load jobs: each waits
			// longer between batches, new ones from their first.
			in.Template.MinBatchInterval = contract.BatchInterval(before+len(firsts), in.LoadJobBudget)
		}
		starting = len(firsts) > 0
		for i, first := range firsts {
			p := before + i
			if err := startPartition(ctx, in, p, first); err != nil {
				return err
			}
			progress.Started = append(progress.Started, p)
		}
		in.Partitions += len(firsts)
		starting = false
		if len(firsts) > 0 && in.LoadJobBudget > 0 {
			respace(ctx, in.Topic, before, contract.Budget{Partitions: in.Partitions, MinBatchInterval: in.Template.MinBatchInterval})
		}
		progress.Partitions, progress.LastChecked = in.Partitions, workflow.Now(ctx)
		if err := workflow.Sleep(ctx, every); err != nil {
			return temporal.NewCanceledError("stopped")
		}
		if info := workflow.GetInfo(ctx); checks >= 1000 || info.GetContinueAsNewSuggested() {
			return workflow.NewContinueAsNewError(ctx, TopicSupervisor, in)
		}
	}
}

// respace tells the topic's first n partitions their new batch spacing.
// A partition that ended (stopped, drained) misses it; `starter start`
// spaces it for the count then.
func respace(ctx workflow.Context, topic string, n int, b contract.Budget) {
	sent := make([]workflow.Future, n)
	for p := range n {
		sent[p] = workflow.SignalExternalWorkflow(ctx, contract.IngestID(topic, p), "", contract.BudgetSignal, b)
	}
	for _, f := range sent {
		_ = f.Get(ctx, nil)
	}
}

// startPartition starts partition p's PartitionIngest from first, its
// log's start; one that has, or had, a workflow is left as it is.
func startPartition(ctx workflow.Context, in contract.SuperviseInput, p int, first int64) error {
	ingest := in.Template
	ingest.Topic, ingest.Partition, ingest.Next, ingest.Window = in.Topic, p, first, contract.Window{Start: first}
	ingest.BatchesDone, ingest.RecordsDone, ingest.Paused, ingest.Pending = 0, 0, false, nil
	childCtx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            contract.IngestID(in.Topic, p),
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// The partition outlives this run: the supervisor continues as
		// new, and stopping it must not stop ingestion mid-batch.
		ParentClosePolicy:   enumspb.PARENT_CLOSE_POLICY_ABANDON,
		StaticSummary:       fmt.Sprintf("ingest %s partition %d (added to the running topic)", in.Topic, p),
		WorkflowTaskTimeout: contract.TaskTimeout,
	})
	err := workflow.ExecuteChildWorkflow(childCtx, PartitionIngest, ingest).GetChildWorkflowExecution().Get(ctx, nil)
	if err != nil && !errors.As(err, new(*temporal.ChildWorkflowExecutionAlreadyStartedError)) {
		return fmt.Errorf("start partition %d of %s: %w", p, in.Topic, err)
	}
	return nil
}
