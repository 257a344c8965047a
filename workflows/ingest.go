package workflows

import (
	"fmt"
	"maps"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/searchattr"
)

// One run's history is kept far below Temporal's limits (51,200 events,
// 50 MB) even before the server suggests continue-as-new: a batch adds
// about 20 events, an empty poll while caught up about 6.
const (
	maxBatchesPerRun = 500
	maxHistoryEvents = 10000
)

// PartitionIngest ingests one partition forever: plan the next range, run
// its MicroBatch (whose Load commits the offset), repeat; continue-as-new
// when the history grows. Cancelling it (starter stop) stops it as a drain
// does: at the next batch boundary, and only once no failed batch waits to
// run again, so a stop never forgets a batch whose tables may hold part of
// its rows.
func PartitionIngest(ctx workflow.Context, in contract.IngestInput) error {
	p, err := newPartition(ctx, in)
	if err != nil {
		return err
	}
	return p.run()
}

// partition is one run of PartitionIngest: the partition's state,
// contract.IngestInput, which the run changes in place and
// continue-as-new carries whole to the next run, and what the run holds
// besides. Only run's goroutine changes it, except the control updates
// and the pool's answers, which Temporal runs between its steps.
type partition struct {
	ctx workflow.Context // ended by a stop
	// batchCtx ignores a stop: a batch once started is finished.
	batchCtx workflow.Context
	in       contract.IngestInput
	status   status
	control  control
	place    *placement
	streams  map[string]contract.StreamOffset // storagewrite mode: each table's stream and next offset
	planned  *planCall                        // the plan from in.Next, when already started
	batches  int                              // run in this run, failed ones too: history grows alike
	speed    rate
	budget   workflow.ReceiveChannel // the supervisor's new spacing when partitions are added
}

func newPartition(ctx workflow.Context, in contract.IngestInput) (*partition, error) {
	if f := in.Pending; f != nil && (f.Topic != in.Topic || f.Partition != in.Partition || f.Start != in.Next) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("pending batch %s does not start at partition %d's offset %d", f.ID(), in.Partition, in.Next), "BadPendingBatch", nil)
	}
	p := &partition{ctx: ctx, in: in, status: status{state: contract.StateIngesting}}
	if err := workflow.SetQueryHandler(ctx, contract.ProgressQuery, func() (contract.Progress, error) {
		return p.progress(), nil
	}); err != nil {
		return nil, err
	}
	if err := p.setControlHandlers(ctx); err != nil {
		return nil, err
	}
	p.batchCtx, _ = workflow.NewDisconnectedContext(ctx)
	var err error
	if p.streams, err = createStreams(ctx, in); err != nil {
		return nil, err
	}
	p.place = place(ctx, &p.in)
	p.budget = workflow.GetSignalChannel(ctx, contract.BudgetSignal)
	workflow.Go(ctx, func(ctx workflow.Context) {
		var b contract.Budget
		for p.budget.Receive(ctx, &b) {
			p.respace(b)
		}
	})
	// The rate counts from the run's start and through idle polls, so it
	// falls to zero when the partition is caught up.
	p.speed.add(workflow.Now(ctx), in.RecordsDone)
	return p, nil
}

// run plans and runs batches until a stop, a drain or continue-as-new.
// The plan of batch n+1 runs while batch n loads: its start is known.
func (p *partition) run() error {
	for {
		if end, err := p.atBoundary(); end {
			return err
		}
		spec, err := p.next()
		if err != nil {
			return err
		}
		if spec != nil {
			if err := p.runBatch(*spec); err != nil {
				return err
			}
		}
	}
}

