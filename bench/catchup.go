package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/engine"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/searchattr"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// catchUp is one catch-up run: events produced first, then ingested from
// "start" until every partition's committed offset reaches its end, then
// reconciled against the simulator's manifest.
type catchUp struct {
	Driver string `json:"driver"` // temporal, loop (same activities, no Temporal), loader (rows only)
	Sink   string `json:"sink"`
	// Format is the records' format: "" for JSON, avro.
	Format string `json:"format,omitempty"`
	// WriteMode is how the bigquery sink wrote: load or storagewrite
	// (runs from before it was measured have none: load).
	WriteMode  string  `json:"write_mode,omitempty"`
	Partitions int     `json:"partitions"`
	BatchSize  int     `json:"batch_size"`
	Events     int     `json:"events"`
	Seconds    float64 `json:"seconds"`
	EventsPerS float64 `json:"events_per_s"`
	// Reconciled is true when every reconciliation check passed (for the
	// discard sink: offsets and ledger totals, as no other rows exist).
	Reconciled   bool     `json:"reconciled"`
	Mismatches   []string `json:"mismatches,omitempty"`
	WorkerPeakMB float64  `json:"worker_peak_rss_mb,omitempty"`
	// CPUSeconds is the CPU each process used during the run; divided by
	// Seconds it says how many cores each kept busy.
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	Batches    int                `json:"batches,omitempty"`
}

// temporalRun ingests with a worker process and PartitionIngest workflows.
// With profiled set, it profiles the worker over the run, and the
// Temporal server where perf is installed, into it.
func (e *env) temporalRun(ctx context.Context, sink, writeMode string, partitions, batchSize, events int, profiled *runSamples) (catchUp, config.Config, error) {
	res := catchUp{Driver: "temporal", Sink: sink, WriteMode: writeMode, Partitions: partitions, BatchSize: batchSize}
	if e.avro {
		res.Format = "avro"
	}
	cfg, m, err := e.newRun(ctx, sink, writeMode, partitions, events)
	if err != nil {
		return res, cfg, err
	}
	w, err := e.startWorker(ctx, cfg, "")
	if err != nil {
		return res, cfg, err
	}
	defer w.stop()
	op := e.operator(cfg, batchSize)
	cpu := e.startCPU(w)
	began := time.Now()
	if _, err := op.Start(ctx); err != nil {
		return res, cfg, err
	}
	var profiles sync.WaitGroup
	if profiled != nil {
		seconds := profileSeconds(events)
		profiles.Go(func() {
			var err error
			if profiled.worker, err = w.cpuProfile(ctx, seconds, e.profiles+".worker.cpu.pprof"); err != nil {
				e.logf("  worker CPU profile: %v", err)
			}
		})
		profiles.Go(func() {
			temporal, _ := e.stack.ServerPIDs()
			var err error
			if profiled.server, err = profileServer(ctx, temporal, seconds, filepath.Join(e.dir, cfg.TaskQueue+".temporal.perf")); err != nil {
				e.logf("  Temporal server CPU profile: %v", err)
			}
		})
	}
	if err := op.WaitCaughtUp(ctx, nil); err != nil {
		return res, cfg, err
	}
	res.Seconds = time.Since(began).Seconds()
	res.CPUSeconds = cpu.used()
	profiles.Wait()
	if _, err := op.Stop(ctx); err != nil {
		return res, cfg, err
	}
	res.WorkerPeakMB = float64(w.peakRSS()) / (1 << 20)
	return res, cfg, e.finish(ctx, op, &m, &res)
}

