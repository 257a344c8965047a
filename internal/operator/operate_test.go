package operator

import (
	"testing"

	workflowpb "go.temporal.io/api/workflow/v1"

	"github.com/paystream/paystream/contract"
)

func TestBatchesEndCountsOffsetsPastTheCommitted(t *testing.T) {
	child := func(start, end int64) *workflowpb.PendingChildExecutionInfo {
		return &workflowpb.PendingChildExecutionInfo{WorkflowId: contract.Range{Topic: "payments", Partition: 2, Start: start, End: end}.ID()}
	}
	for _, c := range []struct {
		name      string
		children  []*workflowpb.PendingChildExecutionInfo
		committed int64
		want      int64
	}{
		{"none running", nil, 500, 0},
		{"one batch", []*workflowpb.PendingChildExecutionInfo{child(500, 2500)}, 500, 2000},
		// A batch commits its offsets before its workflow ends.
		{"committed, not ended", []*workflowpb.PendingChildExecutionInfo{child(500, 2500), child(2500, 4000)}, 2500, 1500},
		{"not a batch", []*workflowpb.PendingChildExecutionInfo{{WorkflowId: "pool/paystream"}}, 500, 0},
	} {
		if got := batchesEnd(c.children, c.committed); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