// atBoundary acts on a stop, pause, drain or due continue-as-new, where no
// batch is in flight; end tells the run to return err.
func (p *partition) atBoundary() (end bool, err error) {
	in, c := &p.in, &p.control
	for {
		if p.ctx.Err() != nil && in.Pending == nil {
			p.place.leave(p.ctx, p.in)
			return true, temporal.NewCanceledError("stopped at offset", in.Next)
		}
		// A failed batch runs before any pause or drain takes effect: its
		// range is never given up.
		if (in.Paused || in.Draining) && in.Pending == nil {
			if in.Draining {
				p.status.state, c.idle = contract.StateDrained, true
				// Let the drain update answer before the run closes.
				_ = workflow.Await(p.ctx, func() bool { return workflow.AllHandlersFinished(p.ctx) })
				p.place.leave(p.ctx, p.in)
				return true, nil
			}
			p.status.state, c.idle = contract.StatePaused, true
			_ = workflow.Await(p.ctx, func() bool { return !in.Paused || in.Draining })
			continue // cancelled, draining or resumed
		}
		if continueAsNewDue(p.ctx, p.in, p.batches, p.ctx.Err() != nil) {
			return true, p.continueAsNew()
		}
		return false, nil
	}
}

// continueAsNew hands the partition's whole state to a new run. An update
// in flight would be lost with this run: it is answered first, and the
// next run carries the pause or drain.
func (p *partition) continueAsNew() error {
	p.control.handOver = true
	_ = workflow.Await(p.ctx, func() bool { return workflow.AllHandlersFinished(p.ctx) })
	// A stop asked of this run cannot reach the next: it drains instead.
	if p.ctx.Err() != nil {
		p.in.Draining = true
	}
	var b contract.Budget
	for p.budget.ReceiveAsync(&b) { // a spacing sent as this run ends
		p.respace(b)
	}
	p.place.settle(p.ctx) // answers sent as this run ends
	return workflow.NewContinueAsNewError(p.ctx, PartitionIngest, p.in)
}

// next is the batch to run: the failed one again, or the next plan's; nil
// when there is none yet (caught up, or a plan to make again).
func (p *partition) next() (*contract.Spec, error) {
	p.place.renew(p.ctx)
	if spec := p.in.Pending; spec != nil {
		p.in.Pending = nil
		return spec, nil
	}
	if p.planned == nil {
		if !p.waitForBudget() {
			return nil, nil // a stop, pause, drain or new spacing came first
		}
		p.planned = planOn(p.ctx, p.planInput(), p.in.Next, p.place.queue(), sizeOf(p.in))
	}
	call := p.planned
	if workflow.Await(p.ctx, func() bool { return call.IsReady() || p.place.moved(call.queue) }) == nil && !call.IsReady() {
		call.cancel() // its worker left the pool: plan again on the new one
	}
	var plan contract.PlanResult
	err := call.Get(p.ctx, &plan)
	p.planned = nil
	p.place.planFailed(p.ctx, call.queue, err)
	switch {
	case err == nil && call.size != sizeOf(p.in):
		return nil, nil // planned before a set-batch: plan again at the new size
	case temporal.IsCanceledError(err) || temporal.IsTimeoutError(err):
		return nil, nil // a stop, a move, or a worker that left before it started
	case err != nil:
		return nil, err // only errors retrying cannot fix reach here
	}
	// The registry's verdicts the plan recorded are the batch's, and the
	// partition's from now on.
	p.in.Schemas.Merge(plan.Schemas)
	st := &p.status
	st.highWatermark = plan.HighWatermark
	st.caughtUp = plan.End == p.in.Next
	st.openTransactionAt = 0
	if st.caughtUp {
		st.state = contract.StateCaughtUp
		if plan.Stable == p.in.Next && plan.HighWatermark > plan.Stable {
			st.state, st.openTransactionAt = contract.StateOpenTransaction, plan.Stable
		}
		st.eventsPerSecond = p.speed.add(workflow.Now(p.ctx), p.in.RecordsDone)
		return nil, nil
	}
	return &contract.Spec{
		Range:           contract.Range{Topic: p.in.Topic, Partition: p.in.Partition, Start: p.in.Next, End: plan.End},
		Window:          p.in.Window,
		AllowedLateness: p.in.AllowedLateness,
		MaxWindowIDs:    p.in.MaxWindowIDs,
		Streams:         maps.Clone(p.streams),
		// The counts are in the batch's result and the ledger either way.
		NoCountAttributes: !p.in.SearchableCounts,
		FraudRules:        contract.FraudRules,
		Schemas:           p.in.Schemas.Clone(),
	}, nil
}

