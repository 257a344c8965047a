// Package metrics holds what a worker exports to Prometheus on /metrics:
// paystream's own figures (batches, events by outcome, batch latency,
// Kafka lag, load retries) and the Temporal SDK's, through TemporalHandler.
// The names are the contract of deploy/grafana/paystream.json.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/paystream/paystream/internal/dedup"
)

// Pipeline is a worker's metrics. A nil *Pipeline records nothing, so
// code and tests without a registry pass nil.
type Pipeline struct {
	Registry *prometheus.Registry

	batches      *prometheus.CounterVec
	events       *prometheus.CounterVec
	batchLatency *prometheus.HistogramVec
	loadDuration *prometheus.HistogramVec
	lag          *freshGauge
	loadRetries  *prometheus.CounterVec
	offsetsLost  *prometheus.CounterVec
	loadJobs     *prometheus.CounterVec
	loadJobsDay  *quotaDay
	windowBuilds *prometheus.CounterVec
	floorRaises  *prometheus.CounterVec
	snapRefused  *prometheus.CounterVec
	columns      *prometheus.CounterVec
	lastLoaded   *prometheus.GaugeVec
	committed    *prometheus.GaugeVec
	logEnd       *prometheus.GaugeVec
}

// Metric names, as dashboards and alerts use them.
const (
	BatchesTotal        = "paystream_batches_total"
	EventsTotal         = "paystream_events_total"
	BatchLatencySeconds = "paystream_batch_latency_seconds"
	LoadDurationSeconds = "paystream_load_duration_seconds"
	KafkaLag            = "paystream_kafka_lag"
	LoadRetriesTotal    = "paystream_load_retries_total"
	DedupWindowBytes    = "paystream_dedup_window_bytes"
	OffsetLostTotal     = "paystream_partition_offset_lost_total"
	LoadJobsTotal       = "paystream_load_jobs_total"
	WindowBuildsTotal   = "paystream_dedup_window_builds_total"
	FloorRaisesTotal    = "paystream_dedup_window_floor_raises_total"
	LoadJobsToday       = "paystream_load_jobs_today"
	SnapshotsRefused    = "paystream_dedup_snapshots_refused_total"
	SchemaChangesTotal  = "paystream_schema_changes_total"
	// Every worker exports these for every partition of its topic from
	// the broker, whatever the partition's state (PartitionOffsets).
	PartitionLastLoaded = "paystream_partition_last_loaded_timestamp_seconds"
	PartitionCommitted  = "paystream_partition_committed_offset"
	PartitionLogEnd     = "paystream_partition_log_end_offset"
)

// Where a worker got a partition's dedup window it did not hold, the
// values of WindowBuildsTotal's source label.
const (
	WindowFromSnapshot = "snapshot" // a snapshot, and the log after it
	WindowFromLog      = "log"      // the whole window replayed from Kafka
	WindowEmpty        = "empty"    // the partition's first batch: nothing to replay
)

// Why a dedup snapshot was not used, the values of SnapshotsRefused's
// reason label.
const (
	SnapshotUnsigned = "signature" // not signed with a configured key, or changed since
	SnapshotInvalid  = "invalid"   // torn, over the ID bound, not a regular file, or not what the partition recorded
	SnapshotMismatch = "mismatch"  // another log, lateness or window: stale or misplaced, not forged
)

// Event outcomes, the values of EventsTotal's outcome label.
const (
	OutcomeLoaded    = "loaded"
	OutcomeDuplicate = "duplicate"
	OutcomeError     = "error"
	OutcomeLate      = "late"
)

