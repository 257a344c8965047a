package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
)

// recoveryBreakdown is where the slowest partition's recovery went: the
// seconds from the kill to each step, read from the partition's and its
// batch's histories. A step not seen is 0.
type recoveryBreakdown struct {
	Partition int `json:"partition"`
	// WorkerUpS: the replacement logged "worker started" (connected,
	// polling, its pool joined); 0 for a survivor.
	WorkerUpS float64 `json:"worker_up_s,omitempty"`
	// LostS: the pool told the partition its worker's queue was lost
	// (the replacement named its predecessor dead, or the lease timed
	// out).
	LostS float64 `json:"lost_s"`
	// ActedS: the partition's first workflow task after that started:
	// it acted on the news.
	ActedS float64 `json:"acted_s,omitempty"`
	// TimedOut lists the workflow tasks of the partition and the batch
	// that timed out after the kill (a task under way on the killed
	// worker), with when: the wait a task timeout adds.
	TimedOut []string `json:"task_timeouts,omitempty"`
	// BatchStartedS: the batch that recovered started (the stranded run
	// ended and its ID started again on the new worker, or a new plan's).
	BatchStartedS float64 `json:"batch_started_s"`
	// PickedUpS: a worker started the batch's first workflow task.
	PickedUpS float64 `json:"picked_up_s"`
	// DecidedS: Dedup was recorded (it runs as a local activity in that
	// task): the window was back, from a snapshot or the log, and every
	// record decided.
	DecidedS float64 `json:"decided_s"`
	// BatchDoneS: the batch completed: rows and ledger written, offset
	// committed.
	BatchDoneS float64 `json:"batch_done_s"`
	// VisibleS: the benchmark's ledger watcher saw its row (it looks
	// twice a second).
	VisibleS float64 `json:"visible_s"`
}

// String is the breakdown as one line of the report.
func (b recoveryBreakdown) String() string {
	var parts []string
	for _, s := range []struct {
		name string
		at   float64
	}{{"worker up", b.WorkerUpS}, {"queue lost", b.LostS}, {"partition acted", b.ActedS}, {"batch started", b.BatchStartedS}, {"picked up", b.PickedUpS},
		{"decided", b.DecidedS}, {"batch done", b.BatchDoneS}, {"visible", b.VisibleS}} {
		if s.at > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f s", s.name, s.at))
		}
	}
	line := fmt.Sprintf("partition %d: ", b.Partition) + strings.Join(parts, " → ")
	if len(b.TimedOut) > 0 {
		line += "; task timeouts: " + strings.Join(b.TimedOut, ", ")
	}
	return line
}

// breakDownRecovery reads the histories of the slowest partition's first
// batch visible after the kill, and of the partition's runs, for when
// each step of its recovery happened.
func (e *env) breakDownRecovery(ctx context.Context, cfg config.Config, seen []ledgerSeen, killedAt, workerUp time.Time) (recoveryBreakdown, error) {
	var slowest *ledgerSeen
	first := map[int]ledgerSeen{}
	for _, s := range seen {
		if f, ok := first[s.partition]; s.loadedAt.After(killedAt) && (!ok || s.seen.Before(f.seen)) {
			first[s.partition] = s
		}
	}
	for _, s := range first {
		if slowest == nil || s.seen.After(slowest.seen) {
			slowest = &s
		}
	}
	if slowest == nil {
		return recoveryBreakdown{}, fmt.Errorf("no batch visible after the kill")
	}
	since := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return t.Sub(killedAt).Seconds()
	}
	b := recoveryBreakdown{Partition: slowest.partition, VisibleS: since(slowest.seen)}
	if !workerUp.IsZero() {
		b.WorkerUpS = since(workerUp)
	}

	events, err := e.history(ctx, slowest.batchID, "")
	if err != nil {
		return b, fmt.Errorf("batch %s: %w", slowest.batchID, err)
	}
	for _, ev := range events {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			b.BatchStartedS = since(at)
		case enums.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if b.PickedUpS == 0 {
				b.PickedUpS = since(at)
			}
		case enums.EVENT_TYPE_MARKER_RECORDED:
			b.DecidedS = since(at)
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
			b.BatchDoneS = since(at)
		case enums.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			if at.After(killedAt) {
				b.TimedOut = append(b.TimedOut, fmt.Sprintf("batch at %.2f s", since(at)))
			}
		}
	}

	// The partition's runs since the kill: when the pool told it a queue
	// was lost.
	resp, err := e.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: cfg.Namespace, Query: fmt.Sprintf("WorkflowId = '%s'", contract.IngestID(cfg.Topic, slowest.partition)),
	})
	if err != nil {
		return b, fmt.Errorf("partition %d: list its runs: %w", slowest.partition, err)
	}
	for _, ex := range resp.GetExecutions() {
		if ct := ex.GetCloseTime(); ct != nil && ct.AsTime().Before(killedAt) {
			continue
		}
		events, err := e.history(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId())
		if err != nil {
			return b, fmt.Errorf("partition %d: %w", slowest.partition, err)
		}
		for _, ev := range events {
			at := ev.GetEventTime().AsTime()
			if at.Before(killedAt) {
				continue
			}
			switch ev.GetEventType() {
			case enums.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
				b.TimedOut = append(b.TimedOut, fmt.Sprintf("partition at %.2f s", since(at)))
			case enums.EVENT_TYPE_WORKFLOW_TASK_STARTED:
				if b.LostS > 0 && b.ActedS == 0 && since(at) >= b.LostS {
					b.ActedS = since(at)
				}
			}
			sig := ev.GetWorkflowExecutionSignaledEventAttributes()
			if ev.GetEventType() != enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED || sig.GetSignalName() != contract.AssignSignal {
				continue
			}
			var as contract.Assignment
			if err := converter.GetDefaultDataConverter().FromPayloads(sig.GetInput(), &as); err == nil && as.Lost != "" &&
				(b.LostS == 0 || since(at) < b.LostS) {
				b.LostS = since(at)
			}
		}
	}
	return b, nil
}