// waitForBudget waits until the next batch the load-job budget allows,
// or until a stop, pause or drain asks for the loop's boundary; it says
// whether the wait is over.
func (p *partition) waitForBudget() bool {
	wait := p.in.NextBatchAt.Sub(workflow.Now(p.ctx))
	if p.in.MinBatchInterval <= 0 || wait <= 0 {
		return true
	}
	p.status.state = contract.StateBudget
	in, at := &p.in, p.in.NextBatchAt
	interrupted, _ := workflow.AwaitWithTimeout(p.ctx, wait, func() bool { return in.Paused || in.Draining || !in.NextBatchAt.Equal(at) })
	return !interrupted && p.ctx.Err() == nil
}

// respace applies a new spacing of the partition's batches (BudgetSignal):
// the next batch is due the new interval after the last one, and a wait
// under way ends early or goes on (waitForBudget).
func (p *partition) respace(b contract.Budget) {
	if !p.in.NextBatchAt.IsZero() {
		p.in.NextBatchAt = p.in.NextBatchAt.Add(b.MinBatchInterval - p.in.MinBatchInterval)
	}
	p.in.MinBatchInterval = b.MinBatchInterval
}

// planInput is what a plan asks for: under a load-job budget, what
// accumulated while the partition waited, up to MaxBatchRecords and the
// bytes in proportion up to MaxBatchBytes, so that a faster stream makes
// larger batches rather than more of them.
func (p *partition) planInput() contract.IngestInput {
	in := p.in
	if in.MinBatchInterval > 0 && in.MaxRecords > 0 && in.MaxRecords < contract.MaxBatchRecords {
		// Bounded before it is multiplied, so that it cannot overflow.
		in.MaxBytes = min(min(in.MaxBytes, contract.MaxBatchBytes)*int64(contract.MaxBatchRecords)/int64(in.MaxRecords), contract.MaxBatchBytes)
		in.MaxRecords = contract.MaxBatchRecords
	}
	return in
}

// runBatch runs spec's MicroBatch to its end, planning the next batch
// meanwhile. A failed batch is kept to run again, after a wait, under the
// same ID: re-planning its range could load its first records under a
// second batch ID.
func (p *partition) runBatch(spec contract.Spec) error {
	in, st := &p.in, &p.status
	switch {
	case in.Draining:
		st.state = contract.StateDraining
	case in.Paused:
		st.state = contract.StatePausing
	default:
		st.state = contract.StateIngesting
	}
	queue := p.place.queue()
	child := startBatch(p.batchCtx, spec, queue)
	if in.MinBatchInterval > 0 {
		in.NextBatchAt = workflow.Now(p.ctx).Add(in.MinBatchInterval)
	} else if !in.Paused && !in.Draining && p.ctx.Err() == nil {
		// The next plan overlaps this batch; under a budget it waits
		// instead (next).
		p.planned = planOn(p.ctx, p.in, spec.End, queue, sizeOf(p.in))
	}
	p.place.wait(p.batchCtx, queue, child.IsReady)
	moved := !child.IsReady()
	if moved {
		// Its worker left the pool: the batch is ended there and run
		// again, under the same ID, on the partition's new worker. Not
		// before the server has started it: a terminate that comes first
		// finds no such workflow, and the batch then waits for good on a
		// queue no worker polls.
		_ = child.GetChildWorkflowExecution().Get(p.batchCtx, nil) // an error is child.Get's
		if err := terminateBatch(p.batchCtx, spec.ID()); err != nil {
			return err
		}
	}
	var res contract.Result
	if err := child.Get(p.batchCtx, &res); err != nil {
		if p.planned != nil {
			p.planned.cancel()
		}
		in.Pending, p.planned = &spec, nil
		if moved {
			st.lastError = "moved off a worker that left the pool: " + err.Error()
			return nil
		}
		st.lastError, st.state = err.Error(), contract.StateBackoff
		in.Failures++
		p.batches++
		// Not ended by a stop: the batch runs again before the run ends.
		_ = workflow.Sleep(p.batchCtx, failedBatchWait(in.Failures))
		return nil
	}
	in.Failures = 0
	p.batches++
	p.advance(spec, res)
	return nil
}

