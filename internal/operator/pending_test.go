package operator

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/mocks"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
)

// TestAPendingBatchIsJudgedByItsLatestRun: visibility lists a batch's
// runs and lags behind them, so the run it lists as failed may have a
// later run that is running or has loaded since. start goes by the
// latest run the server describes: a running one is an error, a loaded
// one sends start back to the ledger (a batch started again under the ID
// of one that completed would be refused for good), and only a latest
// run that failed or was terminated gives the batch to run again.
func TestAPendingBatchIsJudgedByItsLatestRun(t *testing.T) {
	spec := contract.Spec{Range: contract.Range{Topic: "payments", Partition: 3, Start: 500, End: 1000}}
	listed := &commonpb.WorkflowExecution{WorkflowId: spec.ID(), RunId: "listed-run"}
	for _, c := range []struct {
		latest  enumspb.WorkflowExecutionStatus
		want    string // "" when the spec comes back
		wantErr error
	}{
		{latest: enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, wantErr: errLoadedSince},
		{latest: enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, want: "still running"},
		{latest: enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED},
		{latest: enumspb.WORKFLOW_EXECUTION_STATUS_FAILED},
	} {
		tc := &mocks.Client{}
		tc.On("ListWorkflow", mock.Anything, mock.Anything).Return(&workflowservice.ListWorkflowExecutionsResponse{
			Executions: []*workflowpb.WorkflowExecutionInfo{{Execution: listed, Status: enumspb.WORKFLOW_EXECUTION_STATUS_FAILED}},
		}, nil)
		tc.On("DescribeWorkflowExecution", mock.Anything, spec.ID(), "").Return(&workflowservice.DescribeWorkflowExecutionResponse{
			WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Execution: listed, Status: c.latest},
		}, nil)
		input, err := converter.GetDefaultDataConverter().ToPayloads(spec)
		if err != nil {
			t.Fatal(err)
		}
		history := &mocks.HistoryEventIterator{}
		history.On("HasNext").Return(true)
		history.On("Next").Return(&historypb.HistoryEvent{EventType: enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
			Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{
				WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{Input: input}}}, nil)
		tc.On("GetWorkflowHistory", mock.Anything, spec.ID(), "listed-run", false, mock.Anything).Return(history)

		o := &Operator{Config: config.Config{Topic: "payments"}, Temporal: tc}
		got, err := o.pendingBatch(context.Background(), 3, resumePoint{next: 500})
		switch {
		case c.wantErr != nil:
			if !errors.Is(err, c.wantErr) {
				t.Errorf("latest run %s: %v, want %v", c.latest, err, c.wantErr)
			}
		case c.want != "":
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("latest run %s: %v, want an error saying %q", c.latest, err, c.want)
			}
		default:
			if err != nil || got == nil || got.ID() != spec.ID() {
				t.Errorf("latest run %s: %v, %v; want batch %s to run again", c.latest, got, err, spec.ID())
			}
		}
	}

	// A batch from the ledger's offset that visibility already lists as
	// completed loaded after the ledger was read (its partition's run was
	// terminated by hand while it ran): start reads the ledger again
	// rather than plan that range a second time.
	tc := &mocks.Client{}
	tc.On("ListWorkflow", mock.Anything, mock.Anything).Return(&workflowservice.ListWorkflowExecutionsResponse{
		Executions: []*workflowpb.WorkflowExecutionInfo{{Execution: listed, Status: enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED}},
	}, nil)
	o := &Operator{Config: config.Config{Topic: "payments"}, Temporal: tc}
	if got, err := o.pendingBatch(context.Background(), 3, resumePoint{next: 500}); !errors.Is(err, errLoadedSince) {
		t.Errorf("a batch listed as completed at the ledger's offset: %v, %v; want %v", got, err, errLoadedSince)
	}
}
