package workflows

import (
	"cmp"
	"errors"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
)

// The worker pool of a task queue assigns each partition to one worker, so
// that a partition's plans and batches run where its dedup window is held,
// and the pool's partitions are spread evenly over its workers.
//
// Each worker also polls a task queue of its own (contract.WorkerQueue). It joins the
// pool with contract.JoinSignal; the pool then holds a lease on it: a HoldMembership
// activity on the worker's own queue that heartbeats every second. A worker
// that dies stops heartbeating and leaves the pool within the heartbeat
// timeout, or at once when a worker restarted in its place says so
// (contract.GoneSignal); one that stops gracefully ends its lease at
// once. Partitions ask
// for their worker with contract.WantSignal and are told with contract.AssignSignal, again
// whenever a worker joins or leaves. They announce themselves again every
// minute, so a pool run started afresh (terminated, reset) learns every
// live partition; one whose worker dies unknown to the pool moves off it
// on its own (placement.wait).

const (
	// leaseHeartbeat is how soon a worker that died leaves the pool.
	leaseHeartbeat = 3 * time.Second
	// leaseFor is how long one HoldMembership runs before the pool starts
	// the next, keeping the pool's history to a few events per worker an
	// hour.
	leaseFor = 10 * time.Minute
	// poolMaxEvents continues the pool as new long before Temporal's
	// limits; its state is a few hundred bytes a partition.
	poolMaxEvents = 5000
)

// pool is WorkerPool's state object.
type pool struct {
	contract.PoolState
	// lease numbers each member's current HoldMembership, so that an old
	// lease ending does not remove a member that joined again.
	lease map[string]int
	sel   workflow.Selector
}

// WorkerPool runs the pool of a task queue until cancelled.
func WorkerPool(ctx workflow.Context, st contract.PoolState) error {
	p := &pool{PoolState: st, lease: map[string]int{}, sel: workflow.NewSelector(ctx)}
	if p.Partitions == nil {
		p.Partitions = map[string]string{}
	}
	if err := workflow.SetQueryHandler(ctx, contract.ProgressQuery, func() (contract.PoolState, error) { return p.PoolState, nil }); err != nil {
		return err
	}
	join := workflow.GetSignalChannel(ctx, contract.JoinSignal)
	want := workflow.GetSignalChannel(ctx, contract.WantSignal)
	leave := workflow.GetSignalChannel(ctx, contract.LeaveSignal)
	p.sel.AddReceive(join, func(c workflow.ReceiveChannel, _ bool) {
		var queue string
		c.Receive(ctx, &queue)
		p.join(ctx, queue)
	})
	p.sel.AddReceive(want, func(c workflow.ReceiveChannel, _ bool) {
		var w contract.PoolWant
		c.Receive(ctx, &w)
		p.want(ctx, w)
	})
	// A worker restarted in place names its dead predecessor, which then
	// leaves at once instead of when its lease times out.
	p.sel.AddReceive(workflow.GetSignalChannel(ctx, contract.GoneSignal), func(c workflow.ReceiveChannel, _ bool) {
		var queue string
		c.Receive(ctx, &queue)
		p.remove(ctx, queue, errors.New("its replacement found it dead"), true)
	})
	p.sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
	p.sel.AddReceive(leave, func(c workflow.ReceiveChannel, _ bool) {
		var id string
		c.Receive(ctx, &id)
		delete(p.Partitions, id)
		p.rebalance(ctx)
	})
	// Leases do not survive continue-as-new: each member gets a new one,
	// and one whose worker died meanwhile is not taken within seconds.
	for _, m := range p.Members {
		p.hold(ctx, m)
	}
	for ctx.Err() == nil {
		p.sel.Select(ctx)
		if info := workflow.GetInfo(ctx); info.GetCurrentHistoryLength() >= poolMaxEvents || info.GetContinueAsNewSuggested() {
			for p.sel.HasPending() { // signals already received are handled, not lost
				p.sel.Select(ctx)
			}
			return workflow.NewContinueAsNewError(ctx, WorkerPool, p.PoolState)
		}
	}
	return temporal.NewCanceledError("stopped")
}

// join adds a worker and starts its lease; a member joining again (it
// does every half minute) changes nothing. Anyone who can signal the pool
// can join, so only a worker queue of the pool's task queue is taken, up
// to contract.MaxPoolMembers; a lease on any other queue (the shared one,
// say) would hand partitions to whichever worker polled it.
func (p *pool) join(ctx workflow.Context, queue string) {
	if slices.Contains(p.Members, queue) {
		return
	}
	if err := contract.CheckJoin(workflow.GetInfo(ctx).TaskQueueName, queue, len(p.Members)); err != nil {
		workflow.GetLogger(ctx).Warn("join refused", "queue", queue, "error", err)
		return
	}
	p.Members = append(p.Members, queue)
	slices.Sort(p.Members)
	p.hold(ctx, queue)
	p.rebalance(ctx)
}

