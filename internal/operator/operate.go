// Package operator is the operator's client of a running pipeline: start,
// stop, status, pause/resume/drain/set-batch, backfill, reconcile,
// quarantine replays and progress, through Temporal, Kafka and BigQuery.
// The starter, devstack and the benchmark drive paystream through it.
package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/progress"
	"github.com/paystream/paystream/workflows"
)

// Operator runs the starter's actions against one deployment.
type Operator struct {
	Config   config.Config
	Temporal client.Client
	BigQuery *bigquery.Client
	Tuning   Tuning
	// Progress is where backfill and reconcile draw a progress bar
	// (nil: nowhere).
	Progress io.Writer
}

// resumePoint is where a partition's ingestion continues: after its last
// ledgered batch, with the dedup window that batch handed on, floors
// included.
type resumePoint struct {
	next   int64
	window contract.Window
	// lateness is the allowed lateness the window was kept at (0: a
	// ledger row of an earlier release, which does not say).
	lateness time.Duration
	// schemas are the partition's Schema Registry verdicts.
	schemas contract.Schemas
}

// resumePoints reads the last ledger row of every partition. The ledger,
// written after a batch's tables, is the authority: the committed Kafka
// offset can only trail it.
func (o *Operator) resumePoints(ctx context.Context) (map[int]resumePoint, error) {
	q := o.BigQuery.Query(fmt.Sprintf(
		"SELECT "+ledgerColumns("l.")+" FROM `%s.%s.batch_ledger` AS l "+
			"WHERE l.kafka_topic = @topic AND l.end_offset = (SELECT MAX(l2.end_offset) FROM `%s.%s.batch_ledger` AS l2 "+
			"WHERE l2.kafka_topic = @topic AND l2.kafka_partition = l.kafka_partition)",
		o.BigQuery.Project(), o.Config.BigQueryDataset, o.BigQuery.Project(), o.Config.BigQueryDataset))
	q.Parameters = []bigquery.QueryParameter{{Name: "topic", Value: o.Config.Topic}}
	it, err := q.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read batch_ledger: %w", err)
	}
	out := map[int]resumePoint{}
	for {
		var row ledgerRow
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read batch_ledger: %w", err)
		}
		w, err := row.nextWindow()
		if err != nil {
			return nil, err
		}
		rp := resumePoint{next: row.End, window: w, lateness: time.Duration(row.Lateness.Int64)}
		if row.Schemas.Valid {
			if err := json.Unmarshal([]byte(row.Schemas.StringVal), &rp.schemas); err != nil {
				return nil, fmt.Errorf("batch_ledger of partition %d at %d: schemas: %w", row.Partition, row.End, err)
			}
		}
		out[int(row.Partition)] = rp
	}
}

// ledgerColumns are the batch_ledger columns ledgerRow reads, each
// prefixed (a table alias).
func ledgerColumns(prefix string) string {
	cols := []string{"kafka_partition", "start_offset", "end_offset", "next_window_start", "next_window_newest", "next_window_floors",
		"allowed_lateness_ns", "max_window_ids", "schemas"}
	out := ""
	for i, c := range cols {
		if i > 0 {
			out += ", "
		}
		out += prefix + c
	}
	return out
}

// ledgerRow is the part of a batch_ledger row that says where ingestion
// goes on after the batch.
type ledgerRow struct {
	Partition int64               `bigquery:"kafka_partition"`
	Start     int64               `bigquery:"start_offset"`
	End       int64               `bigquery:"end_offset"`
	WStart    int64               `bigquery:"next_window_start"`
	WNewest   bigquery.NullString `bigquery:"next_window_newest"`
	WFloors   []ledgerFloor       `bigquery:"next_window_floors"`
	// What the batch decided with; NULL in rows of earlier releases.
	Lateness     bigquery.NullInt64  `bigquery:"allowed_lateness_ns"`
	MaxWindowIDs bigquery.NullInt64  `bigquery:"max_window_ids"`
	Schemas      bigquery.NullString `bigquery:"schemas"`
}

// ledgerFloor is a raise of the dedup window's floor in a ledger row.
type ledgerFloor struct {
	From  int64  `bigquery:"from_offset"`
	Floor string `bigquery:"floor"`
}

