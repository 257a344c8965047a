package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// steadyState is the long run at a fixed produce rate: latency from a
// record's produce time to its batch being visible in BigQuery, the
// worker's memory over time, and recovery after the worker is killed.
type steadyState struct {
	Sink       string  `json:"sink"`
	WriteMode  string  `json:"write_mode,omitempty"` // as catchUp's
	Rate       float64 `json:"rate"`
	Seconds    float64 `json:"seconds"`
	Partitions int     `json:"partitions"`
	Events     int     `json:"events"`
	// Latency of records in batches visible before the kill, in seconds.
	LatencyP50 float64 `json:"latency_p50_s"`
	LatencyP95 float64 `json:"latency_p95_s"`
	LatencyP99 float64 `json:"latency_p99_s"`
	LatencyMax float64 `json:"latency_max_s"`
	// Memory of the first worker until it was killed: peak, and peaks of
	// the first and second half, which must be alike (flat, not growing).
	// When the worker ran past the lateness window (WindowFilledS), the
	// halves are of the time after it: before, the window is filling.
	WindowFilledS   float64     `json:"window_filled_s,omitempty"`
	PeakRSSMB       float64     `json:"worker_peak_rss_mb"`
	FirstHalfPeakMB float64     `json:"first_half_peak_rss_mb"`
	LastHalfPeakMB  float64     `json:"second_half_peak_rss_mb"`
	RSS             []rssSample `json:"rss_samples"`
	// Recovery: seconds from SIGKILL of the worker (a replacement starting
	// at once, as a Deployment's would) until each partition's next batch
	// is visible; the slowest partition and the median.
	RecoveryMaxS    float64 `json:"recovery_max_s"`
	RecoveryMedianS float64 `json:"recovery_median_s"`
	// RecoveryBreakdown is where the slowest partition's recovery went.
	RecoveryBreakdown *recoveryBreakdown `json:"recovery_breakdown,omitempty"`
	// Survivor: two workers ran, and the one left took over the killed
	// one's partitions from the shared snapshots; no replacement started.
	Survivor bool `json:"survivor,omitempty"`
	// What the worker's log says of where a batch's time went: the Load
	// activity (with the discard sink, only the batch_ledger load job
	// into the emulator) before the kill, median and p95, and how the
	// replacement got its dedup windows back (slowest partition).
	LoadP50S          float64 `json:"load_p50_s"`
	LoadP95S          float64 `json:"load_p95_s"`
	WindowRestoreMaxS float64 `json:"window_restore_max_s"`
	WindowRestoredBy  string  `json:"window_restored_by,omitempty"`
	// Cores each process kept busy from the start until the kill.
	Cores map[string]float64 `json:"cores,omitempty"`
	// HeapTop is `go tool pprof -top` of the worker's live heap just
	// before the kill: what holds its memory.
	HeapTop []string `json:"heap_top,omitempty"`
	// DedupWindowMB is what the dedup windows' tables held outside the Go
	// heap just before the kill: part of the RSS, not of HeapTop.
	DedupWindowMB float64 `json:"dedup_window_mb,omitempty"`
	// FellBehind: still not caught up catchUpGrace after the producer
	// stopped, so the rate is more than the sink sustains.
	FellBehind bool     `json:"fell_behind"`
	Reconciled bool     `json:"reconciled"`
	Mismatches []string `json:"mismatches,omitempty"`
	// Cost, in a run without a kill, is what Temporal billed and stored
	// for it (see temporalCost).
	Cost *temporalCost `json:"temporal_cost,omitempty"`
	// Error is why the run did not finish; its other figures are those
	// it had by then.
	Error string `json:"error,omitempty"`
}

// The discard sink still writes batch_ledger, so latency is measured the
// same way with either sink: with discard it is the pipeline's own.

// ledgerSeen is a batch and when the benchmark first saw its ledger row.
type ledgerSeen struct {
	batchID    string
	partition  int
	start, end int64
	loadedAt   time.Time
	seen       time.Time
}