// hold starts a lease on the member's queue; when it ends the member
// leaves, unless it ended only because it ran its time.
func (p *pool) hold(ctx workflow.Context, queue string) {
	p.holdWithin(ctx, queue, 10*time.Second) // a worker that died before it polled
}

// holdWithin is hold, the worker given startWithin to start the lease.
func (p *pool) holdWithin(ctx workflow.Context, queue string, startWithin time.Duration) {
	p.lease[queue]++
	n := p.lease[queue]
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              queue,
		ScheduleToStartTimeout: startWithin,
		StartToCloseTimeout:    leaseFor + time.Minute,
		HeartbeatTimeout:       leaseHeartbeat,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:                "lease of worker " + queue,
	})
	f := workflow.ExecuteActivity(actx, contract.ActivityHoldMembership, leaseFor)
	p.sel.AddFuture(f, func(f workflow.Future) {
		err := f.Get(ctx, nil)
		if p.lease[queue] != n || !slices.Contains(p.Members, queue) {
			return // an older lease
		}
		if err == nil {
			p.hold(ctx, queue)
			return
		}
		if missedInOutage(ctx, err) && workflow.GetVersion(ctx, "lease-held-through-outage", workflow.DefaultVersion, 1) == 1 {
			// The worker may well be alive: held again, a live worker,
			// whose polls wait for the server's return, takes the new
			// lease within outageProbe, and its partitions stay where
			// their windows are. A dead one leaves when it does not.
			workflow.GetLogger(ctx).Info("lease heartbeats missed while the server could not record them; holding the lease again", "queue", queue, "error", err)
			p.holdWithin(ctx, queue, outageProbe)
			return
		}
		// A lease that timed out is a worker that died; one that ended
		// with an error is a worker stopping, whose SDK hands its sticky
		// workflows back itself.
		p.remove(ctx, queue, err, temporal.IsTimeoutError(err))
	})
}

// missedInOutage reports whether a lease timed out only because the
// server could not record its heartbeats (the server itself down or
// restarting): the timeout reaches the pool long after the lease's last
// beat, which says when it was sent on the server's clock, rather than
// the heartbeat timeout after it, as a dead worker's does. Only the
// length of the gap tells the two apart, so an outage shorter than
// outageGap is taken for a death (the worker joins again, its partitions
// move twice); a worker that died in an outage leaves when its new lease
// is not started.
func missedInOutage(ctx workflow.Context, err error) bool {
	var te *temporal.TimeoutError
	if !errors.As(err, &te) || te.TimeoutType() != enumspb.TIMEOUT_TYPE_HEARTBEAT || !te.HasLastHeartbeatDetails() {
		return false
	}
	var beat contract.LeaseBeat
	if te.LastHeartbeatDetails(&beat) != nil || beat.At.IsZero() {
		return false
	}
	return workflow.Now(ctx).Sub(beat.At) > outageGap
}

// outageGap is the longest a dead worker's lease timeout reaches the pool
// after its last beat: the heartbeat timeout, a second for the pool's
// task to leave the dead worker's sticky queue, and a margin for a busy
// server. A death that reaches the pool later still (two workers dying at
// once, the first's removal taking seconds; the dead worker running the
// pool's own task) is taken for an outage and costs outageProbe more.
const outageGap = leaseHeartbeat + 5*time.Second

// outageProbe is how long a lease held again after an outage waits for
// its worker to start it: the worker's connection is dialed again every
// second and its polls wait for it (pipeline.resumeSoon).
const outageProbe = 5 * time.Second

// remove takes a member that died or stopped out of the pool and moves
// its partitions to the members left.
func (p *pool) remove(ctx workflow.Context, queue string, why error, died bool) {
	if !slices.Contains(p.Members, queue) {
		return
	}
	workflow.GetLogger(ctx).Info("worker left the pool", "queue", queue, "error", why)
	p.Members = slices.DeleteFunc(p.Members, func(m string) bool { return m == queue })
	if died {
		// A partition's workflow cached on the dead worker would have its
		// next task, the one that takes in the news below, held on that
		// worker's sticky queue for the sticky schedule-to-start timeout.
		// Released, it goes to a live worker at once; failing costs only
		// that second. (A released workflow cached on a live worker is
		// replayed there once: the price, paid only when a worker dies.)
		lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: 10 * time.Second,
			RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
			Summary:             "release the partitions' workflows from the sticky queue of " + queue,
		})
		if err := workflow.ExecuteLocalActivity(lctx, contract.ActivityReleaseWorkflows, p.partitionIDs()).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("partitions' workflows not released from a sticky queue", "queue", queue, "error", err)
		}
	}
	// Every partition hears that the queue is lost, then where it goes:
	// one moved off this worker earlier, while it still held its lease,
	// may have work waiting there still, and may move again now.
	for _, id := range p.partitionIDs() {
		p.tell(ctx, id, contract.Assignment{Queue: p.Partitions[id], Lost: queue})
	}
	p.rebalance(ctx)
}