// nextWindow is the dedup window the batch handed on to the next one.
func (r ledgerRow) nextWindow() (contract.Window, error) {
	w := contract.Window{Start: r.WStart}
	if r.WNewest.Valid {
		var err error
		if w.Newest, err = time.Parse(time.RFC3339Nano, r.WNewest.StringVal); err != nil {
			return w, fmt.Errorf("batch_ledger of partition %d at %d: next_window_newest: %w", r.Partition, r.End, err)
		}
	}
	// Without its floors a window rebuilt from the ledger would decide
	// as if its bound had never been reached.
	for _, f := range r.WFloors {
		at, err := time.Parse(time.RFC3339Nano, f.Floor)
		if err != nil {
			return w, fmt.Errorf("batch_ledger of partition %d at %d: next_window_floors at offset %d: %w", r.Partition, r.End, f.From, err)
		}
		w.Floors = append(w.Floors, contract.Floor{Offset: f.From, Time: at})
	}
	return w, nil
}

// StartResult says what start did for one partition.
type StartResult struct {
	Partition  int
	WorkflowID string
	From       int64
	Already    bool // it was running already
	// Pending is the ID of a batch that failed at From in a run
	// terminated by hand, which runs again first, as it was; empty when
	// the partition has none.
	Pending string
	// AfterStop: a run asked to stop was still finishing its batch, and
	// this one started once it had stopped.
	AfterStop bool
	// Running is what an Already partition keeps running with (nil when
	// it cannot be read): start's settings do not reach it.
	Running *Settings
}

// Start starts one PartitionIngest per partition of the topic, then the
// topic's supervisor, which starts partitions added to the topic later. A
// workflow that runs already is left alone, so starting twice is harmless.
// A run asked to stop still runs until its batch has loaded;
// Start waits for it to end and then starts a new one, so that every
// partition runs when it returns without error.
func (o *Operator) Start(ctx context.Context) ([]StartResult, error) {
	bounds, err := kafkalog.AllBounds(ctx, o.Config.Kafka(), o.Config.Topic)
	if err != nil {
		return nil, err
	}
	ids := []string{contract.SupervisorID(o.Config.Topic)}
	for p := range bounds {
		ids = append(ids, contract.IngestID(o.Config.Topic, p))
	}
	stopping, err := o.stoppingRuns(ctx, ids)
	if err != nil {
		return nil, err
	}
	if len(stopping) > 0 {
		if _, err := o.WaitStopped(ctx, stopping); err != nil {
			return nil, err
		}
	}
	// Read after those runs ended: their last batches are in the ledger.
	resume, err := o.resumePoints(ctx)
	if err != nil {
		return nil, err
	}
	var out []StartResult
	for p, b := range bounds {
		rp, ok := resume[p]
		if !ok {
			rp = resumePoint{next: b.First, window: contract.Window{Start: b.First}}
		}
		id := contract.IngestID(o.Config.Topic, p)
		if desc, err := o.Temporal.DescribeWorkflowExecution(ctx, id, ""); err == nil &&
			desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			out = append(out, StartResult{Partition: p, WorkflowID: id, Already: true, Running: o.runningSettings(ctx, id)})
			continue
		}
		pending, err := o.pendingBatch(ctx, p, rp)
		if errors.Is(err, errLoadedSince) {
			// Its ledger row is there now: go on after it.
			var again map[int]resumePoint
			if again, err = o.resumePoints(ctx); err == nil {
				if r, ok := again[p]; ok {
					rp = r
				}
				pending, err = o.pendingBatch(ctx, p, rp)
			}
		}
		if err != nil {
			return out, err
		}
		in := o.ingestInput(len(bounds))
		// A longer lateness than the window was kept at must not find
		// resends of payments the window no longer holds new again.
		in.Partition, in.Next, in.Window, in.Pending = p, rp.next, rp.window.KeepWatermark(rp.lateness, in.AllowedLateness, rp.next), pending
		in.Schemas = o.schemasFrom(rp)
		if pending != nil {
			// The failed batch runs again as it ran, with its own
			// verdicts, which are the partition's too; a partition that
			// begins to read the wire format does so after it.
			switch {
			case !pending.Schemas.Registry && in.Schemas.Registry && in.Schemas.From < pending.End:
				in.Schemas.From = pending.End
			case pending.Schemas.Registry && !in.Schemas.Registry:
				// It read the wire format: the partition goes on so.
				in.Schemas.Registry, in.Schemas.From = true, pending.Schemas.From
			}
			in.Schemas.Merge(pending.Schemas)
		}
		// USE_EXISTING keeps a start racing with another one harmless.
		_, err = o.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:                       id,
			TaskQueue:                o.Config.TaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			WorkflowTaskTimeout:      contract.TaskTimeout,
		}, workflows.PartitionIngest, in)
		if err != nil {
			return out, fmt.Errorf("start %s: %w", id, err)
		}
		r := StartResult{Partition: p, WorkflowID: id, From: rp.next, AfterStop: slices.Contains(stopping, id)}
		if pending != nil {
			r.Pending = pending.ID()
		}
		out = append(out, r)
	}
	_, err = o.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       contract.SupervisorID(o.Config.Topic),
		TaskQueue:                o.Config.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            fmt.Sprintf("keeps one PartitionIngest per partition of %s", o.Config.Topic),
	}, workflows.TopicSupervisor, contract.SuperviseInput{
		Topic: o.Config.Topic, Partitions: len(bounds), Template: o.ingestInput(len(bounds)), Every: o.Tuning.SuperviseEvery,
		LoadJobBudget: loadJobBudget(o.Config),
	})
	if err != nil {
		return out, fmt.Errorf("start the supervisor of %s: %w", o.Config.Topic, err)
	}
	return out, nil
}

