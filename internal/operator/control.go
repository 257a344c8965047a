package operator

import (
	"context"
	"errors"
	"fmt"
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
// is loaded and committed. Partitions answer in order; the first error
// stops it, with the answers so far.
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
	var out []contract.ControlResult
	for _, p := range partitions {
		id := contract.IngestID(o.Config.Topic, p)
		h, err := o.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID:   id,
			UpdateName:   update,
			Args:         args,
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		var res contract.ControlResult
		if err == nil {
			err = h.Get(ctx, &res)
		}
		if err != nil {
			return out, fmt.Errorf("%s partition %d: %w", update, p, controlError(err))
		}
		out = append(out, res)
	}
	return out, nil
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
