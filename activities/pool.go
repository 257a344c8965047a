package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/paystream/paystream/contract"
)

// HoldMembership is a worker's lease in its pool (workflows.WorkerPool): it
// runs on the worker's own task queue and heartbeats every leaseBeat for
// leaseFor. It ends early, with an error, when the worker begins to stop,
// so that the pool moves the worker's partitions at once rather than when
// the heartbeats stop.
//
// A lease runs only on the worker's own queue: one scheduled on another
// (a join the pool should have refused, naming the shared queue) fails at
// once, so that no worker holds a lease for a queue it does not own.
func (a *Activities) HoldMembership(ctx context.Context, leaseFor time.Duration) error {
	if q := activity.GetInfo(ctx).TaskQueue; a.Queue != "" && q != a.Queue {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("lease on task queue %q refused: this worker's own queue is %q", q, a.Queue), contract.ErrTypeLeaseRefused, nil)
	}
	t := time.NewTicker(leaseBeat)
	defer t.Stop()
	began, serverBegan := time.Now(), activity.GetInfo(ctx).StartedTime
	end := time.After(leaseFor)
	stopping := activity.GetWorkerStopChannel(ctx)
	for {
		select {
		case <-end:
			return nil
		case <-stopping:
			return errors.New("the worker is stopping")
		case <-ctx.Done():
			// Cut off: the SDK cancels an activity whose heartbeat the
			// server refused or did not answer. This worker is alive, so
			// the lease ends as if it had run its time and the pool holds
			// a new one; an error would read as a worker stopping and move
			// its partitions. (If the server timed the lease out first,
			// this answer is dropped.)
			return nil
		case <-t.C:
			activity.RecordHeartbeat(ctx, contract.LeaseBeat{At: serverBegan.Add(time.Since(began))})
		}
	}
}

// leaseBeat leaves a lease three heartbeats within its 3 s timeout, so a
// busy server has two seconds to record one; each is a billed action on
// Temporal Cloud (86,400 a worker a day), the price of a dead worker's
// partitions moving within 3 s.
const leaseBeat = time.Second

// TerminateBatch ends a MicroBatch run that waits on the queue of a worker
// that left the pool. A batch already closed is left as it is.
func (a *Activities) TerminateBatch(ctx context.Context, workflowID string) error {
	if a.Temporal == nil {
		return errors.New("terminate batch: the worker has no Temporal client")
	}
	err := a.Temporal.TerminateWorkflow(ctx, workflowID, "", "its worker left the pool; the batch runs again on another")
	if errors.As(err, new(*serviceerror.NotFound)) {
		return nil // closed already: completed, or failed and to be run again
	}
	if err != nil {
		return fmt.Errorf("terminate batch %s: %w", workflowID, err)
	}
	return nil
}

// ReleaseWorkflows sends the next workflow task of each workflow (its
// current run) to its task queue rather than to the sticky queue of the
// worker that ran it last: when that worker died, its sticky queue would
// hold each task for the sticky schedule-to-start timeout. A workflow
// not running is skipped.
func (a *Activities) ReleaseWorkflows(ctx context.Context, workflowIDs []string) error {
	if a.Temporal == nil {
		return errors.New("release workflows: the worker has no Temporal client")
	}
	ns := activity.GetInfo(ctx).Namespace
	for _, id := range workflowIDs {
		_, err := a.Temporal.WorkflowService().ResetStickyTaskQueue(ctx, &workflowservice.ResetStickyTaskQueueRequest{
			Namespace: ns, Execution: &commonpb.WorkflowExecution{WorkflowId: id},
		})
		if err != nil && !errors.As(err, new(*serviceerror.NotFound)) {
			return fmt.Errorf("release workflow %s: %w", id, err)
		}
	}
	return nil
}