// schemasFrom are a resumed partition's Schema Registry verdicts: the
// ledger's, reading the wire format from where it goes on when the
// operator gives a registry and the partition did not read it before. A
// partition that read it keeps reading it: the records it read so are
// judged alike by a window rebuilt after any start.
func (o *Operator) schemasFrom(rp resumePoint) contract.Schemas {
	s := rp.schemas
	if o.Config.SchemaRegistry != "" && !s.Registry {
		s.Registry, s.From = true, rp.next
	}
	return s
}

// ingestInput is a partition's input before its partition and offsets
// are set: the operator's tuning and configuration, for a topic of
// partitions partitions.
func (o *Operator) ingestInput(partitions int) contract.IngestInput {
	return contract.IngestInput{
		Topic: o.Config.Topic, MaxRecords: o.Tuning.MaxRecords, MaxBytes: o.Tuning.MaxBytes, PollFor: o.Tuning.PollFor, Linger: o.Tuning.Linger,
		MaxBatchesPerRun: o.Tuning.MaxBatchesPerRun, AllowedLateness: o.Config.AllowedLateness, MaxWindowIDs: o.Config.MaxWindowIDs, WriteMode: o.Config.WriteMode,
		Pool:             contract.PoolID(o.Config.TaskQueue),
		SearchableCounts: o.Tuning.SearchableCounts,
		// A new partition (TopicSupervisor) reads the wire format from its
		// start when the operator gives a registry.
		Cursor:  contract.Cursor{Schemas: contract.Schemas{Registry: o.Config.SchemaRegistry != ""}},
		Spacing: contract.Spacing{MinBatchInterval: contract.BatchInterval(partitions, loadJobBudget(o.Config))},
	}
}

// loadJobBudget is the load jobs a table may take a day, 0 when the
// batches need no spacing: only load mode against BigQuery has that
// quota (the emulator has none).
func loadJobBudget(cfg config.Config) int {
	if cfg.WriteMode != config.WriteModeLoad || cfg.BigQueryEndpoint != "" {
		return 0
	}
	return max(cfg.LoadJobBudget, 0)
}

// Supervisor reports the topic's supervisor: its state and, while it
// runs, how many partitions it keeps and when it last looked.
func (o *Operator) Supervisor(ctx context.Context) (state string, progress *contract.SupervisorProgress, err error) {
	id := contract.SupervisorID(o.Config.Topic)
	desc, err := o.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if errors.As(err, new(*serviceerror.NotFound)) {
		return "not started", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("describe %s: %w", id, err)
	}
	state = stateName(desc.GetWorkflowExecutionInfo().GetStatus())
	if state == "running" {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if v, err := o.Temporal.QueryWorkflow(qctx, id, "", contract.ProgressQuery); err == nil {
			var pr contract.SupervisorProgress
			if v.Get(&pr) == nil {
				progress = &pr
			}
		}
	}
	return state, progress, nil
}

