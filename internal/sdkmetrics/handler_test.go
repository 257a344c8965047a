package sdkmetrics

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestTemporalMetricNames: the SDK's metrics are exported under the names
// Temporal's SDK dashboards query: counters end in _total, timers are
// histograms in seconds, gauges keep their name, all prefixed temporal_.
func TestTemporalMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := Handler(reg).WithTags(map[string]string{"namespace": "default"})
	h.Counter("temporal_request").Inc(3)
	h.Counter("long_request_failure").Inc(1)
	h.Counter("already_total").Inc(1)
	h.Timer("activity_execution_latency").Record(2 * time.Second)
	h.Gauge("temporal_worker_task_slots_available").Update(7)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	values := map[string]float64{}
	for _, f := range families {
		names = append(names, f.GetName())
		m := f.GetMetric()[0]
		switch {
		case m.Counter != nil:
			values[f.GetName()] = m.Counter.GetValue()
		case m.Histogram != nil:
			values[f.GetName()] = m.Histogram.GetSampleSum()
		case m.Gauge != nil:
			values[f.GetName()] = m.Gauge.GetValue()
		}
	}
	want := []string{"temporal_activity_execution_latency_seconds", "temporal_already_total", "temporal_long_request_failure_total",
		"temporal_request_total", "temporal_worker_task_slots_available"}
	if !slices.Equal(names, want) {
		t.Errorf("exported %v, want %v", names, want)
	}
	if values["temporal_request_total"] != 3 || values["temporal_activity_execution_latency_seconds"] != 2 || values["temporal_worker_task_slots_available"] != 7 {
		t.Errorf("values %v", values)
	}
}
