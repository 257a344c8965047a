package operator

import (
	"context"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/searchattr"
)

// pendingBatch finds the batch a partition's last run left failed at
// offset next, if any. A stop waits for a failed batch to load, so only a
// run terminated by hand while it waited leaves one. Its tables may hold
// part of the batch, so the new run must run it again exactly as it first
// ran (docs/design.md §3 invariant 4): same ID and range, not re-planned
// from next at today's batch size, and in the write mode it started in. In
// storagewrite mode its data rows may already be in COMMITTED streams,
// visible at once, so only an append at the stream offsets it recorded is
// refused as already written; a load job or a new stream would add them
// again.
//
// The failed MicroBatch run is found by its search attributes, and its
// spec read from the input its history starts with: the window, lateness,
// streams and offsets the batch first ran with. One still running is an
// error, since a new run would start the same batch ID beside it.
func (o *Operator) pendingBatch(ctx context.Context, partition int, rp resumePoint) (*contract.Spec, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND %s = %d AND %s = %d",
		microBatchType, searchattr.KafkaTopic.GetName(), o.Config.Topic,
		searchattr.KafkaPartition.GetName(), partition,
		searchattr.BatchStartOffset.GetName(), rp.next)
	var found *commonpb.WorkflowExecution
	var token []byte
	for {
		resp, err := o.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("partition %d: look for a failed batch at offset %d: %w", partition, rp.next, err)
		}
		for _, ex := range resp.GetExecutions() {
			if ex.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				// The ledger said no batch had loaded from next: this one
				// did since it was read (a batch of a run terminated by
				// hand goes on alone). Started at next again, the range
				// would load twice, or its ID be refused for good.
				return nil, fmt.Errorf("partition %d: batch %s: %w", partition, ex.GetExecution().GetWorkflowId(), errLoadedSince)
			}
			if ex.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return nil, fmt.Errorf("partition %d: batch %s is still running; start again once it has finished", partition, ex.GetExecution().GetWorkflowId())
			}
			// Failed batches are run again as they were, so only one
			// range can have failed at this offset, and each of its runs
			// has the same input.
			found = ex.GetExecution()
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if found == nil {
		return nil, nil
	}
	// Visibility lists each run and lags: the batch's latest run, asked
	// of the server itself, may be running again or have loaded since.
	desc, err := o.Temporal.DescribeWorkflowExecution(ctx, found.GetWorkflowId(), "")
	if err != nil {
		return nil, fmt.Errorf("partition %d: failed batch %s: %w", partition, found.GetWorkflowId(), err)
	}
	switch desc.GetWorkflowExecutionInfo().GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return nil, fmt.Errorf("partition %d: batch %s is still running; start again once it has finished", partition, found.GetWorkflowId())
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		// Started again under its ID, it would be refused for ever.
		return nil, fmt.Errorf("partition %d: batch %s: %w", partition, found.GetWorkflowId(), errLoadedSince)
	}
	var spec contract.Spec
	if err := o.runInput(ctx, found, &spec); err != nil {
		return nil, fmt.Errorf("partition %d: failed batch %s: %w", partition, found.GetWorkflowId(), err)
	}
	if spec.ID() != found.GetWorkflowId() || spec.Topic != o.Config.Topic || spec.Partition != partition || spec.Start != rp.next {
		return nil, fmt.Errorf("partition %d: failed batch %s ran range %s, not one from offset %d", partition, found.GetWorkflowId(), spec.ID(), rp.next)
	}
	return &spec, nil
}

// errLoadedSince: a batch found failed has loaded since the ledger was
// read (a retry of it outlived its terminated parent); the ledger must be
// read again.
var errLoadedSince = errors.New("loaded since the ledger was read")

// runInput decodes into the input a workflow run was started with: its
// history's first event holds it.
func (o *Operator) runInput(ctx context.Context, ex *commonpb.WorkflowExecution, into any) error {
	it := o.Temporal.GetWorkflowHistory(ctx, ex.GetWorkflowId(), ex.GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return fmt.Errorf("run %s has no history left to read its input from", ex.GetRunId())
	}
	ev, err := it.Next()
	if err != nil {
		return fmt.Errorf("read the history of run %s: %w", ex.GetRunId(), err)
	}
	started := ev.GetWorkflowExecutionStartedEventAttributes()
	if started == nil {
		return fmt.Errorf("run %s's history starts with %s, not its start", ex.GetRunId(), ev.GetEventType())
	}
	if err := converter.GetDefaultDataConverter().FromPayloads(started.GetInput(), into); err != nil {
		return fmt.Errorf("decode the input of run %s: %w", ex.GetRunId(), err)
	}
	return nil
}

// microBatchType is MicroBatch's workflow type: the worker registers the
// function under its own name.
const microBatchType = "MicroBatch"