// stoppingRuns are those of ids whose run still runs but was asked to
// stop (cancelled), as the server's description says, or a partition's
// run that will drain: handed a stop as a drain (a stop that met
// continue-as-new, when its history was full), or asked to drain by an
// operator whose client gave up waiting. A start that left them alone
// would find them stopped a batch later.
func (o *Operator) stoppingRuns(ctx context.Context, ids []string) ([]string, error) {
	// One wait for every query: with no worker up, each would otherwise
	// wait its own seconds, partition after partition.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []string
	for _, id := range ids {
		desc, err := o.Temporal.DescribeWorkflowExecution(ctx, id, "")
		if errors.As(err, new(*serviceerror.NotFound)) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe %s: %w", id, err)
		}
		info := desc.GetWorkflowExecutionInfo()
		if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			continue
		}
		if desc.GetWorkflowExtendedInfo().GetCancelRequested() {
			out = append(out, id)
			continue
		}
		if _, ok := contract.IngestPartition(o.Config.Topic, id); !ok {
			continue
		}
		var in contract.IngestInput
		if err := o.runInput(ctx, info.GetExecution(), &in); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if in.Draining || o.draining(qctx, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// draining says whether the partition run id answers that a drain was
// asked of it (a drain whose client gave up waiting still ends the run).
// A run that does not answer before ctx ends (no worker) is taken as not
// draining: nothing can end it before a worker comes.
func (o *Operator) draining(ctx context.Context, id string) bool {
	v, err := o.Temporal.QueryWorkflow(ctx, id, "", contract.ProgressQuery)
	var pr contract.Progress
	return err == nil && v.Get(&pr) == nil && pr.Draining
}

// Stopped says how a run that stop asked to stop ended.
type Stopped struct {
	WorkflowID string
	// State is how the run closed: stopped, drained (a stop that met
	// continue-as-new ends the next run as a drain), failed, terminated.
	State string
	// Offset is where a stopped partition's next batch starts; -1 when
	// its run did not say (drained, or the supervisor).
	Offset int64
}

// WaitStopped waits until every workflow of ids has closed, following
// continue-as-new, and draws how many have on o.Progress. When ctx ends
// first, the error names those still running and what they are doing, in
// one line.
func (o *Operator) WaitStopped(ctx context.Context, ids []string) ([]Stopped, error) {
	bar := progress.New(o.Progress, "stopped", int64(len(ids)))
	done := map[string]Stopped{}
	for {
		for _, id := range ids {
			if _, ok := done[id]; ok {
				continue
			}
			desc, err := o.Temporal.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				continue // Temporal restarting: the deadline decides
			}
			info := desc.GetWorkflowExecutionInfo()
			switch info.GetStatus() {
			case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
				continue
			}
			done[id] = Stopped{WorkflowID: id, State: stateName(info.GetStatus()), Offset: o.stoppedAt(ctx, id, info.GetExecution().GetRunId())}
		}
		bar.Set(int64(len(done)))
		if len(done) == len(ids) {
			bar.Done(int64(len(done)))
			out := make([]Stopped, 0, len(ids))
			for _, id := range ids {
				out = append(out, done[id])
			}
			return out, nil
		}
		select {
		case <-ctx.Done():
			bar.Done(int64(len(done)))
			return nil, o.stillRunning(ctx, ids, done)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ErrStillRunning: a wait for runs to stop ended before they did.
var ErrStillRunning = errors.New("not stopped yet")

// stillRunning says which of ids have not stopped and what each is
// doing, asked after ctx ended.
func (o *Operator) stillRunning(ctx context.Context, ids []string, done map[string]Stopped) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var left []string
	for _, id := range ids {
		if _, ok := done[id]; ok {
			continue
		}
		if pr := o.queryProgress(qctx, id); pr != nil && pr.State != "" {
			left = append(left, fmt.Sprintf("%s (%s)", id, pr.State))
		} else {
			left = append(left, id)
		}
	}
	return fmt.Errorf("%w: %s", ErrStillRunning, strings.Join(left, ", "))
}

// stoppedAt is the offset a stopped partition's run closed at, from its
// close event ("stopped at offset", N); -1 when it has none.
func (o *Operator) stoppedAt(ctx context.Context, id, runID string) int64 {
	it := o.Temporal.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return -1
		}
		if d := ev.GetWorkflowExecutionCanceledEventAttributes().GetDetails(); d != nil {
			var what string
			var offset int64
			if converter.GetDefaultDataConverter().FromPayloads(d, &what, &offset) == nil {
				return offset
			}
		}
	}
	return -1
}

