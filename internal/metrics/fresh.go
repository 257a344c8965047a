package metrics

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lagStale is how long a partition's lag is exported after this worker
// last planned it: well above a caught-up partition's poll (5 s), well
// below the time a dashboard would show a moved partition twice.
const lagStale = 2 * time.Minute

// freshGauge is a GaugeVec whose series disappear once not set for
// stale: a partition that moved to another worker stops being reported
// here, instead of repeating its last value for ever beside the new
// worker's.
type freshGauge struct {
	vec     *prometheus.GaugeVec
	stale   time.Duration
	now     func() time.Time
	mu      sync.Mutex
	lastSet map[string]time.Time // joined label values → last set
}

func newFreshGauge(opts prometheus.GaugeOpts, labels []string, stale time.Duration) *freshGauge {
	return &freshGauge{vec: prometheus.NewGaugeVec(opts, labels), stale: stale, now: time.Now, lastSet: map[string]time.Time{}}
}

func (g *freshGauge) set(v float64, labels ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.vec.WithLabelValues(labels...).Set(v)
	g.lastSet[strings.Join(labels, "\x00")] = g.now()
}

func (g *freshGauge) Describe(ch chan<- *prometheus.Desc) { g.vec.Describe(ch) }

// Collect drops the series not set within stale, then collects the rest.
func (g *freshGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	now := g.now()
	for key, at := range g.lastSet {
		if now.Sub(at) > g.stale {
			g.vec.DeleteLabelValues(strings.Split(key, "\x00")...)
			delete(g.lastSet, key)
		}
	}
	g.mu.Unlock()
	g.vec.Collect(ch)
}