// New returns a worker's metrics on a registry of their own, with the Go
// runtime's and the process's collectors.
func New() *Pipeline {
	reg := prometheus.NewRegistry()
	p := &Pipeline{
		Registry: reg,
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: BatchesTotal,
			Help: "Batches this worker loaded (each batch once, whichever attempt loaded it)."}, []string{"topic", "partition"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: EventsTotal,
			Help: "Records of loaded batches by outcome: loaded, duplicate, error, late."}, []string{"topic", "partition", "outcome"}),
		batchLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: BatchLatencySeconds,
			Help:    "From the Kafka timestamp of a batch's oldest record to its load completing: how stale the freshest rows can be.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600}}, []string{"topic", "partition"}),
		loadDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: LoadDurationSeconds,
			Help:    "Duration of Load activities that succeeded: all tables of one batch.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 12)}, []string{"topic"}),
		lag: newFreshGauge(prometheus.GaugeOpts{Name: KafkaLag,
			Help: "Records between a partition's next offset to ingest and its high watermark, at the last plan on this worker; a partition not planned here for 2 minutes (moved to another worker) is no longer exported."}, []string{"topic", "partition"}, lagStale),
		loadRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: LoadRetriesTotal,
			Help: "Load attempts after the first: activity retries, and load jobs tried again under their next job ID."}, []string{"kind"}),
		offsetsLost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: OffsetLostTotal,
			Help: "Plans that found a partition's next offset gone from its log (retention, or a re-created or truncated topic): the partition stopped and needs an operator."}, []string{"topic", "partition"}),
		columns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: SchemaChangesTotal,
			Help: "Typed columns batches on this worker started writing, by table and type: a schema's new field that got its column (schema_changes holds each, with its schema and batch)."}, []string{"table", "type"}),
		loadJobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: LoadJobsTotal,
			Help: "Load jobs this worker created that ended, by table and result (done, failed): failed ones count against BigQuery's 1,500 a table a day too. increase(...[24h]) summed over workers is the day's use."}, []string{"table", "result"}),
		floorRaises: prometheus.NewCounterVec(prometheus.CounterOpts{Name: FloorRaisesTotal,
			Help: "Times a partition's dedup window hit --max-window-ids and raised its watermark: records behind it are quarantined as late. Any increase needs a look (a producer's clock stopped, or the bound is too low for the traffic). The partition is in the worker's warning log line."}, []string{"topic"}),
		snapRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: SnapshotsRefused,
			Help: "Dedup snapshots a worker did not use, by reason (signature, invalid, mismatch); each window was rebuilt from the log instead. \"signature\" means something without the snapshot key wrote the snapshot volume, or the key was rotated out too early."}, []string{"topic", "reason"}),
		lastLoaded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: PartitionLastLoaded,
			Help: "Unix time of the partition's last load, as its offset commit after the load records it (0: no load recorded). Read from Kafka by every worker for every partition, whether its workflow runs, waits, failed or was terminated: every worker exports the same value, so aggregate with max by (topic, partition)."}, []string{"topic", "partition"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: PartitionCommitted,
			Help: "The consumer group's committed offset of the partition: the offset after the last record loaded (0 before any commit, so that log end minus it is what waits). From Kafka, as " + PartitionLastLoaded + "."}, []string{"topic", "partition"}),
		logEnd: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: PartitionLogEnd,
			Help: "The partition's log end offset (high watermark, open transactions included). From Kafka, as " + PartitionLastLoaded + "; minus " + PartitionCommitted + " it is the group's lag."}, []string{"topic", "partition"}),
		windowBuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: WindowBuildsTotal,
			Help: "Dedup windows this worker built because it did not hold them, by source (snapshot, log, empty). In steady state none is built: each partition stays on its worker. \"log\" is the slow one."}, []string{"topic", "source"}),
	}
	// The Go collector cannot see the windows' tables: they are outside
	// the Go heap, yet the bulk of a worker's memory.
	windowBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: DedupWindowBytes,
		Help: "Memory the dedup windows' tables hold outside the Go heap."}, func() float64 { return float64(dedup.OffHeapBytes()) })
	p.loadJobsDay = newQuotaDay(LoadJobsToday, "Load jobs this worker created since BigQuery's quota day began (midnight Pacific), by table, failed ones too: summed over workers, against the 1,500 a table a day.")
	reg.MustRegister(p.loadJobsDay)
	reg.MustRegister(p.batches, p.events, p.batchLatency, p.loadDuration, p.lag, p.loadRetries, p.offsetsLost, p.columns, p.loadJobs, p.windowBuilds, p.floorRaises, p.snapRefused, windowBytes,
		p.lastLoaded, p.committed, p.logEnd,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Retries are exported as zero before the first: a rate over a
	// series that does not exist yet would be empty, not 0.
	for _, kind := range []string{"activity", "job", "unreachable"} {
		p.loadRetries.WithLabelValues(kind)
	}
	return p
}