// Stop asks the topic's supervisor and every partition's workflow to stop,
// each partition after its current batch, and returns the IDs of those
// that were running; WaitStopped waits for them.
func (o *Operator) Stop(ctx context.Context) ([]string, error) {
	parts, err := kafkalog.Partitions(ctx, o.Config.Kafka(), o.Config.Topic)
	if err != nil {
		return nil, err
	}
	var stopped []string
	// The supervisor first, so it starts no partition while they stop.
	sup := contract.SupervisorID(o.Config.Topic)
	if err := o.Temporal.CancelWorkflow(ctx, sup, ""); err == nil {
		stopped = append(stopped, sup)
	} else if !errors.As(err, new(*serviceerror.NotFound)) {
		return stopped, fmt.Errorf("stop %s: %w", sup, err)
	}
	for p := range parts {
		id := contract.IngestID(o.Config.Topic, p)
		err := o.Temporal.CancelWorkflow(ctx, id, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			continue
		}
		if err != nil {
			return stopped, fmt.Errorf("stop %s: %w", id, err)
		}
		stopped = append(stopped, id)
	}
	return stopped, nil
}

// PartitionStatus is one row of `starter status`.
type PartitionStatus struct {
	Partition int `json:"partition"`
	// State is the workflow's: ingesting, caught up, pausing, paused,
	// draining, retrying a failed batch; or, when it is not running:
	// not started, stopped, drained, failed, terminated, timed out.
	State           string  `json:"state"`
	Committed       int64   `json:"committed"` // consumer-group offset; -1 when none
	HighWatermark   int64   `json:"high_watermark"`
	Lag             int64   `json:"lag"`
	BatchesDone     int64   `json:"batches_done"`
	RecordsDone     int64   `json:"records_done"`
	EventsPerSecond float64 `json:"events_per_second"` // over the last minute of batches; 0 when none completed in it
	MaxRecords      int     `json:"max_records"`       // batch size of the next plan
	LastBatch       string  `json:"last_batch"`
	LastError       string  `json:"last_error"`
}

// Status reports every partition: Kafka's view (committed offset, high
// watermark, lag) and the workflow's (state, batches, last error).
func (o *Operator) Status(ctx context.Context) ([]PartitionStatus, error) {
	hws, err := kafkalog.HighWatermarks(ctx, o.Config.Kafka(), o.Config.Topic)
	if err != nil {
		return nil, err
	}
	committed, err := kafkalog.CommittedOffsets(ctx, o.Config.Kafka(), o.Config.ConsumerGroup, o.Config.Topic, len(hws))
	if err != nil {
		return nil, err
	}
	out := make([]PartitionStatus, len(hws))
	for p := range hws {
		st := PartitionStatus{Partition: p, Committed: committed[p], HighWatermark: hws[p], State: "not started"}
		st.Lag = hws[p] - max(committed[p], 0)
		id := contract.IngestID(o.Config.Topic, p)
		desc, err := o.Temporal.DescribeWorkflowExecution(ctx, id, "")
		if err == nil {
			st.State = stateName(desc.GetWorkflowExecutionInfo().GetStatus())
			switch st.State {
			case "running":
				st.applyProgress(o.queryProgress(ctx, id))
			case "failed":
				st.LastError = o.failure(ctx, id)
			}
		} else if !errors.As(err, new(*serviceerror.NotFound)) {
			return nil, fmt.Errorf("describe %s: %w", id, err)
		}
		out[p] = st
	}
	return out, nil
}

