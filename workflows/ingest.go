package workflows

import (
	"fmt"
	"maps"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/searchattr"
)

// IngestInput is a partition's ingestion state: where it continues, and
// the dedup window bounds there. Continue-as-new carries it forward.
type IngestInput struct {
	Topic           string
	Partition       int
	Next            int64
	Window          contract.Window
	MaxRecords      int
	MaxBytes        int64
	AllowedLateness time.Duration
	// MaxWindowIDs bounds the partition's dedup window (contract.Spec).
	MaxWindowIDs int `json:",omitempty"`
	// PollFor is how long PlanBatch waits for new records when caught up.
	PollFor time.Duration
	// Linger is how long a batch short of MaxRecords waits to fill.
	Linger time.Duration
	// MaxBatchesPerRun continues-as-new after this many batches even if
	// Temporal does not suggest it yet (0: 500).
	MaxBatchesPerRun int

	// Running totals, kept across continue-as-new for status.
	BatchesDone int64
	RecordsDone int64
	// Paused is an operator's pause, kept across continue-as-new.
	Paused bool
	// Draining is an operator's drain not yet done, kept likewise.
	Draining bool `json:",omitempty"`
	// WriteMode is config.WriteModeStorageWrite for appends to COMMITTED
	// write streams (DESIGN §3.4); anything else writes with load jobs.
	// Each run creates its own streams: continue-as-new rotates them.
	WriteMode string
	// Pending is a batch that failed at Next and was not run again
	// before this run began (a continue-as-new or a stop came first). It
	// runs first, under the same ID and range: re-planning the range
	// could load its first records under a second batch ID.
	Pending *contract.Spec `json:",omitempty"`
	// Pool is the workflow ID of the worker pool that places the
	// partition on a worker (WorkerPool); empty: plans and batches run on
	// any worker of the partition's task queue.
	Pool string `json:",omitempty"`
	// Queue is the task queue of the worker the pool last assigned.
	Queue string `json:",omitempty"`
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
	// OpenTransactionAt is the first offset of the open transaction the
	// partition waits on, when State is StateOpenTransaction.
	OpenTransactionAt int64 `json:",omitempty"`
	// State is one of the State* names; MaxRecords and MaxBytes the batch
	// size the next plan uses; EventsPerSecond the rate over the last
	// minute of batches, LastBatchAt when the last one completed.
	State           string
	MaxRecords      int
	MaxBytes        int64
	EventsPerSecond float64
	LastBatchAt     time.Time
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
// run its MicroBatch (whose Load commits the offset), repeat; continue-as-new when the
// history grows. Cancelling it stops at the next batch boundary: a batch
// once started is finished and committed.
func PartitionIngest(ctx workflow.Context, in IngestInput) error {
	progress := &Progress{Topic: in.Topic, Partition: in.Partition, Next: in.Next, BatchesDone: in.BatchesDone, RecordsDone: in.RecordsDone, State: StateIngesting}
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) { return *progress, nil }); err != nil {
		return err
	}
	// Runs recorded before pipelining replay the loop they ran; every run
	// started since (including each continue-as-new) pipelines.
	if workflow.GetVersion(ctx, pipelinedVersion, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ingestSequential(ctx, in, progress)
	}
	return ingestPipelined(ctx, in, progress)
}

// pipelinedVersion marks runs that plan the next batch while the current
// one runs and commit offsets in the background.
const pipelinedVersion = "pipelined-plan-and-commit"

// commitInLoadVersion marks runs whose batches' Load commits the offset
// itself; runs recorded before it schedule CommitOffsets after each batch.
// A batch of such a run commits twice during an upgrade, which is
// harmless.
const commitInLoadVersion = "offset-commit-in-load"

func planOptions(ctx workflow.Context, in IngestInput, queue string) workflow.Context {
	opts := workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: in.PollFor + time.Minute,
		HeartbeatTimeout:    heartbeatTimeout, // it heartbeats while polling
		RetryPolicy:         retry,
	}
	if queue != "" {
		// The pool moves a plan whose worker left; this catches one it
		// never told about.
		opts.ScheduleToStartTimeout = time.Minute
	}
	return workflow.WithActivityOptions(ctx, opts)
}

// planCall is a PlanBatch in flight: where it runs and how to call it off.
type planCall struct {
	workflow.Future
	queue  string
	size   batchSize // the size its request carried
	cancel workflow.CancelFunc
}

func planOn(ctx workflow.Context, in IngestInput, next int64, queue string) *planCall {
	ctx, cancel := workflow.WithCancel(ctx)
	return &planCall{Future: planFrom(ctx, in, next, queue), queue: queue, size: sizeOf(in), cancel: cancel}
}