// steadySpec is one steady run: sink and write mode, partitions, produce
// rate and length, and what happens to the worker.
type steadySpec struct {
	sink, writeMode string
	partitions      int
	rate            float64
	length          time.Duration
	// survivor: two workers share the partitions and one is killed, with
	// no replacement.
	survivor bool
	// noKill: no worker is killed (the cost and scaling runs), and the
	// run's Temporal cost is read back from its histories.
	noKill bool
	// outage: instead of a worker killed, this server (outageTemporal,
	// outageKafka, outageBigQuery) is down for outageFor; recovery counts
	// from its return.
	outage    string
	outageFor time.Duration
}

// The servers an outage run stops.
const (
	outageTemporal = "temporal"
	outageKafka    = "kafka"
	outageBigQuery = "bigquery"
)

// serverOutage stops server for d and starts it again on the same ports
// and state.
func (e *env) serverOutage(ctx context.Context, server string, d time.Duration) error {
	var start func() error
	switch server {
	case outageTemporal:
		e.stack.StopTemporal()
		start = func() error { return e.stack.StartTemporal(ctx) }
	case outageKafka:
		e.stack.StopKafka()
		start = e.stack.StartKafka
	case outageBigQuery:
		e.stack.StopBigQuery()
		start = func() error { return e.stack.StartBigQuery(ctx) }
	default:
		return fmt.Errorf("no server %q to stop", server)
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if err := start(); err != nil {
		return fmt.Errorf("start %s again after its outage: %w", server, err)
	}
	return nil
}

// steadyRun runs the pipeline at rate for length and kills a worker near
// the end, unless noKill. With survivor unset one worker runs and a
// replacement starts at the kill, as a restarted container would; with it
// set two workers share the partitions from the start, and the one left
// takes over the killed one's partitions, windows included, with no
// replacement.
func (e *env) steadyRun(ctx context.Context, s steadySpec) (steadyState, error) {
	sink, writeMode, partitions, rate, length, survivor := s.sink, s.writeMode, s.partitions, s.rate, s.length, s.survivor
	res := steadyState{Sink: sink, WriteMode: writeMode, Rate: rate, Partitions: partitions, Survivor: survivor}
	cfg, _, err := e.newRun(ctx, sink, writeMode, partitions, 0)
	if err != nil {
		return res, err
	}
	first, err := e.startWorker(ctx, cfg, e.workerMemoryLimit)
	if err != nil {
		return res, err
	}
	op := e.operator(cfg, operator.DefaultTuning().MaxRecords)
	var other *workerProc
	survivorLog := strings.TrimSuffix(e.workerLog(cfg), ".log") + ".survivor.log"
	if survivor {
		if other, err = e.startWorkerLogging(ctx, cfg, e.workerMemoryLimit, survivorLog); err != nil {
			first.kill()
			return res, err
		}
		defer other.stop()
		if err := e.waitPool(ctx, op, 2); err != nil {
			first.kill()
			return res, err
		}
	}
	if _, err := op.Start(ctx); err != nil {
		first.kill()
		return res, err
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var (
		mu   sync.Mutex
		seen []ledgerSeen
	)
	watchErr := make(chan error, 1)
	go func() { watchErr <- e.watchLedger(watchCtx, cfg, &mu, &seen) }()

	events := int(rate * length.Seconds())
	produced := make(chan error, 1)
	var manifest simulation.Manifest
	go func() {
		var err error
		// Event time advances at the produce rate, as a live stream's
		// does, so the lateness window holds what it would in production.
		opts := simulation.DefaultOptions()
		opts.EventRate = rate
		manifest, err = simulation.Produce(ctx, opts, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: events, Rate: rate})
		produced <- err
	}()
	began := time.Now()
	cpu := e.startCPU(first)

	// Kill the worker three quarters in (a minute before the end of a long
	// run, so memory is seen as long as it can be); a replacement starts
	// at once. A run without a kill measures until the producer is done.
	var killedAt, workerUp time.Time
	var second *workerProc
	logPath := e.workerLog(cfg)
	if s.noKill {
		defer first.stop()
		if err := <-produced; err != nil {
			return res, err
		}
	} else {
		select {
		case <-time.After(killAt(length)):
		case err := <-produced:
			first.kill()
			return res, fmt.Errorf("producer stopped early: %v", err)
		}
		res.Cores = coresSince(cpu, began)
		e.lookInside(ctx, first, sink, &res)
		if s.outage != "" {
			if err := e.serverOutage(ctx, s.outage, s.outageFor); err != nil {
				first.kill()
				return res, err
			}
			defer first.stop()
		} else {
			first.kill()
		}
		killedAt = time.Now() // or the server's return
		res.RSS = first.rss()
		res.LoadP50S, res.LoadP95S = loadTimes(logPath)
		switch {
		case s.outage != "": // the worker rode the outage out
		case survivor:
			logPath = survivorLog // where the killed worker's windows come back
		default:
			if second, err = e.startWorker(ctx, cfg, e.workerMemoryLimit); err != nil {
				return res, err
			}
			defer second.stop()
			workerUp = time.Now()
		}
		if err := <-produced; err != nil {
			return res, err
		}
	}
	// A sink slower than the rate leaves a backlog; past a grace period
	// that is the result (the sink cannot sustain the rate), not an error.
	waitCtx, cancel := context.WithTimeout(ctx, catchUpGrace)
	defer cancel()
	if err := op.WaitCaughtUp(waitCtx, nil); err != nil {
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return res, err
		}
		res.FellBehind = true
	}
	res.Seconds = time.Since(began).Seconds()
	time.Sleep(time.Second) // the watcher's last look
	stopWatch()
	if err := <-watchErr; err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	if _, err := op.Stop(ctx); err != nil {
		return res, err
	}
	res.Events = manifest.Records
	if s.noKill {
		// Every batch counts toward latency; the cost is the whole run's.
		killedAt = time.Now()
		res.Cores = coresSince(cpu, began)
		e.lookInside(ctx, first, sink, &res)
		res.RSS = first.rss()
		res.LoadP50S, res.LoadP95S = loadTimes(logPath)
		cost, err := e.measureTemporalCost(ctx, cfg, manifest.Records)
		if err != nil {
			return res, err
		}
		cost.addHeartbeats(ctx, first)
		cost.addServerCPU(cpu.used()["temporal"], res.Seconds)
		res.Cost = &cost
	}

	if res.FellBehind {
		res.Mismatches = []string{fmt.Sprintf("not caught up %s after the producer stopped: the sink cannot sustain %.0f events/s", catchUpGrace, rate)}
	} else {
		rep, err := op.Reconcile(ctx, &manifest)
		if err != nil {
			return res, err
		}
		res.Reconciled = rep.OK()
		for _, c := range rep.Checks {
			if !c.OK {
				res.Mismatches = append(res.Mismatches, fmt.Sprintf("%s: got %s, want %s", c.Name, c.Got, c.Want))
			}
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if err := e.latencies(ctx, cfg, partitions, seen, killedAt, &res); err != nil {
		return res, err
	}
	if !s.noKill {
		res.RecoveryMaxS, res.RecoveryMedianS = recovery(seen, partitions, killedAt)
		if bd, err := e.breakDownRecovery(ctx, cfg, seen, killedAt, workerUp); err != nil {
			e.logf("  recovery not broken down: %v", err)
		} else {
			res.RecoveryBreakdown = &bd
		}
	}
	// The replacement's log: each partition's window came from a snapshot
	// or from a replay of the log.
	for by, msg := range map[string]string{"snapshot": "dedup window loaded from its snapshot", "replay of the log": "dedup window rebuilt from the log"} {
		for _, d := range logDurations(logPath, msg) {
			if d > res.WindowRestoreMaxS {
				res.WindowRestoreMaxS, res.WindowRestoredBy = d, by
			}
		}
	}
	res.PeakRSSMB, res.FirstHalfPeakMB, res.LastHalfPeakMB, res.WindowFilledS = rssPeaks(res.RSS, cfg.AllowedLateness)
	return res, nil
}

// steadyOrError is steadyRun for the benchmark's parts: a run that fails
// (a server timing out under the load) is kept with its error, not allowed
// to throw away what the rest measured; only an ended ctx is an error.
func (e *env) steadyOrError(ctx context.Context, s steadySpec) (steadyState, error) {
	st, err := e.steadyRun(ctx, s)
	if err != nil {
		if ctx.Err() != nil {
			return st, err
		}
		st.Error = err.Error()
		e.logf("  failed: %v", err)
	}
	return st, nil
}

// coresSince is the cores each process kept busy since began.
func coresSince(cpu *cpuMeter, began time.Time) map[string]float64 {
	cores := map[string]float64{}
	for name, s := range cpu.used() {
		cores[name] = s / time.Since(began).Seconds()
	}
	return cores
}

// lookInside reads what holds the worker's memory: the dedup windows'
// bytes and the live heap's largest holders.
func (e *env) lookInside(ctx context.Context, w *workerProc, sink string, res *steadyState) {
	if v, err := w.metric(ctx, metrics.DedupWindowBytes); err != nil {
		e.logf("  dedup window bytes not read: %v", err)
	} else {
		res.DedupWindowMB = v / 1e6
	}
	if top, err := w.heapTop(ctx, filepath.Join(e.dir, "heap-"+sink+".pb.gz")); err != nil {
		res.HeapTop = []string{err.Error()}
	} else {
		res.HeapTop = top
	}
}

// loadTimes are the median and p95 of the Load activity in a worker's log.
func loadTimes(logPath string) (p50, p95 float64) {
	loads := logDurations(logPath, "load done")
	if len(loads) == 0 {
		return 0, 0
	}
	slices.Sort(loads)
	return percentile(loads, 50), percentile(loads, 95)
}

// catchUpGrace is how long the steady run waits for the backlog once the
// producer stopped.
const catchUpGrace = 2 * time.Minute

// watchLedger polls batch_ledger and notes when each batch first shows.
// The ledger row is written after a batch's other tables, so when it shows
// every row of the batch is visible.
//
// Each query is a job that the emulator keeps, with its result, so the
// watcher asks no more than it must: twice a second, and only for rows
// loaded lately. A ledger row's loaded_at is set when its batch's rows are
// built, seconds before it is visible, so a minute behind the newest one
// seen misses none.
func (e *env) watchLedger(ctx context.Context, cfg config.Config, mu *sync.Mutex, seen *[]ledgerSeen) error {
	// Through an outage of the emulator, the watch dials again every two
	// seconds at most, as the worker's writes do: the Go client's own
	// backoff (to 32 s) would count its wait as the pipeline's recovery.
	ctx = warehouse.WaitForServer(ctx)
	known := map[string]bool{}
	q := e.bq.Query(fmt.Sprintf("SELECT batch_id, kafka_partition, start_offset, end_offset, loaded_at FROM `%s.%s.batch_ledger` WHERE loaded_at >= @since",
		e.bq.Project(), cfg.BigQueryDataset))
	newest := time.Unix(0, 0)
	var failedSince time.Time
	for {
		q.Parameters = []bigquery.QueryParameter{{Name: "since", Value: newest.Add(-time.Minute)}}
		it, err := q.Read(ctx)
		if err == nil {
			now := time.Now()
			for {
				var row struct {
					BatchID        string    `bigquery:"batch_id"`
					KafkaPartition int64     `bigquery:"kafka_partition"`
					StartOffset    int64     `bigquery:"start_offset"`
					EndOffset      int64     `bigquery:"end_offset"`
					LoadedAt       time.Time `bigquery:"loaded_at"`
				}
				err = it.Next(&row)
				if errors.Is(err, iterator.Done) {
					err = nil
					break
				}
				if err != nil {
					break
				}
				if row.LoadedAt.After(newest) {
					newest = row.LoadedAt
				}
				if known[row.BatchID] {
					continue
				}
				known[row.BatchID] = true
				mu.Lock()
				*seen = append(*seen, ledgerSeen{row.BatchID, int(row.KafkaPartition), row.StartOffset, row.EndOffset, row.LoadedAt, now})
				mu.Unlock()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The emulator's SQLite can answer a read with "table is locked"
		// while an append writes the table; BigQuery's reads never wait
		// on writes, so a failed look is looked again, up to a point.
		switch {
		case err == nil:
			failedSince = time.Time{}
		case failedSince.IsZero():
			failedSince = time.Now()
		case time.Since(failedSince) > 30*time.Second:
			return fmt.Errorf("watch batch_ledger: failing for 30 s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// latencies reads every record's produce time back from Kafka and measures
// it against when its batch became visible, for batches visible before the
// kill: the recovery figure covers the records the kill delayed.
func (e *env) latencies(ctx context.Context, cfg config.Config, partitions int, seen []ledgerSeen, killedAt time.Time, res *steadyState) error {
	byPartition := make([][]ledgerSeen, partitions)
	for _, s := range seen {
		byPartition[s.partition] = append(byPartition[s.partition], s)
	}
	var lat []float64
	for p := range partitions {
		batches := byPartition[p]
		slices.SortFunc(batches, func(a, b ledgerSeen) int { return int(a.start - b.start) })
		i := 0
		err := kafkalog.ReadRange(ctx, cfg.Kafka(), cfg.Topic, p, 0, batchesEnd(batches), func(r kafkalog.Record) error {
			for i < len(batches) && r.Offset >= batches[i].end {
				i++
			}
			if i == len(batches) || r.Offset < batches[i].start {
				return fmt.Errorf("offset %d of partition %d is in no ledger batch", r.Offset, p)
			}
			if batches[i].seen.Before(killedAt) {
				lat = append(lat, batches[i].seen.Sub(r.Time).Seconds())
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(lat) == 0 {
		return errors.New("no latency measured: no batch was seen before the kill")
	}
	slices.Sort(lat)
	res.LatencyP50, res.LatencyP95, res.LatencyP99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	res.LatencyMax = lat[len(lat)-1]
	return nil
}

func batchesEnd(b []ledgerSeen) int64 {
	if len(b) == 0 {
		return 0
	}
	return b[len(b)-1].end
}

// recovery is, per partition, the time from the kill until its first batch
// built after the kill was visible; -1 when some partition had none by the
// end of the run (a backlog the run did not work off).
func recovery(seen []ledgerSeen, partitions int, killedAt time.Time) (maxS, medianS float64) {
	first := make([]float64, partitions)
	for _, s := range seen {
		if s.loadedAt.After(killedAt) {
			d := s.seen.Sub(killedAt).Seconds()
			if first[s.partition] == 0 || d < first[s.partition] {
				first[s.partition] = d
			}
		}
	}
	if slices.Contains(first, 0) {
		return -1, -1
	}
	slices.Sort(first)
	return first[len(first)-1], percentile(first, 50)
}

// rssPeaks returns the peak, and the peaks of the first and second half of
// the run, in MiB; the first 10% are left out of the halves (start-up).
// When the samples go on two minutes past window (event time runs at the
// produce rate, so the lateness window is full by then), the halves are of
// the time after it, and filled says when that was.
func rssPeaks(samples []rssSample, window time.Duration) (peak, first, second, filledS float64) {
	if len(samples) == 0 {
		return 0, 0, 0, 0
	}
	end := samples[len(samples)-1].At
	from := end / 10
	if end >= window+2*time.Minute {
		from, filledS = window, window.Seconds()
	}
	mid := from + (end-from)/2
	for _, s := range samples {
		mb := float64(s.RSS) / (1 << 20)
		peak = max(peak, mb)
		switch {
		case s.At < from:
		case s.At < mid:
			first = max(first, mb)
		default:
			second = max(second, mb)
		}
	}
	return peak, first, second, filledS
}

// logDurations returns the "took" seconds of every line of a worker's JSON
// log whose message is msg.
func logDurations(path, msg string) []float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []float64
	for line := range strings.SplitSeq(string(b), "\n") {
		var entry struct {
			Msg  string  `json:"msg"`
			Took float64 `json:"took"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == msg {
			out = append(out, entry.Took)
		}
	}
	return out
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func queryInt(ctx context.Context, bq *bigquery.Client, sql string) (int64, error) {
	it, err := bq.Query(sql).Read(ctx)
	if err != nil {
		return 0, err
	}
	var row []bigquery.Value
	if err := it.Next(&row); err != nil {
		return 0, err
	}
	n, _ := row[0].(int64)
	return n, nil
}

// waitPool waits until the run's worker pool has n members.
func (e *env) waitPool(ctx context.Context, op *operator.Operator, n int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if st, err := op.Pool(ctx); err == nil && st != nil && len(st.Members) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the worker pool of %s never had %d members", op.Config.TaskQueue, n)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
