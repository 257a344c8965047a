package workflows

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/activities"
	"github.com/paystream/paystream/internal/batch"
	"github.com/paystream/paystream/internal/searchattr"
)

// IngestInput is a partition's ingestion state: where it continues, and
// the dedup window bounds there. Continue-as-new carries it forward.
type IngestInput struct {
	Topic           string
	Partition       int
	Next            int64
	Window          batch.Window
	MaxRecords      int
	MaxBytes        int64
	AllowedLateness time.Duration
	// PollFor is how long PlanBatch waits for new records when caught up.
	PollFor time.Duration
	// MaxBatchesPerRun continues-as-new after this many batches even if
	// Temporal does not suggest it yet (0: 500).
	MaxBatchesPerRun int

	// Running totals, kept across continue-as-new for status.
	BatchesDone int64
	RecordsDone int64
}

// Progress is what the "progress" query answers.
type Progress struct {
	Topic         string
	Partition     int
	Next          int64 // next offset to ingest = end of the last loaded batch
	HighWatermark int64 // the log's end when last planned
	BatchesDone   int64
	RecordsDone   int64
	LastBatch     string
	LastError     string
	CaughtUp      bool
}

// ProgressQuery is the name of PartitionIngest's query.
const ProgressQuery = "progress"

// One run's history is kept far below Temporal's limits (51,200 events,
// 50 MB) even before the server suggests continue-as-new: a batch adds
// about 20 events, an empty poll while caught up about 6.
const (
	maxBatchesPerRun = 500
	maxHistoryEvents = 10000
)

// PartitionIngest ingests one partition forever: plan the next range,
// run its MicroBatch, commit the offset, repeat; continue-as-new when the
// history grows. Cancelling it stops at the next batch boundary: a batch
// once started is finished and committed.
func PartitionIngest(ctx workflow.Context, in IngestInput) error {
	progress := Progress{Topic: in.Topic, Partition: in.Partition, Next: in.Next, BatchesDone: in.BatchesDone, RecordsDone: in.RecordsDone}
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) { return progress, nil }); err != nil {
		return err
	}
	planCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: in.PollFor + time.Minute,
		HeartbeatTimeout:    heartbeatTimeout, // it heartbeats while polling
		RetryPolicy:         retry,
	})
	batches := 0
	for {
		if ctx.Err() != nil {
			return temporal.NewCanceledError("stopped at offset", in.Next)
		}
		limit := in.MaxBatchesPerRun
		if limit <= 0 {
			limit = maxBatchesPerRun
		}
		info := workflow.GetInfo(ctx)
		if batches >= limit || info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= maxHistoryEvents {
			return workflow.NewContinueAsNewError(ctx, PartitionIngest, in)
		}
		var plan activities.PlanResult
		err := workflow.ExecuteActivity(planCtx, a.PlanBatch, activities.PlanInput{
			Topic: in.Topic, Partition: in.Partition, Next: in.Next,
			MaxRecords: in.MaxRecords, MaxBytes: in.MaxBytes, PollFor: in.PollFor,
		}).Get(ctx, &plan)
		if err != nil {
			if temporal.IsCanceledError(err) {
				continue
			}
			return err // only errors retrying cannot fix reach here
		}
		progress.HighWatermark = plan.HighWatermark
		progress.CaughtUp = plan.End == in.Next
		if progress.CaughtUp {
			continue
		}

		spec := batch.Spec{
			Range:           batch.Range{Topic: in.Topic, Partition: in.Partition, Start: in.Next, End: plan.End},
			Window:          in.Window,
			AllowedLateness: in.AllowedLateness,
		}
		res, err := runBatch(ctx, spec)
		if err != nil {
			progress.LastError = err.Error()
			// The range stays ours: wait, then run the same batch ID again
			// (its failed run allows that; its loads are idempotent).
			if sleepErr := workflow.Sleep(ctx, time.Minute); sleepErr != nil {
				return temporal.NewCanceledError("stopped at offset", in.Next)
			}
			continue
		}
		batches++
		in.Next, in.Window = spec.End, res.Next
		in.BatchesDone++
		in.RecordsDone += spec.End - spec.Start
		progress.Next, progress.BatchesDone, progress.RecordsDone = in.Next, in.BatchesDone, in.RecordsDone
		progress.LastBatch, progress.LastError = res.BatchID, ""
	}
}

// runBatch runs one MicroBatch and commits its offset, on a context that
// ignores cancellation: stopping ingestion never leaves a batch half done.
func runBatch(ctx workflow.Context, spec batch.Spec) (batch.Result, error) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	childCtx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: spec.ID(),
		// A completed batch ID can never run again; a failed one may be
		// retried, which is safe because its load job IDs are the same.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		// If the partition's workflow is terminated, its batch still
		// finishes rather than stopping between two tables.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			searchattr.KafkaTopic.ValueSet(spec.Topic),
			searchattr.KafkaPartition.ValueSet(int64(spec.Partition)),
			searchattr.BatchStartOffset.ValueSet(spec.Start),
			searchattr.BatchEndOffset.ValueSet(spec.End),
		),
	})
	var res batch.Result
	if err := workflow.ExecuteChildWorkflow(childCtx, MicroBatch, spec).Get(ctx, &res); err != nil {
		return batch.Result{}, err
	}
	commitCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry})
	err := workflow.ExecuteActivity(commitCtx, a.CommitOffsets, activities.CommitInput{Topic: spec.Topic, Partition: spec.Partition, Offset: spec.End}).Get(ctx, nil)
	return res, err
}
