package workflows

import (
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// placement is where a partition's plans and batches run: the queue of the
// worker its pool assigned it (see WorkerPool), or the partition's own task
// queue when it has no pool or no answer from it yet. The pool's last
// answer is kept in the partition's state (at); the rest lasts a run.
type placement struct {
	at *contract.Placement
	// lost are queues whose worker left the pool, or stopped taking
	// tasks: a plan or batch scheduled there never starts, so the
	// partition moves it.
	lost map[string]bool
	// poolID is the pool's workflow ID ("" without a pool); asked is the
	// last announcement to it, sent at askedAt.
	poolID  string
	asked   workflow.Future
	askedAt time.Time
	// watch is the timer wait checks a long batch's worker by: one
	// timer for the batches of watchEvery, not one a batch, since each
	// timer is a billed Temporal action.
	watch workflow.Future
}

// assignmentWait bounds how long a partition's first run waits for the
// pool's answer before it plans on its own task queue.
const assignmentWait = 10 * time.Second

const (
	// announceEvery is how often a partition tells its pool it is there:
	// a pool run started afresh (terminated, reset) knows no partition
	// until then, and cannot move one off a worker that dies.
	announceEvery = time.Minute
	// announceRetry is how soon an announcement the pool did not take (it
	// was not running) is sent again.
	announceRetry = 10 * time.Second
	// watchEvery is how long a batch runs on a worker's queue before the
	// partition checks, and checks again, that the worker still takes
	// tasks from it: the pool may not know the partition to tell it.
	watchEvery = 30 * time.Second
	// pingWait is how long a live worker may take to start a task on its
	// own queue, as the pool's lease allows.
	pingWait = 10 * time.Second
)

// place joins the partition to in.Pool, when set, and keeps the returned
// placement up to date with the pool's answers for the rest of the run.
func place(ctx workflow.Context, in *contract.IngestInput) *placement {
	pl := &placement{at: &in.Placement, lost: map[string]bool{}, poolID: in.Pool}
	if in.Pool == "" {
		return pl
	}
	assigned := workflow.GetSignalChannel(ctx, contract.AssignSignal)
	// Answers are taken in on a context that a stop does not end: a batch
	// still finishing must learn that its worker left.
	listen, _ := workflow.NewDisconnectedContext(ctx)
	workflow.Go(listen, func(ctx workflow.Context) {
		for {
			var as contract.Assignment
			assigned.Receive(ctx, &as)
			pl.apply(as)
		}
	})
	self := workflow.GetInfo(ctx).WorkflowExecution.ID
	asked := workflow.SignalExternalWorkflow(ctx, in.Pool, "", contract.WantSignal, contract.PoolWant{WorkflowID: self, Queue: in.Queue})
	pl.asked, pl.askedAt = asked, workflow.Now(ctx)
	if pl.at.Queue == "" {
		// Without a pool (no worker joined it yet) the partition runs on
		// its own task queue; the pool's answer moves it later.
		_, _ = workflow.AwaitWithTimeout(ctx, assignmentWait, func() bool {
			return pl.at.Queue != "" || (asked.IsReady() && asked.Get(ctx, nil) != nil)
		})
	}
	return pl
}

// queue is where the partition's next plan or batch goes ("": its own).
func (pl *placement) queue() string { return pl.at.Queue }

func (pl *placement) apply(as contract.Assignment) {
	at := pl.at
	if as.Lost != "" {
		pl.lost[as.Lost] = true
	}
	if as.Seq != 0 && as.Pool == at.QueuePool && as.Seq <= at.QueueSeq {
		// A stale answer: its loss still holds, its queue no longer.
		if pl.lost[at.Queue] {
			at.Queue = ""
		}
		return
	}
	at.QueueSeq, at.QueuePool = as.Seq, as.Pool
	if as.Queue != as.Lost {
		delete(pl.lost, as.Queue) // a worker may join again under its queue
	}
	at.Queue = as.Queue
	if pl.lost[at.Queue] {
		at.Queue = "" // never plan where nothing polls: the shared queue serves meanwhile
	}
}

// moved tells whether work scheduled on queue must move: its worker left.
func (pl *placement) moved(queue string) bool { return queue != "" && pl.lost[queue] }

// renew announces the partition to its pool again when announceEvery has
// passed since the last time, or announceRetry since one the pool did not
// take: a pool run that does not know the partition learns it so.
func (pl *placement) renew(ctx workflow.Context) {
	if pl.poolID == "" {
		return
	}
	due := announceEvery
	if pl.asked != nil && pl.asked.IsReady() && pl.asked.Get(ctx, nil) != nil {
		due = announceRetry
	}
	if workflow.Now(ctx).Sub(pl.askedAt) >= due {
		pl.announce(ctx)
	}
}

// announce tells the pool where the partition runs and which pool run
// placed it there; a run that did not answers with where it should.
func (pl *placement) announce(ctx workflow.Context) {
	if pl.poolID == "" {
		return
	}
	self := workflow.GetInfo(ctx).WorkflowExecution.ID
	pl.asked = workflow.SignalExternalWorkflow(ctx, pl.poolID, "", contract.WantSignal, contract.PoolWant{WorkflowID: self, Queue: pl.at.Queue, Pool: pl.at.QueuePool})
	pl.askedAt = workflow.Now(ctx)
}

// lose moves the partition off queue, whose worker takes no tasks, to the
// shared queue until the pool answers, and asks the pool where to go.
func (pl *placement) lose(ctx workflow.Context, queue string) {
	workflow.GetLogger(ctx).Warn("the worker's queue takes no tasks; moving off it without the pool", "queue", queue)
	pl.lost[queue] = true
	if pl.at.Queue == queue {
		pl.at.Queue = ""
	}
	pl.announce(ctx)
}

// notStarted tells whether err is a task on a worker's queue that nothing
// started within its schedule-to-start timeout.
func notStarted(err error) bool {
	var timeout *temporal.TimeoutError
	return errors.As(err, &timeout) && timeout.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}

// planFailed takes a plan's outcome: a plan on a worker's queue that
// never started means that worker is gone, whether or not the pool says
// so, and the next plan goes elsewhere.
func (pl *placement) planFailed(ctx workflow.Context, queue string, err error) {
	if queue != "" && notStarted(err) && !pl.lost[queue] {
		pl.lose(ctx, queue)
	}
}

// wait waits until done, or until the batch's queue is lost. On a
// worker's queue, a batch that has run watchEvery is checked, and checked
// again each watchEvery, for whether its worker still starts tasks there:
// when the pool does not know the partition, nothing else would end a
// batch whose worker died.
func (pl *placement) wait(ctx workflow.Context, queue string, done func() bool) {
	ready := func() bool { return done() || pl.moved(queue) }
	if queue == "" {
		_ = workflow.Await(ctx, ready)
		return
	}
	began := workflow.Now(ctx)
	for {
		if pl.watch == nil || pl.watch.IsReady() {
			pl.watch = workflow.NewTimer(ctx, watchEvery)
		}
		watch := pl.watch
		if err := workflow.Await(ctx, func() bool { return ready() || watch.IsReady() }); err != nil || ready() {
			return
		}
		if workflow.Now(ctx).Sub(began) < watchEvery {
			continue // the timer was set during an earlier batch
		}
		pctx, cancel := workflow.WithCancel(ctx)
		ping := workflow.ExecuteActivity(workflow.WithActivityOptions(pctx, workflow.ActivityOptions{
			TaskQueue:              queue,
			ScheduleToStartTimeout: pingWait,
			StartToCloseTimeout:    pingWait,
			RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 1},
			Summary:                "does worker " + queue + " still take tasks?",
		}), contract.ActivityHoldMembership, time.Duration(0)) // a lease of no length: it only has to start
		_ = workflow.Await(ctx, func() bool { return ping.IsReady() || ready() })
		if !ping.IsReady() {
			cancel()
			return
		}
		if notStarted(ping.Get(ctx, nil)) {
			pl.lose(ctx, queue)
			return
		}
	}
}

// settle takes in the answers already received, so that a
// continue-as-new carries the latest assignment.
func (pl *placement) settle(ctx workflow.Context) {
	assigned := workflow.GetSignalChannel(ctx, contract.AssignSignal)
	for {
		var as contract.Assignment
		if !assigned.ReceiveAsync(&as) {
			break
		}
		pl.apply(as)
	}
}

// leave tells the pool the partition has ended, so its share goes to the
// partitions still running.
func (pl *placement) leave(ctx workflow.Context, in contract.IngestInput) {
	if in.Pool == "" {
		return
	}
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	_ = workflow.SignalExternalWorkflow(ctx, in.Pool, "", contract.LeaveSignal, workflow.GetInfo(ctx).WorkflowExecution.ID).Get(ctx, nil)
}
