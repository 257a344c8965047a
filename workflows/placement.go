package workflows

import (
	"time"

	"github.com/paystream/paystream/contract"

	"go.temporal.io/sdk/workflow"
)

// placement is where a partition's plans and batches run: the queue of the
// worker its pool assigned it (see WorkerPool), or the partition's own task
// queue when it has no pool or no answer from it yet.
type placement struct {
	queue string
	seq   int64  // of the pool's answer that named queue
	pool  string // that answer's pool run
	// lost are queues whose worker left the pool: a plan or batch
	// scheduled there never starts, so the partition moves it.
	lost map[string]bool
}

// assignmentWait bounds how long a partition's first run waits for the
// pool's answer before it plans on its own task queue.
const assignmentWait = 10 * time.Second

// place joins the partition to in.Pool, when set, and keeps the returned
// placement up to date with the pool's answers for the rest of the run.
func place(ctx workflow.Context, in *contract.IngestInput) *placement {
	pl := &placement{queue: in.Queue, seq: in.QueueSeq, pool: in.QueuePool, lost: map[string]bool{}}
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
	if pl.queue == "" {
		// Without a pool (no worker joined it yet) the partition runs on
		// its own task queue; the pool's answer moves it later.
		_, _ = workflow.AwaitWithTimeout(ctx, assignmentWait, func() bool {
			return pl.queue != "" || (asked.IsReady() && asked.Get(ctx, nil) != nil)
		})
	}
	return pl
}

func (pl *placement) apply(as contract.Assignment) {
	if as.Lost != "" {
		pl.lost[as.Lost] = true
	}
	if as.Seq != 0 && as.Pool == pl.pool && as.Seq <= pl.seq {
		// A stale answer: its loss still holds, its queue no longer.
		if pl.lost[pl.queue] {
			pl.queue = ""
		}
		return
	}
	pl.seq, pl.pool = as.Seq, as.Pool
	if as.Queue != as.Lost {
		delete(pl.lost, as.Queue) // a worker may join again under its queue
	}
	pl.queue = as.Queue
	if pl.lost[pl.queue] {
		pl.queue = "" // never plan where nothing polls: the shared queue serves meanwhile
	}
}

// moved tells whether work scheduled on queue must move: its worker left.
func (pl *placement) moved(queue string) bool { return queue != "" && pl.lost[queue] }

// keep takes in the answers already received, so that a continue-as-new
// carries the latest assignment.
func (pl *placement) keep(ctx workflow.Context, in *contract.IngestInput) {
	assigned := workflow.GetSignalChannel(ctx, contract.AssignSignal)
	for {
		var as contract.Assignment
		if !assigned.ReceiveAsync(&as) {
			break
		}
		pl.apply(as)
	}
	in.Queue, in.QueueSeq, in.QueuePool = pl.queue, pl.seq, pl.pool
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
