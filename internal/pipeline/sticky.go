package pipeline

import (
	"context"
	"fmt"
	"regexp"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/searchattr"
)

// ReleaseStickyWorkflows asks Temporal to send the next workflow task of
// every running workflow of the given partitions (by topic) to the task
// queue, not to the sticky queue of the worker that ran it last, and
// returns how many it asked for.
//
// A worker restarted in place (its container killed, its pod's emptyDir
// kept) finds in its state directory the snapshots its predecessor wrote:
// those partitions' workflows were cached on a process that is gone, and
// Temporal routes their tasks to it. Each such task waits the sticky
// schedule-to-start timeout before any worker may take it, on the
// critical path of recovery. A partition that another, live worker now
// runs costs that worker one replay of its history.
func ReleaseStickyWorkflows(ctx context.Context, tc client.Client, namespace string, partitions map[string][]int) (int, error) {
	released := 0
	for topic, ps := range partitions {
		if !kafkaTopicName.MatchString(topic) {
			continue // not a topic: nothing of ours runs under it
		}
		for _, p := range ps {
			query := fmt.Sprintf("ExecutionStatus = 'Running' AND (WorkflowId = '%s' OR (%s = '%s' AND %s = %d))",
				contract.IngestID(topic, p), searchattr.KafkaTopic.GetName(), topic, searchattr.KafkaPartition.GetName(), p)
			var token []byte
			for {
				resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: query, NextPageToken: token})
				if err != nil {
					return released, fmt.Errorf("partition %s/%d: list its running workflows: %w", topic, p, err)
				}
				for _, ex := range resp.GetExecutions() {
					_, err := tc.WorkflowService().ResetStickyTaskQueue(ctx, &workflowservice.ResetStickyTaskQueueRequest{
						Namespace: namespace,
						Execution: &commonpb.WorkflowExecution{WorkflowId: ex.GetExecution().GetWorkflowId(), RunId: ex.GetExecution().GetRunId()},
					})
					if err != nil {
						return released, fmt.Errorf("partition %s/%d: release workflow %s: %w", topic, p, ex.GetExecution().GetWorkflowId(), err)
					}
					released++
				}
				if token = resp.GetNextPageToken(); len(token) == 0 {
					break
				}
			}
		}
	}
	return released, nil
}

// kafkaTopicName is what Kafka allows in a topic name, and so what may go
// into a visibility query unquoted.
var kafkaTopicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
