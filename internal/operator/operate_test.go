package operator

import (
	"testing"
	"time"

	workflowpb "go.temporal.io/api/workflow/v1"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
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

func TestBatchIntervalKeepsTablesWithinTheBudget(t *testing.T) {
	bigquery := config.Default()
	bigquery.BigQueryEndpoint = "" // real BigQuery: the quota applies
	storage := bigquery
	storage.WriteMode = config.WriteModeStorageWrite
	none := bigquery
	none.LoadJobBudget = 0
	for _, c := range []struct {
		name       string
		cfg        config.Config
		partitions int
		want       time.Duration
	}{
		// 8 partitions × 24 h / 1,200 jobs: each table gets its 1,200.
		{"8 partitions", bigquery, 8, 9*time.Minute + 36*time.Second},
		{"1 partition", bigquery, 1, 72 * time.Second},
		{"the emulator has no quota", config.Default(), 8, 0},
		{"storagewrite spends no load jobs", storage, 8, 0},
		{"no budget", none, 8, 0},
	} {
		got := contract.BatchInterval(c.partitions, loadJobBudget(c.cfg))
		if got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if got > 0 {
			if perDay := float64(c.partitions) * float64(24*time.Hour) / float64(got); perDay > float64(c.cfg.LoadJobBudget) {
				t.Errorf("%s: %.0f batches a day across partitions, over the budget of %d", c.name, perDay, c.cfg.LoadJobBudget)
			}
		}
	}
}