func planFrom(ctx workflow.Context, in IngestInput, next int64, queue string) workflow.Future {
	return workflow.ExecuteActivity(planOptions(ctx, in, queue), contract.ActivityPlanBatch, contract.PlanInput{
		Topic: in.Topic, Partition: in.Partition, Next: next,
		MaxRecords: in.MaxRecords, MaxBytes: in.MaxBytes, PollFor: in.PollFor,
		Linger: in.Linger, AllowedLateness: in.AllowedLateness,
	})
}

func continueAsNewDue(ctx workflow.Context, in IngestInput, batches int) bool {
	limit := in.MaxBatchesPerRun
	if limit <= 0 {
		limit = maxBatchesPerRun
	}
	info := workflow.GetInfo(ctx)
	return batches >= limit || info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= maxHistoryEvents
}

// ingestPipelined overlaps what a batch does not depend on with the batch
// before it: the plan of batch n+1 runs while batch n loads (its start is
// batch n's end, known up front). Each costs a few Temporal round trips
// per batch on the critical path otherwise. The offset is committed by
// the batch's Load; in runs recorded before that, batch n's CommitOffsets
// runs while batch n+1 does, in order, one at a time, the last awaited
// before continue-as-new or stopping.
func ingestPipelined(ctx workflow.Context, in IngestInput, progress *Progress) error {
	commitsInLoad := workflow.GetVersion(ctx, commitInLoadVersion, workflow.DefaultVersion, 1) == 1
	c := &control{paused: in.Paused, draining: in.Draining}
	progress.MaxRecords, progress.MaxBytes = in.MaxRecords, in.MaxBytes
	if p := in.Pending; p != nil && (p.Topic != in.Topic || p.Partition != in.Partition || p.Start != in.Next) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("pending batch %s does not start at partition %d's offset %d", p.ID(), in.Partition, in.Next), "BadPendingBatch", nil)
	}
	if err := setControlHandlers(ctx, &in, c, progress); err != nil {
		return err
	}
	// Batches and commits run on a context that ignores cancellation:
	// stopping never leaves a batch half done or its commit unsent.
	batchCtx, _ := workflow.NewDisconnectedContext(ctx)
	streams, err := createStreams(ctx, in)
	if err != nil {
		return err
	}
	pl := place(ctx, &in)
	var (
		batches  int
		planned  *planCall       // PlanBatch from in.Next, when already started
		commit   workflow.Future // CommitOffsets of the last batch, when not yet awaited (runs before commitInLoadVersion)
		failed   = in.Pending    // a batch to run again under the same ID
		failures int             // of failed in a row, for the wait before it runs again
		speed    rate
	)
	settle := func() error {
		if commit == nil {
			return nil
		}
		err := commit.Get(batchCtx, nil)
		commit = nil
		return err
	}
	// The rate counts from the run's start and through idle polls, so it
	// falls to zero when the partition is caught up.
	speed.add(workflow.Now(ctx), in.RecordsDone)
	for {
		// Here no batch is in flight: the place to stop, pause or drain.
		if ctx.Err() != nil {
			if err := settle(); err != nil {
				return err
			}
			pl.leave(ctx, in)
			return temporal.NewCanceledError("stopped at offset", in.Next)
		}
		if (c.paused || c.draining) && failed == nil {
			if err := settle(); err != nil {
				return err
			}
			if c.draining {
				progress.State, c.idle = StateDrained, true
				// Let the drain update answer before the run closes.
				_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
				pl.leave(ctx, in)
				return nil
			}
			progress.State, c.idle = StatePaused, true
			_ = workflow.Await(ctx, func() bool { return !c.paused || c.draining })
			continue // the top again: cancelled, draining or resumed
		}
		if continueAsNewDue(ctx, in, batches) {
			if err := settle(); err != nil {
				return err
			}
			// An update in flight would be lost with this run; it is
			// answered first, and the next run carries the pause or drain.
			c.handOver = true
			_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
			in.Paused, in.Draining, in.Pending = c.paused, c.draining, failed
			pl.keep(ctx, &in)
			return workflow.NewContinueAsNewError(ctx, PartitionIngest, in)
		}
		spec := failed
		if spec == nil {
			if planned == nil {
				planned = planOn(ctx, in, in.Next, pl.queue)
			}
			call := planned
			if workflow.Await(ctx, func() bool { return call.IsReady() || pl.moved(call.queue) }) == nil && !call.IsReady() {
				call.cancel() // its worker left the pool: plan again on the new one
			}
			var plan contract.PlanResult
			err := call.Get(ctx, &plan)
			planned = nil
			if err == nil && call.size != sizeOf(in) {
				continue // planned before a set-batch: plan again at the new size
			}
			if err != nil {
				// Cancelled by a stop or a move; timed out waiting for a
				// worker that left.
				if temporal.IsCanceledError(err) || temporal.IsTimeoutError(err) {
					continue
				}
				// Only errors retrying cannot fix reach here; the
				// last batch's commit still goes out.
				if cerr := settle(); cerr != nil {
					return cerr
				}
				return err
			}
			progress.HighWatermark = plan.HighWatermark
			progress.CaughtUp = plan.End == in.Next
			progress.OpenTransactionAt = 0
			if progress.CaughtUp {
				progress.State = StateCaughtUp
				if plan.Stable == in.Next && plan.HighWatermark > plan.Stable {
					progress.State, progress.OpenTransactionAt = StateOpenTransaction, plan.Stable
				}
				progress.EventsPerSecond = speed.add(workflow.Now(ctx), in.RecordsDone)
				continue
			}
			spec = &contract.Spec{
				Range:           contract.Range{Topic: in.Topic, Partition: in.Partition, Start: in.Next, End: plan.End},
				Window:          in.Window,
				AllowedLateness: in.AllowedLateness,
				MaxWindowIDs:    in.MaxWindowIDs,
				Streams:         maps.Clone(streams),
			}
		}
		failed = nil
		progress.State = StateIngesting
		if c.draining {
			progress.State = StateDraining
		} else if c.paused {
			progress.State = StatePausing
		}
		queue := pl.queue
		child := startBatch(batchCtx, *spec, queue)
		if !c.paused && !c.draining {
			planned = planOn(ctx, in, spec.End, pl.queue)
		}
		var res contract.Result
		_ = workflow.Await(batchCtx, func() bool { return child.IsReady() || pl.moved(queue) })
		if !child.IsReady() {
			// Its worker left the pool: the batch is ended there and run
			// again, under the same ID, on the partition's new worker.
			if err := terminateBatch(batchCtx, spec.ID()); err != nil {
				return err
			}
			if err := child.Get(batchCtx, &res); err != nil {
				progress.LastError = "moved off a worker that left the pool: " + err.Error()
				if planned != nil {
					planned.cancel()
				}
				failed, planned = spec, nil
				continue
			}
		}
		if err := child.Get(batchCtx, &res); err != nil {
			progress.LastError = err.Error()
			progress.State = StateBackoff
			// The range stays ours: wait, then run the same batch ID
			// again (its failed run allows that; its loads are
			// idempotent). Never re-plan it: a different range would
			// load its first records under a second batch ID. A pause
			// or drain waits for it too, for the same reason.
			failed, planned = spec, nil
			failures++
			batches++                                          // a failed run adds to the history as a loaded one does
			_ = workflow.Sleep(ctx, failedBatchWait(failures)) // a stop ends it early; the loop's top settles and returns
			continue
		}
		failures = 0
		if !commitsInLoad {
			if err := settle(); err != nil {
				return err
			}
			commit = commitOffset(batchCtx, *spec)
		}
		batches++
		advance(&in, progress, spec.Range, res)
		//workflowcheck:ignore each table on its own: order does not matter
		for table, n := range res.Totals.Rows {
			st := streams[table]
			if spec.Streams[table].Name != st.Name {
				continue // a batch of an earlier run appended to that run's stream
			}
			st.Offset += int64(n)
			streams[table] = st
		}
		progress.LastBatchAt = workflow.Now(ctx)
		progress.EventsPerSecond = speed.add(progress.LastBatchAt, in.RecordsDone)
	}
}

