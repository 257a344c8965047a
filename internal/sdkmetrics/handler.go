// Package sdkmetrics exports the Temporal SDK's metrics to Prometheus, apart
// from the pipeline's own (internal/metrics) so that nothing below the
// worker's wiring depends on the SDK.
package sdkmetrics

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// Handler exports the Temporal SDK's metrics (task latencies,
// poll counts, activity and workflow outcomes, ...) to reg, named as the
// SDK names them with a "temporal_" prefix where they lack one. Timers
// become histograms in seconds.
func Handler(reg prometheus.Registerer) client.MetricsHandler {
	return &temporalHandler{vecs: &temporalVecs{reg: reg, byName: map[string]*temporalVec{}}}
}

type temporalHandler struct {
	vecs *temporalVecs
	tags map[string]string
}

// temporalVecs registers one vector per metric name. The SDK gives a name
// the same tag keys each time; should it not, the first set wins and
// other tags are dropped or left empty rather than failing registration.
type temporalVecs struct {
	reg    prometheus.Registerer
	mu     sync.Mutex
	byName map[string]*temporalVec
}

type temporalVec struct {
	labels    []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
}

func (h *temporalHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, tags)
	return &temporalHandler{vecs: h.vecs, tags: merged}
}

func (h *temporalHandler) Counter(name string) client.MetricsCounter {
	v, values := h.vecs.get(name, "counter", h.tags)
	c := v.counter.WithLabelValues(values...)
	return counterFunc(func(d int64) { c.Add(float64(d)) })
}

func (h *temporalHandler) Gauge(name string) client.MetricsGauge {
	v, values := h.vecs.get(name, "gauge", h.tags)
	g := v.gauge.WithLabelValues(values...)
	return gaugeFunc(g.Set)
}

func (h *temporalHandler) Timer(name string) client.MetricsTimer {
	v, values := h.vecs.get(name, "timer", h.tags)
	o := v.histogram.WithLabelValues(values...)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

type (
	counterFunc func(int64)
	gaugeFunc   func(float64)
	timerFunc   func(time.Duration)
)

func (f counterFunc) Inc(d int64)          { f(d) }
func (f gaugeFunc) Update(v float64)       { f(v) }
func (f timerFunc) Record(d time.Duration) { f(d) }

func (t *temporalVecs) get(name, kind string, tags map[string]string) (*temporalVec, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	full := promName(name, kind)
	v := t.byName[full]
	if v == nil {
		v = &temporalVec{labels: slices.Sorted(maps.Keys(tags))}
		help := "Temporal SDK metric " + name + "."
		var c prometheus.Collector
		switch kind {
		case "counter":
			v.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: full, Help: help}, v.labels)
			c = v.counter
		case "gauge":
			v.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: full, Help: help}, v.labels)
			c = v.gauge
		default:
			v.histogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: full, Help: help,
				Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, v.labels)
			c = v.histogram
		}
		// A name the SDK uses as two kinds would collide; it is then
		// kept unregistered rather than crash the worker.
		_ = t.reg.Register(c)
		t.byName[full] = v
	}
	values := make([]string, len(v.labels))
	for i, l := range v.labels {
		values[i] = tags[l]
	}
	return v, values
}

// promName makes an SDK metric name a Prometheus one: the temporal_
// prefix, '_' for other characters, _seconds on timers and _total on
// counters, the names Temporal's own SDK dashboards query.
func promName(name, kind string) string {
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, name)
	if !strings.HasPrefix(name, "temporal_") {
		name = "temporal_" + name
	}
	if kind == "timer" && !strings.HasSuffix(name, "_seconds") {
		name += "_seconds"
	}
	if kind == "counter" && !strings.HasSuffix(name, "_total") {
		name += "_total"
	}
	return name
}