// failure is the message a failed workflow closed with: for a partition
// whose log lost its next offset, what happened and what to do.
func (o *Operator) failure(ctx context.Context, id string) string {
	it := o.Temporal.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return ""
		}
		if f := ev.GetWorkflowExecutionFailedEventAttributes().GetFailure(); f != nil {
			for f.GetCause() != nil { // the activity's own message, under the workflow's
				f = f.GetCause()
			}
			return f.GetMessage()
		}
	}
	return ""
}

// queryProgress asks a running partition workflow where it is; nil when
// it cannot answer now (no worker polling, or busy past the deadline).
func (o *Operator) queryProgress(ctx context.Context, id string) *contract.Progress {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := o.Temporal.QueryWorkflow(ctx, id, "", contract.ProgressQuery)
	if err != nil {
		return nil
	}
	var pr contract.Progress
	if v.Get(&pr) != nil {
		return nil
	}
	return &pr
}

func (st *PartitionStatus) applyProgress(pr *contract.Progress) {
	if pr == nil {
		st.State = "running (no worker answers)"
		return
	}
	st.BatchesDone, st.RecordsDone, st.LastBatch, st.LastError, st.MaxRecords = pr.BatchesDone, pr.RecordsDone, pr.LastBatch, pr.LastError, pr.MaxRecords
	if pr.State != "" { // runs started before states were reported leave it empty
		st.State = pr.State
	}
	if pr.State == contract.StateOpenTransaction {
		st.State = fmt.Sprintf("%s since offset %d", pr.State, pr.OpenTransactionAt)
	}
	if time.Since(pr.LastBatchAt) < time.Minute {
		st.EventsPerSecond = pr.EventsPerSecond
	}
}

func stateName(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return "running"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return "stopped"
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return "drained" // a partition's run completes only when drained
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return "failed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return "terminated"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "timed out"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "running"
	}
	return s.String()
}

// Backfill re-drives partition's batches within [from, to), along the
// ledger's batch boundaries, with a Backfill workflow. A batch that completed keeps its ID and is
// refused a second run, so backfilling an ingested range is a no-op that
// says so; a range missing from the ledger between ingested batches is
// loaded with the dedup window its predecessor handed on. Offsets past the
// ingested frontier are refused: PartitionIngest owns them.
func (o *Operator) Backfill(ctx context.Context, partition int, from, to int64) (out []contract.BackfillOutcome, err error) {
	if from >= to {
		return nil, fmt.Errorf("backfill: --from %d must be below --to %d", from, to)
	}
	todo, err := o.backfillSpecs(ctx, partition, from, to)
	if err != nil {
		return nil, err
	}
	if len(todo) > contract.MaxBackfillBatches {
		return nil, fmt.Errorf("backfill: [%d, %d) holds %d batches, more than %d at a time; narrow --from and --to", from, to, len(todo), contract.MaxBackfillBatches)
	}
	id := contract.BackfillID(o.Config.Topic, partition, from, to)
	run, err := o.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                o.Config.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, // a second backfill of it watches the first
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            fmt.Sprintf("backfill of partition %d, offsets %d–%d: %d batches", partition, from, to-1, len(todo)),
	}, workflows.Backfill, contract.BackfillInput{Batches: todo})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	// The bar follows the workflow's progress query while it runs.
	bar := progress.New(o.Progress, "batches", int64(len(todo)))
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, &out) }()
	for {
		select {
		case err := <-done:
			bar.Done(int64(len(out)))
			if err != nil {
				return out, fmt.Errorf("%s: %w", id, err)
			}
			return out, nil
		case <-time.After(time.Second):
			if v, err := o.Temporal.QueryWorkflow(ctx, id, run.GetRunID(), contract.ProgressQuery); err == nil {
				var p contract.BackfillProgress
				if v.Get(&p) == nil {
					bar.Set(int64(p.Done))
				}
			}
		}
	}
}

