package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLoadJobsTodayResetsAtPacificMidnight: the count of today's load jobs
// per table starts again when BigQuery's quota day does, not at UTC
// midnight.
func TestLoadJobsTodayResetsAtPacificMidnight(t *testing.T) {
	q := newQuotaDay(LoadJobsToday, "test")
	at := time.Date(2026, 12, 3, 7, 59, 0, 0, time.UTC) // 23:59 in Los Angeles
	q.now = func() time.Time { return at }
	reg := prometheus.NewRegistry()
	reg.MustRegister(q)
	q.add("transactions")
	q.add("transactions")
	q.add("batch_ledger")
	at = at.Add(30 * time.Second)
	if got := today(t, reg); len(got) != 2 || got["transactions"] != 2 || got["batch_ledger"] != 1 {
		t.Fatalf("jobs today %v, want 2 transactions and 1 batch_ledger", got)
	}
	at = time.Date(2026, 12, 3, 8, 0, 1, 0, time.UTC) // 00:00:01 in Los Angeles
	if got := today(t, reg); len(got) != 0 {
		t.Errorf("jobs today %v after the quota day turned, want none", got)
	}
	q.add("transactions")
	if got := today(t, reg); got["transactions"] != 1 {
		t.Errorf("jobs today %v on the new day, want 1 transactions", got)
	}
}

// today reads the gauge's value per table.
func today(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}