// advance moves the partition past a completed batch.
func (p *partition) advance(spec contract.Spec, res contract.Result) {
	// A batch run at another lateness (one pending from before a start
	// that changed it) hands on its watermark as a floor, as start does.
	p.in.Next, p.in.Window = spec.End, res.Next.KeepWatermark(spec.AllowedLateness, p.in.AllowedLateness, spec.End)
	p.in.Schemas.Merge(res.Schemas)
	p.in.Schemas.Prune(p.in.Window.Start)
	p.in.BatchesDone++
	p.in.RecordsDone += spec.End - spec.Start
	//workflowcheck:ignore each table on its own: order does not matter
	for table, n := range res.Totals.Rows {
		st := p.streams[table]
		if spec.Streams[table].Name != st.Name {
			continue // a batch of an earlier run appended to that run's stream
		}
		st.Offset += int64(n)
		p.streams[table] = st
	}
	st := &p.status
	st.lastBatch, st.lastError = res.BatchID, ""
	st.lastBatchAt = workflow.Now(p.ctx)
	st.eventsPerSecond = p.speed.add(st.lastBatchAt, p.in.RecordsDone)
}

func planOptions(ctx workflow.Context, in contract.IngestInput, queue string) workflow.Context {
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

// planOn starts a plan from next on queue; size is the partition's batch
// size it was asked at, to notice a set-batch that came meanwhile.
func planOn(ctx workflow.Context, in contract.IngestInput, next int64, queue string, size batchSize) *planCall {
	ctx, cancel := workflow.WithCancel(ctx)
	return &planCall{Future: planFrom(ctx, in, next, queue), queue: queue, size: size, cancel: cancel}
}

func planFrom(ctx workflow.Context, in contract.IngestInput, next int64, queue string) workflow.Future {
	return workflow.ExecuteActivity(planOptions(ctx, in, queue), contract.ActivityPlanBatch, contract.PlanInput{
		Topic: in.Topic, Partition: in.Partition, Next: next,
		MaxRecords: in.MaxRecords, MaxBytes: in.MaxBytes, PollFor: in.PollFor,
		Linger: in.Linger, AllowedLateness: in.AllowedLateness, Schemas: in.Schemas.Clone(),
	})
}

func continueAsNewDue(ctx workflow.Context, in contract.IngestInput, batches int, stopping bool) bool {
	info := workflow.GetInfo(ctx)
	if stopping {
		// A stop stays with the run that was asked: handed on it becomes
		// a drain, and start, which waits for runs asked to stop, would
		// take the next run for a running partition that then ends. Only
		// a history at its bound hands it on.
		return info.GetCurrentHistoryLength() >= maxHistoryEvents
	}
	limit := in.MaxBatchesPerRun
	if limit <= 0 {
		limit = maxBatchesPerRun
	}
	return batches >= limit || info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= maxHistoryEvents
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
func createStreams(ctx workflow.Context, in contract.IngestInput) (map[string]contract.StreamOffset, error) {
	if in.WriteMode != contract.WriteModeStorageWrite {
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

func sizeOf(in contract.IngestInput) batchSize { return batchSize{in.MaxRecords, in.MaxBytes} }

const batchTaskTimeout = 5 * time.Second

// startBatch starts the batch's MicroBatch child workflow on queue (""
// for the partition's own).
func startBatch(ctx workflow.Context, spec contract.Spec, queue string) workflow.ChildWorkflowFuture {
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

// terminateBatch ends a batch whose worker left the pool: its workflow
// tasks would wait on that worker's queue for ever. Whatever it wrote is
// written again, idempotently, by the run that replaces it.
func terminateBatch(ctx workflow.Context, id string) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry, Summary: "end " + id + " on a worker that left"})
	return workflow.ExecuteActivity(actx, contract.ActivityTerminateBatch, id).Get(ctx, nil)
}
