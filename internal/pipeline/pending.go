package pipeline

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/searchattr"
)

// pendingBatch finds the batch a partition's last run left failed at
// offset next, if any: stopped or terminated while it waited to run the
// batch again, a partition's workflow forgets it. Its tables may hold part
// of the batch, so the new run must retry it under the same ID and range
// (DESIGN §3 invariant 4), not re-plan from next at today's batch size.
//
// The MicroBatch workflows are the record: each carries its range as
// search attributes and its spec as input. One still running is an error,
// since a new run would start the same batch ID beside it.
func (o *Operator) pendingBatch(ctx context.Context, partition int, next int64) (*contract.Spec, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND %s = %d AND %s = %d AND ExecutionStatus != 'Completed'",
		microBatchType, searchattr.KafkaTopic.GetName(), o.Config.Topic,
		searchattr.KafkaPartition.GetName(), partition,
		searchattr.BatchStartOffset.GetName(), next)
	var pick struct {
		id, runID string
		started   int64
	}
	var token []byte
	for {
		resp, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("partition %d: look for a failed batch at offset %d: %w", partition, next, err)
		}
		for _, ex := range resp.GetExecutions() {
			if ex.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return nil, fmt.Errorf("partition %d: batch %s is still running; start again once it has finished", partition, ex.GetExecution().GetWorkflowId())
			}
			// Only one range can have failed here since failed batches
			// are retried as they were; the latest attempt is its spec.
			if t := ex.GetStartTime().AsTime().UnixNano(); pick.id == "" || t > pick.started {
				pick.id, pick.runID, pick.started = ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), t
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if pick.id == "" {
		return nil, nil
	}
	spec, err := o.batchSpec(ctx, pick.id, pick.runID)
	if err != nil {
		return nil, fmt.Errorf("partition %d: read failed batch %s: %w", partition, pick.id, err)
	}
	if spec.Topic != o.Config.Topic || spec.Partition != partition || spec.Start != next {
		return nil, fmt.Errorf("partition %d: failed batch %s does not start at offset %d", partition, pick.id, next)
	}
	return &spec, nil
}

// microBatchType is MicroBatch's workflow type: the worker registers the
// function under its own name.
const microBatchType = "MicroBatch"

// batchSpec is the input a MicroBatch run was started with.
func (o *Operator) batchSpec(ctx context.Context, id, runID string) (contract.Spec, error) {
	var spec contract.Spec
	it := o.Temporal.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return spec, fmt.Errorf("no history")
	}
	first, err := it.Next()
	if err != nil {
		return spec, err
	}
	started := first.GetWorkflowExecutionStartedEventAttributes()
	if started == nil || started.GetWorkflowType().GetName() != microBatchType {
		return spec, fmt.Errorf("its history does not begin with a MicroBatch start")
	}
	if err := converter.GetDefaultDataConverter().FromPayloads(started.GetInput(), &spec); err != nil {
		return spec, fmt.Errorf("decode its input: %w", err)
	}
	return spec, nil
}