// failedBatchWait is how long a partition waits before it runs a failed
// batch again, the n-th time in a row: a minute, doubling to ten. Load
// fails a batch for causes that take minutes to pass (a table's daily
// load-job quota refills over hours; BigQuery advises ten minutes or
// more), and every failed job counts against that quota.
func failedBatchWait(n int) time.Duration {
	return min(time.Minute<<min(n-1, 4), 10*time.Minute)
}

// createStreams creates the run's write streams in storagewrite mode, one
// per table at offset 0; nil in load mode.
func createStreams(ctx workflow.Context, in IngestInput) (map[string]contract.StreamOffset, error) {
	if in.WriteMode != config.WriteModeStorageWrite {
		return nil, nil
	}
	opts := workflow.ActivityOptions{StartToCloseTimeout: time.Minute, RetryPolicy: retry, Summary: "create a write stream per table"}
	var names map[string]string
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), contract.ActivityCreateStreams, contract.LoadOrder).Get(ctx, &names); err != nil {
		return nil, err
	}
	streams := make(map[string]contract.StreamOffset, len(names))
	//workflowcheck:ignore builds a map: order does not matter
	for table, name := range names {
		streams[table] = contract.StreamOffset{Name: name}
	}
	return streams, nil
}

// batchSize is how much a plan may take: what set-batch changes.
type batchSize struct {
	records int
	bytes   int64
}

