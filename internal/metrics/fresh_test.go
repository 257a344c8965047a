package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// series returns the lag gauge's exported values by partition label.
func series(t *testing.T, g *freshGauge) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(g)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "partition" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// TestLagOfAMovedPartitionIsNotExported: a partition's lag is exported
// while this worker plans it, and not once it has gone two minutes
// without a plan here (the pool moved it): no stale value beside the new
// worker's.
func TestLagOfAMovedPartitionIsNotExported(t *testing.T) {
	p := New()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.lag.now = func() time.Time { return clock }
	p.Lag("payments", 0, 500)
	p.Lag("payments", 1, 700)
	if got := series(t, p.lag); len(got) != 2 || got["0"] != 500 {
		t.Fatalf("lag series %v, want partitions 0 and 1", got)
	}
	clock = clock.Add(90 * time.Second)
	p.Lag("payments", 1, 0) // partition 1 is still planned here; 0 moved away
	if got := series(t, p.lag); len(got) != 2 {
		t.Fatalf("after 90 s: %v, want both still", got)
	}
	clock = clock.Add(time.Minute)
	if got := series(t, p.lag); len(got) != 1 || got["1"] != 0 {
		t.Fatalf("after 150 s: %v, want partition 1's alone, at 0", got)
	}
}