// history is every event of a workflow run (runID "": the latest).
func (e *env) history(ctx context.Context, workflowID, runID string) ([]*history.HistoryEvent, error) {
	it := e.temporal.GetWorkflowHistory(ctx, workflowID, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*history.HistoryEvent
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, nil
}

// recoveryFigures are the short runs of one kind that measure recovery:
// each kills a worker three quarters in.
type recoveryFigures struct {
	Sink      string `json:"sink"`
	WriteMode string `json:"write_mode"`
	// Survivor: two workers ran and the one left took over; otherwise a
	// replacement started at the kill, sharing the state directory as a
	// container restarted in its pod does.
	Survivor bool `json:"survivor,omitempty"`
	// Outage names the server that was down (temporal, kafka, bigquery)
	// instead of a worker killed; the figure counts from its return.
	Outage string        `json:"outage,omitempty"`
	Runs   []recoveryRun `json:"runs"`
	// MedianMaxS is the median over the runs of the slowest partition's
	// recovery; -1 when the median run had a partition with no batch
	// visible after the kill.
	MedianMaxS float64  `json:"median_max_s"`
	Errors     []string `json:"errors,omitempty"`
}

type recoveryRun struct {
	MaxS       float64            `json:"max_s"`
	MedianS    float64            `json:"median_s"`
	Breakdown  *recoveryBreakdown `json:"breakdown,omitempty"`
	Reconciled bool               `json:"reconciled"`
}

// median is the run whose slowest partition is the median of the runs';
// a run that never recovered counts as the slowest.
func (f recoveryFigures) median() (recoveryRun, bool) {
	if len(f.Runs) == 0 {
		return recoveryRun{}, false
	}
	runs := slices.Clone(f.Runs)
	key := func(r recoveryRun) float64 {
		if r.MaxS < 0 {
			return math.Inf(1)
		}
		return r.MaxS
	}
	slices.SortFunc(runs, func(a, b recoveryRun) int { return cmp.Compare(key(a), key(b)) })
	return runs[len(runs)/2], true
}

// kind names the runs in the report.
func (f recoveryFigures) kind() string {
	how := "a replacement started at once"
	switch {
	case f.Outage != "":
		how = f.Outage + " down"
	case f.Survivor:
		how = "on the survivor of two workers"
	}
	sink := f.Sink + " sink"
	if f.Sink == config.SinkBigQuery {
		sink = "emulator, " + f.WriteMode + " mode"
	}
	return sink + ", " + how
}

// recoveryRuns measures recovery in o.RecoveryRuns short steady runs of
// each kind: the discard sink with a replacement and on a survivor, and
// the emulator in storagewrite mode with a replacement.
func (e *env) recoveryRuns(ctx context.Context, o options, rep *report) error {
	kinds := []recoveryFigures{
		{Sink: config.SinkDiscard, WriteMode: config.WriteModeLoad},
		{Sink: config.SinkDiscard, WriteMode: config.WriteModeLoad, Survivor: true},
		{Sink: config.SinkBigQuery, WriteMode: config.WriteModeStorageWrite},
	}
	var err error
	rep.Recovery, err = e.recoveryKinds(ctx, o, kinds, o.RecoveryRuns)
	return err
}

// outageRuns measures, for each server, how soon every partition has a
// batch visible after the server comes back from o.OutageFor down: the
// workers wait for it with backoff rather than exit.
func (e *env) outageRuns(ctx context.Context, o options, rep *report) error {
	var kinds []recoveryFigures
	for _, server := range o.OutageServers {
		kinds = append(kinds, recoveryFigures{Sink: config.SinkDiscard, WriteMode: config.WriteModeLoad, Outage: server})
	}
	var err error
	rep.Outages, err = e.recoveryKinds(ctx, o, kinds, 1)
	return err
}

// recoveryKinds runs each kind runs times and returns its figures.
func (e *env) recoveryKinds(ctx context.Context, o options, kinds []recoveryFigures, runs int) ([]recoveryFigures, error) {
	var out []recoveryFigures
	for _, f := range kinds {
		for i := range runs {
			e.logf("recovery, %s: run %d of %d, %.0f events/s for %s", f.kind(), i+1, runs, o.SteadyRate, o.RecoveryFor)
			st, err := e.steadyRun(ctx, steadySpec{sink: f.Sink, writeMode: f.WriteMode, partitions: o.Partitions[0], rate: o.SteadyRate, length: o.RecoveryFor, survivor: f.Survivor, outage: f.Outage, outageFor: o.OutageFor})
			if err != nil {
				if ctx.Err() != nil {
					return out, err
				}
				f.Errors = append(f.Errors, err.Error())
				e.logf("  failed: %v", err)
				continue
			}
			f.Runs = append(f.Runs, recoveryRun{MaxS: st.RecoveryMaxS, MedianS: st.RecoveryMedianS, Breakdown: st.RecoveryBreakdown, Reconciled: st.Reconciled})
			if st.RecoveryBreakdown != nil {
				e.logf("  recovery %.2f s; %s", st.RecoveryMaxS, st.RecoveryBreakdown)
			} else {
				e.logf("  recovery %.2f s (median partition %.2f s)", st.RecoveryMaxS, st.RecoveryMedianS)
			}
		}
		if m, ok := f.median(); ok {
			f.MedianMaxS = m.MaxS
		}
		out = append(out, f)
	}
	return out, nil
}

// runsNote lists the runs' slowest-partition recoveries for the targets
// table.
func (f recoveryFigures) runsNote() string {
	var each []string
	for _, r := range f.Runs {
		each = append(each, recoverySeconds(r.MaxS))
	}
	note := fmt.Sprintf("%d runs (%s)", len(f.Runs), strings.Join(each, ", "))
	if len(f.Errors) > 0 {
		note += fmt.Sprintf("; %d failed", len(f.Errors))
	}
	return note
}

// recoverySeconds is a recovery figure, or why there is none.
func recoverySeconds(s float64) string {
	if s < 0 {
		return "not seen (a partition had no batch visible afterwards)"
	}
	return fmt.Sprintf("%.2f s", s)
}

// outagesMarkdown is the report's section on outages of the servers.
func (r *report) outagesMarkdown() string {
	if len(r.Outages) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Outages\n\nA run at %.0f events/s on %d partitions with the discard sink, %s long, for each server: three quarters in it is stopped for %s and started again on the same ports and state, the worker left running. The figure is each partition's time from the server's return until its next batch's ledger row is visible.\n\n| server down | slowest partition | median partition | reconciled |\n|---|---|---|---|\n",
		r.Options.SteadyRate, r.Options.Partitions[0], r.Options.RecoveryFor, r.Options.OutageFor)
	for _, f := range r.Outages {
		m, ok := f.median()
		if !ok {
			fmt.Fprintf(&b, "| %s | did not finish: %s | | |\n", f.Outage, strings.Join(f.Errors, "; "))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %v |\n", f.Outage, recoverySeconds(m.MaxS), recoverySeconds(m.MedianS), m.Reconciled)
	}
	return b.String()
}

// recoveryMarkdown is the report's section on recovery: where the median
// run's seconds went, step by step.
func (r *report) recoveryMarkdown() string {
	if len(r.Recovery) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Recovery\n\nShort runs at %.0f events/s on %d partitions, each %s long, the worker killed with SIGKILL three quarters in; the figure is the slowest partition's time from the kill until its next batch's ledger row is visible, median of the runs. Where the median run's slowest partition spent it, in seconds after the kill (from its batch's and its partition's Temporal histories):\n\n",
		r.Options.SteadyRate, r.Options.Partitions[0], r.Options.RecoveryFor)
	for _, f := range r.Recovery {
		m, ok := f.median()
		switch {
		case !ok:
			fmt.Fprintf(&b, "- %s: no run finished (%s).\n", f.kind(), strings.Join(f.Errors, "; "))
		case m.Breakdown == nil:
			fmt.Fprintf(&b, "- %s: %s, not broken down.\n", f.kind(), recoverySeconds(m.MaxS))
		default:
			fmt.Fprintf(&b, "- %s: %s.", f.kind(), m.Breakdown)
			if !m.Reconciled {
				b.WriteString(" **Not reconciled.**")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