func sizeOf(in IngestInput) batchSize { return batchSize{in.MaxRecords, in.MaxBytes} }

// advance moves the partition past a completed batch.
func advance(in *IngestInput, progress *Progress, r contract.Range, res contract.Result) {
	in.Next, in.Window = r.End, res.Next
	in.BatchesDone++
	in.RecordsDone += r.End - r.Start
	progress.Next, progress.BatchesDone, progress.RecordsDone = in.Next, in.BatchesDone, in.RecordsDone
	progress.LastBatch, progress.LastError = res.BatchID, ""
}

// ingestSequential is the loop of runs recorded before pipelining: plan,
// batch, commit, one after another. Kept so those histories replay; remove
// it once no such run can still be open (they continue-as-new within 500
// batches).
func ingestSequential(ctx workflow.Context, in IngestInput, progress *Progress) error {
	batches := 0
	for {
		if ctx.Err() != nil {
			return temporal.NewCanceledError("stopped at offset", in.Next)
		}
		if continueAsNewDue(ctx, in, batches) {
			return workflow.NewContinueAsNewError(ctx, PartitionIngest, in)
		}
		var plan contract.PlanResult
		err := planFrom(ctx, in, in.Next, "").Get(ctx, &plan)
		if err != nil {
			if temporal.IsCanceledError(err) {
				continue
			}
			return err
		}
		progress.HighWatermark = plan.HighWatermark
		progress.CaughtUp = plan.End == in.Next
		if progress.CaughtUp {
			continue
		}
		spec := contract.Spec{
			Range:           contract.Range{Topic: in.Topic, Partition: in.Partition, Start: in.Next, End: plan.End},
			Window:          in.Window,
			AllowedLateness: in.AllowedLateness,
		}
		res, err := runBatch(ctx, spec)
		if err != nil {
			progress.LastError = err.Error()
			if sleepErr := workflow.Sleep(ctx, time.Minute); sleepErr != nil {
				return temporal.NewCanceledError("stopped at offset", in.Next)
			}
			continue
		}
		batches++
		advance(&in, progress, spec.Range, res)
	}
}

// runBatch runs one MicroBatch and commits its offset, on a context that
// ignores cancellation (ingestSequential).
func runBatch(ctx workflow.Context, spec contract.Spec) (contract.Result, error) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	var res contract.Result
	if err := startBatch(ctx, spec, "").Get(ctx, &res); err != nil {
		return contract.Result{}, err
	}
	return res, commitOffset(ctx, spec).Get(ctx, nil)
}

const batchTaskTimeout = 5 * time.Second

// startBatch starts the batch's MicroBatch child workflow on queue (""
// for the partition's own).
func startBatch(ctx workflow.Context, spec contract.Spec, queue string) workflow.ChildWorkflowFuture {
	// A replayed start is not compared by its input, so runs recorded
	// with the flag unset replay alike.
	spec.DecideLocally = true
	childCtx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: spec.ID(),
		TaskQueue:  queue,
		// A completed batch ID can never run again; a failed one may be
		// retried, which is safe because its load job IDs are the same.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		// Dedup and Enrich run inside the batch's workflow task; if its
		// worker dies, another takes the task after this long (the
		// default is 10 s). The SDK keeps a live one going by heartbeating
		// it at 80 %.
		WorkflowTaskTimeout: batchTaskTimeout,
		// If the partition's workflow is terminated, its batch still
		// finishes rather than stopping between two tables.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		StaticSummary:     batchSummary(spec),
		StaticDetails:     batchDetails(spec),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			searchattr.KafkaTopic.ValueSet(spec.Topic),
			searchattr.KafkaPartition.ValueSet(int64(spec.Partition)),
			searchattr.BatchStartOffset.ValueSet(spec.Start),
			searchattr.BatchEndOffset.ValueSet(spec.End),
		),
	})
	return workflow.ExecuteChildWorkflow(childCtx, MicroBatch, spec)
}

// commitOffset commits the batch's end as the group's offset.
func commitOffset(ctx workflow.Context, spec contract.Spec) workflow.Future {
	commitCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry})
	return workflow.ExecuteActivity(commitCtx, contract.ActivityCommitOffsets, contract.CommitInput{Topic: spec.Topic, Partition: spec.Partition, Offset: spec.End})
}

// terminateBatch ends a batch whose worker left the pool: its workflow
// tasks would wait on that worker's queue for ever. Whatever it wrote is
// written again, idempotently, by the run that replaces it.
func terminateBatch(ctx workflow.Context, id string) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry, Summary: "end " + id + " on a worker that left"})
	return workflow.ExecuteActivity(actx, contract.ActivityTerminateBatch, id).Get(ctx, nil)
}