// BatchLoaded records a batch Load completed.
func (p *Pipeline) BatchLoaded(topic string, partition int, loaded, duplicates, errors, late int, oldest time.Time, took time.Duration) {
	if p == nil {
		return
	}
	part := strconv.Itoa(partition)
	p.batches.WithLabelValues(topic, part).Inc()
	for outcome, n := range map[string]int{OutcomeLoaded: loaded, OutcomeDuplicate: duplicates, OutcomeError: errors, OutcomeLate: late} {
		p.events.WithLabelValues(topic, part, outcome).Add(float64(n))
	}
	if !oldest.IsZero() {
		p.batchLatency.WithLabelValues(topic, part).Observe(time.Since(oldest).Seconds())
	}
	p.loadDuration.WithLabelValues(topic).Observe(took.Seconds())
}

// Lag records a partition's lag at a plan.
func (p *Pipeline) Lag(topic string, partition int, records int64) {
	if p != nil {
		p.lag.set(float64(records), topic, strconv.Itoa(partition))
	}
}

// PartitionOffsets records what Kafka holds of a partition: the group's
// committed offset (-1: none), the log end offset, and the time of the
// load the commit recorded (zero: none). No commit is exported as 0, not
// Kafka's -1: an empty partition then has nothing waiting (end - committed
// is 0), with no special case in every alert.
func (p *Pipeline) PartitionOffsets(topic string, partition int, committed, logEnd int64, lastLoaded time.Time) {
	if p == nil {
		return
	}
	part := strconv.Itoa(partition)
	p.committed.WithLabelValues(topic, part).Set(float64(max(committed, 0)))
	p.logEnd.WithLabelValues(topic, part).Set(float64(logEnd))
	loaded := 0.0
	if !lastLoaded.IsZero() {
		loaded = float64(lastLoaded.UnixNano()) / 1e9
	}
	p.lastLoaded.WithLabelValues(topic, part).Set(loaded)
}

// LoadRetried records a retry: kind "activity" (a Load attempt after the
// first), "job" (a load job ID after one that failed), "unreachable" (a
// batch's writes made again because BigQuery did not answer) or
// "schema_propagation" (a Storage Write stream did not see new columns
// yet).
func (p *Pipeline) LoadRetried(kind string) {
	if p != nil {
		p.loadRetries.WithLabelValues(kind).Inc()
	}
}

// SchemaChanged records a typed column a batch started writing.
func (p *Pipeline) SchemaChanged(table, typ string) {
	if p != nil {
		p.columns.WithLabelValues(table, typ).Inc()
	}
}

// OffsetLost records that a partition's next offset is no longer in its
// log: the partition stops with an error until an operator acts.
func (p *Pipeline) OffsetLost(topic string, partition int) {
	if p != nil {
		p.offsetsLost.WithLabelValues(topic, strconv.Itoa(partition)).Inc()
	}
}

// LoadJobFinished records a load job this worker created that ended:
// jobErr nil is done, anything else failed.
func (p *Pipeline) LoadJobFinished(table string, jobErr error) {
	if p == nil {
		return
	}
	result := "done"
	if jobErr != nil {
		result = "failed"
	}
	p.loadJobs.WithLabelValues(table, result).Inc()
	p.loadJobsDay.add(table)
}

// WindowBuilt records a dedup window built on this worker, from source
// (one of the Window* values).
func (p *Pipeline) WindowBuilt(topic, source string) {
	if p != nil {
		p.windowBuilds.WithLabelValues(topic, source).Inc()
		// Exported at zero from the topic's first window on, so that an
		// alert on its increase has a series to watch.
		p.floorRaises.WithLabelValues(topic)
	}
}

// SnapshotRefused records a dedup snapshot not used, for reason (one of
// the Snapshot* values).
func (p *Pipeline) SnapshotRefused(topic, reason string) {
	if p != nil {
		p.snapRefused.WithLabelValues(topic, reason).Inc()
	}
}

// WindowFloorRaised records that a partition's dedup window hit its ID
// bound and raised its watermark.
func (p *Pipeline) WindowFloorRaised(topic string) {
	if p != nil {
		p.floorRaises.WithLabelValues(topic).Inc()
	}
}