// finish reconciles a run and fills in its rate.
func (e *env) finish(ctx context.Context, op *operator.Operator, m *simulation.Manifest, res *catchUp) error {
	res.Events = m.Records
	res.EventsPerS = float64(m.Records) / res.Seconds
	rep, err := op.Reconcile(ctx, m)
	if err != nil {
		return fmt.Errorf("reconcile %s: %w", op.Config.Topic, err)
	}
	res.Reconciled = rep.OK()
	for _, c := range rep.Checks {
		if !c.OK {
			res.Mismatches = append(res.Mismatches, fmt.Sprintf("%s: got %s, want %s", c.Name, c.Got, c.Want))
		}
	}
	batches, err := queryInt(ctx, e.bq, fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.batch_ledger`", e.bq.Project(), op.Config.BigQueryDataset))
	res.Batches = int(batches)
	return err
}

// loopRun drives the same activity code with a plain loop per partition
// in this process: plan, dedup, enrich, load (which commits), no Temporal. The
// ratio to temporalRun is what orchestration costs.
//
// With profiled set, it profiles this process while the loop runs and
// returns the samples by part there.
func (e *env) loopRun(ctx context.Context, sink string, partitions, batchSize, events int, profiled *map[string]time.Duration) (catchUp, error) {
	res := catchUp{Driver: "loop", Sink: sink, Partitions: partitions, BatchSize: batchSize}
	cfg, m, err := e.newRun(ctx, sink, config.WriteModeLoad, partitions, events)
	if err != nil {
		return res, err
	}
	eng := e.engine(cfg)
	defer eng.Close()
	tuning := operator.DefaultTuning()
	run := func() error {
		cpu := e.startCPU(nil)
		began := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		for p := range partitions {
			g.Go(func() error {
				return eachBatch(gctx, eng, cfg, p, batchSize, tuning.MaxBytes, func(spec contract.Spec, d contract.Decisions) error {
					_, err := eng.Write(gctx, contract.LoadInput{Spec: spec, Decisions: d}) // it commits the offset too
					return err
				})
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		res.Seconds = time.Since(began).Seconds()
		res.CPUSeconds = cpu.used()
		return nil
	}
	if profiled != nil {
		*profiled, err = profileLoop(ctx, e.profiles+".loop.cpu.pprof", run)
	} else {
		err = run()
	}
	if err != nil {
		return res, err
	}
	return res, e.finish(ctx, e.operator(cfg, batchSize), &m, &res)
}

func (e *env) engine(cfg config.Config) *engine.Engine {
	return engine.New(engine.Config{Kafka: cfg.Kafka(), ConsumerGroup: cfg.ConsumerGroup, BigQuery: e.bq,
		Dataset: cfg.BigQueryDataset, Emulator: true, Discard: cfg.Sink == config.SinkDiscard})
}

// eachBatch plans a partition's batches from its start to its current end
// and runs dedup on each, as PartitionIngest and MicroBatch do, handing
// the decided batch to fn (Load scores it, as in the workflows).
func eachBatch(ctx context.Context, eng *engine.Engine, cfg config.Config, p, batchSize int, maxBytes int64,
	fn func(contract.Spec, contract.Decisions) error) error {
	b, err := kafkalog.BoundsOf(ctx, cfg.Kafka(), cfg.Topic, p)
	if err != nil {
		return err
	}
	next, window := b.First, contract.Window{Start: b.First}
	for {
		plan, err := eng.Plan(ctx, contract.PlanInput{Topic: cfg.Topic, Partition: p, Next: next, MaxRecords: batchSize, MaxBytes: maxBytes,
			AllowedLateness: cfg.AllowedLateness})
		if err != nil {
			return err
		}
		if plan.End == next {
			return nil // everything produced before the run is done
		}
		spec := contract.Spec{Range: contract.Range{Topic: cfg.Topic, Partition: p, Start: next, End: plan.End}, Window: window, AllowedLateness: cfg.AllowedLateness,
			FraudRules: contract.FraudRules}
		d, err := eng.Decide(ctx, spec)
		if err != nil {
			return err
		}
		if err := fn(spec, d); err != nil {
			return err
		}
		next, window = plan.End, d.Next
	}
}

// loaderRun measures the emulator's own ingest rate for the pipeline's
// rows: every batch's rows are built first, untimed, then loaded with the
// same job sizes and one loader per partition, nothing else running.
func (e *env) loaderRun(ctx context.Context, partitions, batchSize, events int) (catchUp, error) {
	res := catchUp{Driver: "loader", Sink: config.SinkBigQuery, Partitions: partitions, BatchSize: batchSize}
	cfg, m, err := e.newRun(ctx, config.SinkBigQuery, config.WriteModeLoad, partitions, events)
	if err != nil {
		return res, err
	}
	eng := e.engine(cfg)
	defer eng.Close()
	type job struct {
		id   string
		rows map[string][]byte // newline-delimited JSON, as load jobs send it
	}
	jobs := make([][]job, partitions)
	for p := range partitions {
		err := eachBatch(ctx, eng, cfg, p, batchSize, operator.DefaultTuning().MaxBytes, func(spec contract.Spec, d contract.Decisions) error {
			tables, _, err := eng.BuildRows(ctx, contract.LoadInput{Spec: spec, Decisions: d}, time.Now().UTC())
			ndjson := map[string][]byte{}
			for table, rows := range tables {
				ndjson[table] = warehouse.NDJSON(nil, rows)
			}
			jobs[p] = append(jobs[p], job{spec.ID(), ndjson})
			return err
		})
		if err != nil {
			return res, err
		}
	}
	cpu := e.startCPU(nil)
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for p := range partitions {
		g.Go(func() error {
			loader := warehouse.Loader{Client: e.bq, Dataset: cfg.BigQueryDataset}
			for _, j := range jobs[p] {
				for _, table := range contract.LoadOrder {
					if len(j.rows[table]) == 0 {
						continue
					}
					if err := loader.Load(gctx, table, func(n int) string { return contract.LoadJobID(j.id, table, n) }, j.rows[table]); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	res.Seconds = time.Since(began).Seconds()
	res.CPUSeconds = cpu.used()
	// Offsets are not committed by a plain loader; check the tables only.
	res.Events = m.Records
	res.EventsPerS = float64(m.Records) / res.Seconds
	rows, err := queryInt(ctx, e.bq, fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.transactions`", e.bq.Project(), cfg.BigQueryDataset))
	if err != nil {
		return res, err
	}
	res.Reconciled = rows == int64(m.UniqueIDs)
	if !res.Reconciled {
		res.Mismatches = []string{fmt.Sprintf("transactions: got %d rows, want %d", rows, m.UniqueIDs)}
	}
	return res, nil
}

// temporalCost is what Temporal stores for a run's workflows.
type temporalCost struct {
	Batches              int     `json:"batches"`
	Events               int     `json:"events"`
	HistoryEvents        int     `json:"history_events"`
	HistoryBytes         int64   `json:"history_bytes"`
	EventsPerBatch       float64 `json:"history_events_per_batch"`
	BytesPerBatch        float64 `json:"history_bytes_per_batch"`
	EventsPer1000Records float64 `json:"history_events_per_1000_events"`
	BytesPer1000Records  float64 `json:"history_bytes_per_1000_events"`
	// PerBatchByType is how many events of each type a batch adds to
	// the histories, its MicroBatch's and its share of PartitionIngest's.
	PerBatchByType map[string]float64 `json:"history_events_per_batch_by_type,omitempty"`
	// Where a batch's time went, from the histories' event times: medians
	// over the run's batches, in seconds. Between a partition's batch
	// completing and its next MicroBatch starting, the part spent waiting
	// for that batch's PlanBatch (reading and parsing it from Kafka, which
	// the plain loop does too) and the rest (the PartitionIngest's
	// workflow task and the child's start). Decide: the workflow tasks
	// that run Dedup (and Enrich, in batches from before Load scored) as local activities. Load: the Load
	// activity running. Other: the rest of the MicroBatch (its other
	// workflow tasks, scheduling Load, round trips through the server).
	Breakdown batchBreakdown `json:"breakdown"`
	// Billed actions (billedActions' rules, and the worker's heartbeats
	// where it was asked): in all, a batch, a million events, and by kind
	// a batch; the dollars at the first tier's list price.
	Actions           float64            `json:"billed_actions,omitempty"`
	ActionsPerBatch   float64            `json:"billed_actions_per_batch,omitempty"`
	ActionsPerMillion float64            `json:"billed_actions_per_million_events,omitempty"`
	ActionsByKind     map[string]float64 `json:"billed_actions_per_batch_by_kind,omitempty"`
	DollarsPerMillion float64            `json:"dollars_per_million_events,omitempty"`
	// The Temporal server's CPU, and actions and history a second, over a
	// steady run.
	ServerCPUMsPer1000 float64 `json:"server_cpu_ms_per_1000_events,omitempty"`
	ServerCores        float64 `json:"server_cores,omitempty"`
	ActionsPerS        float64 `json:"billed_actions_per_s,omitempty"`
	HistoryBytesPerS   float64 `json:"history_bytes_per_s,omitempty"`
	Note               string  `json:"note,omitempty"`

	byKind map[string]float64
}

type batchBreakdown struct {
	PlanWaitS float64 `json:"plan_wait_s"`
	GapS      float64 `json:"gap_s"`
	DecideS   float64 `json:"decide_s"`
	LoadS     float64 `json:"load_s"`
	OtherS    float64 `json:"other_s"`
}

// breakdown holds the per-batch durations measureTemporalCost collects.
type breakdown struct{ planWait, gap, decide, load, other []float64 }

// microBatch adds one MicroBatch's history to b.
func (b *breakdown) microBatch(events []*history.HistoryEvent) {
	if len(events) == 0 {
		return
	}
	var decide, load time.Duration
	var wftStarted, loadStarted, end time.Time
	scheduled := false
	for _, ev := range events {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			wftStarted = at
		case enums.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			if !scheduled {
				decide += at.Sub(wftStarted)
			}
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled = true
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			loadStarted = at
		case enums.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			load = at.Sub(loadStarted)
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
			end = at
		}
	}
	if end.IsZero() || load == 0 {
		return // not a whole batch
	}
	total := end.Sub(events[0].GetEventTime().AsTime())
	b.decide = append(b.decide, decide.Seconds())
	b.load = append(b.load, load.Seconds())
	b.other = append(b.other, (total - decide - load).Seconds())
}