// backfillSpecs are the specs of partition's batches within [from, to),
// from the ledger: each with the window its predecessor handed on, and
// the lateness and window bound its batch decided with.
func (o *Operator) backfillSpecs(ctx context.Context, partition int, from, to int64) ([]contract.Spec, error) {
	q := o.BigQuery.Query(fmt.Sprintf("SELECT %s FROM `%s.%s.batch_ledger` "+
		"WHERE kafka_topic = @topic AND kafka_partition = @partition ORDER BY start_offset", ledgerColumns(""), o.BigQuery.Project(), o.Config.BigQueryDataset))
	q.Parameters = []bigquery.QueryParameter{{Name: "topic", Value: o.Config.Topic}, {Name: "partition", Value: partition}}
	it, err := q.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read batch_ledger: %w", err)
	}
	b, err := kafkalog.BoundsOf(ctx, o.Config.Kafka(), o.Config.Topic, partition)
	if err != nil {
		return nil, err
	}
	first := b.First
	var specs []contract.Spec
	// A batch runs with the window, lateness and window bound its
	// predecessor handed on and decided with, as PartitionIngest ran it.
	window, next := contract.Window{Start: first}, first
	lateness, maxIDs := o.Config.AllowedLateness, o.Config.MaxWindowIDs
	var schemas contract.Schemas // the verdicts the ledger kept so far
	for {
		var row ledgerRow
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read batch_ledger: %w", err)
		}
		if row.Start > next { // a hole in the ledger: load it as its own batch
			specs = append(specs, o.spec(partition, next, row.Start, window, lateness, maxIDs, schemas))
		}
		l, m := row.decidedWith(o.Config)
		// A batch's row keeps the verdicts it decided with, its own
		// range's among them.
		if row.Schemas.Valid {
			schemas = contract.Schemas{}
			if err := json.Unmarshal([]byte(row.Schemas.StringVal), &schemas); err != nil {
				return nil, fmt.Errorf("batch_ledger of partition %d at %d: schemas: %w", partition, row.Start, err)
			}
		}
		specs = append(specs, o.spec(partition, row.Start, row.End, window, l, m, schemas))
		if window, err = row.nextWindow(); err != nil {
			return nil, err
		}
		next, lateness, maxIDs = row.End, l, m
	}
	if to > next {
		return nil, fmt.Errorf("backfill: partition %d is ingested up to offset %d; offsets past it belong to ingestion (starter start)", partition, next)
	}
	var todo []contract.Spec
	for _, spec := range specs {
		if spec.End > from && spec.Start < to {
			todo = append(todo, spec)
		}
	}
	return todo, nil
}

func (o *Operator) spec(partition int, start, end int64, w contract.Window, lateness time.Duration, maxWindowIDs int, schemas contract.Schemas) contract.Spec {
	return contract.Spec{
		Range:           contract.Range{Topic: o.Config.Topic, Partition: partition, Start: start, End: end},
		Window:          w,
		AllowedLateness: lateness,
		MaxWindowIDs:    maxWindowIDs,
		Schemas:         schemas.Clone(),
	}
}

// decidedWith is the lateness and window bound the row's batch decided
// with; a row written before the ledger kept them gives the configured
// ones.
func (r ledgerRow) decidedWith(cfg config.Config) (time.Duration, int) {
	lateness, maxIDs := cfg.AllowedLateness, cfg.MaxWindowIDs
	if r.Lateness.Valid && r.Lateness.Int64 > 0 {
		lateness = time.Duration(r.Lateness.Int64)
	}
	if r.MaxWindowIDs.Valid {
		maxIDs = int(r.MaxWindowIDs.Int64)
	}
	return lateness, maxIDs
}