// want registers a partition, keeping its queue when that worker is a
// member, and answers it with its assignment. A partition announcing what
// this pool run already told it gets no answer: partitions announce
// themselves every minute, so that a pool run started afresh learns them.
func (p *pool) want(ctx workflow.Context, w contract.PoolWant) {
	q, known := p.Partitions[w.WorkflowID]
	if known && w.Pool != "" && w.Pool == poolRun(ctx) && q == w.Queue {
		return
	}
	if !known {
		p.Partitions[w.WorkflowID] = w.Queue
	}
	changed := p.rebalance(ctx)
	if !slices.Contains(changed, w.WorkflowID) {
		p.tell(ctx, w.WorkflowID, contract.Assignment{Queue: p.Partitions[w.WorkflowID], Lost: p.lost(w.Queue)})
	}
}

// lost is queue when it is a worker's queue that is not in the pool.
func (p *pool) lost(queue string) string {
	if queue == "" || slices.Contains(p.Members, queue) {
		return ""
	}
	return queue
}

// rebalance gives every partition a member, each member ⌊P/W⌋ or ⌈P/W⌉
// of them, moving as few as it can, and tells each partition that moved.
// With no members, partitions run on the shared task queue ("") until a
// worker joins.
func (p *pool) rebalance(ctx workflow.Context) (changed []string) {
	before := make(map[string]string, len(p.Partitions))
	//workflowcheck:ignore a copy: order does not matter
	for id, q := range p.Partitions {
		before[id] = q
	}
	//workflowcheck:ignore a copy: order does not matter
	for id, q := range assign(p.Members, p.Partitions) {
		p.Partitions[id] = q
	}
	for _, id := range p.partitionIDs() {
		if q := p.Partitions[id]; q != before[id] {
			changed = append(changed, id)
			p.tell(ctx, id, contract.Assignment{Queue: q, Lost: p.lost(before[id])})
		}
	}
	return changed
}

// partitionIDs are the partitions' workflow IDs in order: workflow code
// must not range over a map where order matters.
func (p *pool) partitionIDs() []string {
	ids := make([]string, 0, len(p.Partitions))
	//workflowcheck:ignore sorted below
	for id := range p.Partitions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// tell signals a partition its assignment; a partition that is gone is
// forgotten.
func (p *pool) tell(ctx workflow.Context, id string, as contract.Assignment) {
	p.Seq++
	as.Seq, as.Pool = p.Seq, poolRun(ctx)
	f := workflow.SignalExternalWorkflow(ctx, id, "", contract.AssignSignal, as)
	p.sel.AddFuture(f, func(f workflow.Future) {
		if f.Get(ctx, nil) != nil && p.Partitions[id] == as.Queue {
			delete(p.Partitions, id)
			p.rebalance(ctx)
		}
	})
}

// poolRun names the pool's run across continue-as-new: its first run's ID
// (the run's own where that is not set, as in Temporal's test suite).
func poolRun(ctx workflow.Context) string {
	info := workflow.GetInfo(ctx)
	return cmp.Or(info.FirstRunID, info.WorkflowExecution.RunID)
}

// assign balances partitions (ID → current queue) over members (sorted):
// a partition stays on its member unless that member has more than its
// share; the members holding the most keep the larger shares. It is a
// pure function of its inputs, as workflow code must be.
func assign(members []string, partitions map[string]string) map[string]string {
	if len(members) == 0 {
		out := make(map[string]string, len(partitions))
		//workflowcheck:ignore builds a map: order does not matter
		for id := range partitions {
			out[id] = ""
		}
		return out
	}
	ids := make([]string, 0, len(partitions))
	//workflowcheck:ignore sorted below
	for id := range partitions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	held := map[string][]string{} // member → its partitions, in ID order
	var free []string
	for _, id := range ids {
		if q := partitions[id]; slices.Contains(members, q) {
			held[q] = append(held[q], id)
		} else {
			free = append(free, id)
		}
	}
	// The P mod W members that hold the most get ⌈P/W⌉, the rest ⌊P/W⌋.
	order := slices.Clone(members)
	slices.SortStableFunc(order, func(x, y string) int { return len(held[y]) - len(held[x]) })
	share := map[string]int{}
	for i, m := range order {
		share[m] = len(ids) / len(members)
		if i < len(ids)%len(members) {
			share[m]++
		}
	}
	out := make(map[string]string, len(ids))
	for _, m := range members {
		keep := min(len(held[m]), share[m])
		for _, id := range held[m][:keep] {
			out[id] = m
		}
		free = append(free, held[m][keep:]...)
	}
	slices.Sort(free)
	for _, m := range members {
		for n := len(held[m]); n < share[m] && len(free) > 0; n++ {
			out[free[0]], free = m, free[1:]
		}
	}
	return out
}
