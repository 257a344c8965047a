package operator

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/searchattr"
)

// pendingBatch finds the batch a partition's last run left failed at
// offset next, if any. A stop waits for a failed batch to load, so only a
// run terminated by hand while it waited leaves one. Its tables may hold
// part of the batch, so the new run must run it again under the same ID
// and range (docs/design.md §3 invariant 4), not re-plan from next at today's
// batch size.
//
// The failed MicroBatch run is found by its search attributes; its range
// is its ID; its window is where the ledger's last batch left the
// partition's, as it was when the batch first ran. One still running is an
// error, since a new run would start the same batch ID beside it.
func (o *Operator) pendingBatch(ctx context.Context, partition int, rp resumePoint) (*contract.Spec, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND %s = %d AND %s = %d AND ExecutionStatus != 'Completed'",
		microBatchType, searchattr.KafkaTopic.GetName(), o.Config.Topic,
		searchattr.KafkaPartition.GetName(), partition,
		searchattr.BatchStartOffset.GetName(), rp.next)
	var found string
	var token []byte
	for {
		resp, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("partition %d: look for a failed batch at offset %d: %w", partition, rp.next, err)
		}
		for _, ex := range resp.GetExecutions() {
			if ex.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return nil, fmt.Errorf("partition %d: batch %s is still running; start again once it has finished", partition, ex.GetExecution().GetWorkflowId())
			}
			// Failed batches are run again as they were, so only one
			// range can have failed at this offset.
			found = ex.GetExecution().GetWorkflowId()
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if found == "" {
		return nil, nil
	}
	r, err := contract.ParseID(found)
	if err != nil || r.Topic != o.Config.Topic || r.Partition != partition || r.Start != rp.next {
		return nil, fmt.Errorf("partition %d: failed batch %s does not start at offset %d", partition, found, rp.next)
	}
	if o.Config.WriteMode == config.WriteModeStorageWrite {
		// Its rows went to the terminated run's streams, at offsets only
		// that run's history holds.
		return nil, fmt.Errorf("partition %d: batch %s failed in a run that was terminated, in storagewrite mode; run it again with --write-mode load, then start", partition, found)
	}
	return &contract.Spec{Range: r, Window: rp.window, AllowedLateness: o.Config.AllowedLateness, MaxWindowIDs: o.Config.MaxWindowIDs}, nil
}

// microBatchType is MicroBatch's workflow type: the worker registers the
// function under its own name.
const microBatchType = "MicroBatch"
