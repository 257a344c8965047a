package operator

import (
	"context"
	"errors"
	"fmt"
	enumspb "go.temporal.io/api/enums/v1"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
)

// Control sends one of PartitionIngest's control updates (workflows.
// PauseUpdate, ResumeUpdate, DrainUpdate, SetBatchUpdate) to the given
// partitions, or to every partition of the topic when none are given, and
// waits for each answer: a pause or drain answers once the batch in flight
// is loaded and committed. Every partition must be running before any is
// sent the update: a pause that reached some partitions and then failed
// on one would leave them paused behind an error an operator reads as
// "nothing happened". Partitions answer in order; the first error stops
// it, with the answers so far.
func (o *Operator) Control(ctx context.Context, update string, partitions []int, args ...any) ([]contract.ControlResult, error) {
	if len(partitions) == 0 {
		n, err := kafkalog.Partitions(ctx, o.Config.Kafka(), o.Config.Topic)
		if err != nil {
			return nil, err
		}
		for p := range n {
			partitions = append(partitions, p)
		}
	}
	for _, p := range partitions {
		desc, err := o.Temporal.DescribeWorkflowExecution(ctx, contract.IngestID(o.Config.Topic, p), "")
		if errors.As(err, new(*serviceerror.NotFound)) ||
			err == nil && desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			err = o.notRunning(ctx, p, "; run "+update+" again once it runs", "")
		}
		if err != nil {
			return nil, fmt.Errorf("%s partition %d: %w; no partition was sent it", update, p, controlError(err))
		}
	}
	var out []contract.ControlResult
	for _, p := range partitions {
		var res contract.ControlResult
		if err := o.update(ctx, contract.IngestID(o.Config.Topic, p), update, &res, args...); err != nil {
			if errors.As(err, new(*serviceerror.NotFound)) {
				err = o.notRunning(ctx, p, "; run "+update+" again once it runs", "")
			}
			return out, fmt.Errorf("%s partition %d: %w", update, p, controlError(err))
		}
		out = append(out, res)
	}
	return out, nil
}

// update sends update to workflow id and waits for its answer.
func (o *Operator) update(ctx context.Context, id, update string, answer any, args ...any) error {
	h, err := o.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   update,
		Args:         args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, answer)
	}
	return err
}

// SetBatchResult is what set-batch did: the topic's supervisor's answer
// (nil when it does not run), the running partitions' answers, and the
// partitions the supervisor has yet to start, which start at the new
// size.
type SetBatchResult struct {
	Topic      *contract.TopicBatch
	Partitions []contract.ControlResult
	Later      []int
}

// SetBatch changes the batch size of the topic: first the supervisor's,
// which partitions added later start with, then each running
// partition's, from its next plan on. A partition the supervisor has not
// started yet is not an error: it starts at the new size. One that ended
// (drained, stopped) is: `start` starts it at start's size. With
// partitions given, only those are resized, and the supervisor only when
// none is given.
func (o *Operator) SetBatch(ctx context.Context, partitions []int, s contract.SetBatchInput) (SetBatchResult, error) {
	var out SetBatchResult
	if len(partitions) == 0 {
		var tb contract.TopicBatch
		err := o.update(ctx, contract.SupervisorID(o.Config.Topic), contract.SetBatchUpdate, &tb, s)
		switch {
		case err == nil:
			out.Topic = &tb
		case !errors.As(err, new(*serviceerror.NotFound)):
			return out, fmt.Errorf("set-batch the supervisor of %s: %w", o.Config.Topic, controlError(err))
		}
		n, err := kafkalog.Partitions(ctx, o.Config.Kafka(), o.Config.Topic)
		if err != nil {
			return out, err
		}
		for p := range n {
			partitions = append(partitions, p)
		}
	}
	for _, p := range partitions {
		var res contract.ControlResult
		err := o.update(ctx, contract.IngestID(o.Config.Topic, p), contract.SetBatchUpdate, &res, s)
		if errors.As(err, new(*serviceerror.NotFound)) {
			if out.Topic != nil && p >= out.Topic.Partitions {
				out.Later = append(out.Later, p)
				continue
			}
			err = o.notRunning(ctx, p, ", at the size set for the topic (set-batch without --partition sets it)",
				fmt.Sprintf("; with --max-records %d, at this size", s.MaxRecords))
		}
		if err != nil {
			return out, fmt.Errorf("set-batch partition %d: %w", p, controlError(err))
		}
		out.Partitions = append(out.Partitions, res)
	}
	return out, nil
}

// notRunning says why partition p has no running workflow, and what
// will start it: the topic's supervisor, for a partition added to the
// topic that it has yet to see (then addedHint), or `starter start` (then
// startHint).
func (o *Operator) notRunning(ctx context.Context, p int, addedHint, startHint string) error {
	if state, pr, err := o.Supervisor(ctx); err == nil && state == "running" && pr != nil && p >= pr.Partitions {
		return fmt.Errorf("not started yet: the topic's supervisor starts it at its next look%s", addedHint)
	}
	return fmt.Errorf("not running (starter start starts it%s)", startHint)
}

// controlError turns the server's answer for a partition that is not
// running into words an operator acts on.
func controlError(err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return errors.New("not running (starter start starts it)")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer yet; is a worker running? (%w)", err)
	}
	return err
}

// ControlTimeout is long enough for a pause or drain to wait out a batch
// that loads a large range into a slow warehouse.
const ControlTimeout = 10 * time.Minute