// WaitCaughtUp waits until every partition's committed offset reaches its
// last stable offset, writing a progress line every few seconds to
// progressTo (when set). It watches Kafka's offsets, which cost the
// workers nothing, and every second asks Temporal whether a partition's
// workflow failed and which batches are running, so the bar moves when
// records enter a batch, not only when a batch ends.
func (o *Operator) WaitCaughtUp(ctx context.Context, progressTo io.Writer) error {
	bar := progress.New(progressTo, "records ingested", 0)
	var lastStates time.Time
	for {
		ing, err := o.caughtUp(ctx)
		if err == nil && (ing.done() || time.Since(lastStates) >= time.Second) {
			lastStates = time.Now()
			var underWay int64
			underWay, err = o.underWay(ctx, ing.committed)
			if errors.Is(err, errPartitionFailed) {
				return err
			}
			bar.SetUnderWay(underWay)
		}
		if err != nil {
			// A broker or server restarting is no reason to give up
			// waiting; the deadline is.
			select {
			case <-ctx.Done():
				return fmt.Errorf("not caught up: %w (last status error: %v)", ctx.Err(), err)
			case <-time.After(time.Second):
				continue
			}
		}
		bar.SetTotal(sum(ing.stable))
		if ing.done() {
			bar.Done(sum(ing.committed))
			return nil
		}
		bar.Set(sum(ing.committed))
		select {
		case <-ctx.Done():
			return fmt.Errorf("not caught up: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ingestion is how far each partition's committed offset is from its
// last stable offset: what a read_committed consumer can reach.
type ingestion struct {
	committed, stable []int64
}

func (g ingestion) done() bool { return slices.Equal(g.committed, g.stable) }

func sum(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

func (o *Operator) caughtUp(ctx context.Context) (ingestion, error) {
	bounds, err := kafkalog.AllBounds(ctx, o.Config.Kafka(), o.Config.Topic)
	if err != nil {
		return ingestion{}, err
	}
	stable := make([]int64, len(bounds))
	for p, b := range bounds {
		stable[p] = b.Stable
	}
	offsets, err := kafkalog.CommittedOffsets(ctx, o.Config.Kafka(), o.Config.ConsumerGroup, o.Config.Topic, len(stable))
	if err != nil {
		return ingestion{}, err
	}
	for p := range offsets {
		offsets[p] = max(offsets[p], 0)
	}
	return ingestion{committed: offsets, stable: stable}, nil
}

var errPartitionFailed = errors.New("partition workflow ended")

// Ingested is the topic's records by stage, counted in offsets.
type Ingested struct {
	Committed int64 // below the consumer group's committed offsets
	UnderWay  int64 // in running batches, past the committed offsets
	Stable    int64 // below the last stable offsets
}

// Ingested reports how many of the topic's records are committed and how
// many are in batches under way.
func (o *Operator) Ingested(ctx context.Context) (Ingested, error) {
	ing, err := o.caughtUp(ctx)
	if err != nil {
		return Ingested{}, err
	}
	underWay, err := o.underWay(ctx, ing.committed)
	return Ingested{Committed: sum(ing.committed), UnderWay: underWay, Stable: sum(ing.stable)}, err
}

// underWay counts the records in running batches past each partition's
// committed offset, from the partition workflows' pending children; it
// returns errPartitionFailed when a partition's workflow failed or was
// terminated: waiting longer would not help.
func (o *Operator) underWay(ctx context.Context, committed []int64) (int64, error) {
	var n int64
	for p := range committed {
		desc, err := o.Temporal.DescribeWorkflowExecution(ctx, contract.IngestID(o.Config.Topic, p), "")
		if err != nil {
			continue // not started yet, or Temporal restarting: not a failure
		}
		switch st := stateName(desc.GetWorkflowExecutionInfo().GetStatus()); st {
		case "failed", "terminated":
			return 0, fmt.Errorf("partition %d is %s: %w", p, st, errPartitionFailed)
		}
		n += batchesEnd(desc.GetPendingChildren(), committed[p])
	}
	return n, nil
}

// batchesEnd is how many offsets past committed the running batches
// reach. A batch's offsets are committed before its workflow ends, so
// the furthest end counts, not each batch's length.
func batchesEnd(children []*workflowpb.PendingChildExecutionInfo, committed int64) int64 {
	end := committed
	for _, c := range children {
		if r, err := contract.ParseID(c.GetWorkflowId()); err == nil {
			end = max(end, r.End)
		}
	}
	return end - committed
}

// Pool reports the task queue's worker pool: its workers and which
// partitions each holds; nil when no worker has started one.
func (o *Operator) Pool(ctx context.Context) (*contract.PoolState, error) {
	id := contract.PoolID(o.Config.TaskQueue)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := o.Temporal.QueryWorkflow(qctx, id, "", contract.ProgressQuery)
	if errors.As(err, new(*serviceerror.NotFound)) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", id, err)
	}
	var st contract.PoolState
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("query %s: %w", id, err)
	}
	return &st, nil
}