// partitionIngest adds the gaps between one PartitionIngest run's batches.
func (b *breakdown) partitionIngest(events []*history.HistoryEvent) {
	var lastDone, planDone time.Time
	plans := map[int64]bool{} // scheduled event IDs of PlanBatch
	for _, ev := range events {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			plans[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "PlanBatch"
		case enums.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if plans[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()] {
				planDone = at
			}
		case enums.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
			lastDone = at
		case enums.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
			if lastDone.IsZero() {
				continue
			}
			wait := max(planDone.Sub(lastDone), 0) // the plan finished after the batch before
			b.planWait = append(b.planWait, wait.Seconds())
			b.gap = append(b.gap, (at.Sub(lastDone) - wait).Seconds())
		}
	}
}

func (b *breakdown) medians() batchBreakdown {
	med := func(xs []float64) float64 {
		slices.Sort(xs)
		return percentile(xs, 50)
	}
	return batchBreakdown{PlanWaitS: med(b.planWait), GapS: med(b.gap), DecideS: med(b.decide), LoadS: med(b.load), OtherS: med(b.other)}
}

// measureTemporalCost reads every workflow history of a run's task queue:
// each MicroBatch and every run of each PartitionIngest.
func (e *env) measureTemporalCost(ctx context.Context, cfg config.Config, records int) (temporalCost, error) {
	c := temporalCost{byKind: map[string]float64{}}
	var token []byte
	var times breakdown
	byType := map[string]int{}
	for {
		resp, err := e.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			// Batches run on their workers' own queues (workflows.WorkerPool).
			Namespace: cfg.Namespace, Query: fmt.Sprintf("TaskQueue = '%s' OR (WorkflowType = 'MicroBatch' AND %s = '%s')", cfg.TaskQueue, searchattr.KafkaTopic.GetName(), cfg.Topic), NextPageToken: token,
		})
		if err != nil {
			return c, fmt.Errorf("list workflows of %s: %w", cfg.TaskQueue, err)
		}
		for _, ex := range resp.GetExecutions() {
			if ex.GetType().GetName() == "MicroBatch" {
				c.Batches++
			}
			events, err := e.history(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId())
			if err != nil {
				return c, err
			}
			billedActions(events, c.byKind)
			for _, ev := range events {
				c.HistoryEvents++
				c.HistoryBytes += int64(proto.Size(ev))
				byType[ev.GetEventType().String()]++
			}
			switch ex.GetType().GetName() {
			case "MicroBatch":
				times.microBatch(events)
			case "PartitionIngest":
				times.partitionIngest(events)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	c.Events = records
	c.Breakdown = times.medians()
	if c.Batches > 0 {
		c.EventsPerBatch = float64(c.HistoryEvents) / float64(c.Batches)
		c.BytesPerBatch = float64(c.HistoryBytes) / float64(c.Batches)
		c.PerBatchByType = map[string]float64{}
		for t, n := range byType {
			c.PerBatchByType[strings.TrimPrefix(t, "EVENT_TYPE_")] = float64(n) / float64(c.Batches)
		}
	}
	c.settle()
	if records > 0 {
		c.EventsPer1000Records = float64(c.HistoryEvents) * 1000 / float64(records)
		c.BytesPer1000Records = float64(c.HistoryBytes) * 1000 / float64(records)
	}
	return c, nil
}
