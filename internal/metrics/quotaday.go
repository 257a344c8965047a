package metrics

import (
	"sync"
	"time"
	_ "time/tzdata" // the worker image has no zoneinfo

	"github.com/prometheus/client_golang/prometheus"
)

// quotaZone is where BigQuery's daily quotas reset: midnight Pacific time.
var quotaZone = func() *time.Location {
	loc, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		panic(err) // time/tzdata is linked in
	}
	return loc
}()

// quotaDay counts, per table, the load jobs this worker created since the
// quota day began: BigQuery's 1,500 a table a day count every job, failed
// ones too, and reset at midnight Pacific time.
type quotaDay struct {
	mu    sync.Mutex
	day   string
	count map[string]float64
	now   func() time.Time
	desc  *prometheus.Desc
}

func newQuotaDay(name, help string) *quotaDay {
	return &quotaDay{count: map[string]float64{}, now: time.Now, desc: prometheus.NewDesc(name, help, []string{"table"}, nil)}
}

// add counts one job into table.
func (q *quotaDay) add(table string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll()
	q.count[table]++
}

// roll starts a new count when the quota day changed.
func (q *quotaDay) roll() {
	if day := q.now().In(quotaZone).Format(time.DateOnly); day != q.day {
		q.day, q.count = day, map[string]float64{}
	}
}

func (q *quotaDay) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q *quotaDay) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll()
	for table, n := range q.count {
		ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, n, table)
	}
}
