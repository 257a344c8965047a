package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"

	"github.com/paystream/paystream/internal/config"
)

// Temporal Cloud's list prices per million actions (December 2026): the
// first tier, and the lowest, past 100M actions a month.
const (
	dollarsPerMillionActions       = 50.0
	dollarsPerMillionActionsAtTier = 25.0
)

// billedActions adds a workflow history's billed actions, by kind, to
// into, by Temporal Cloud's published rules (docs.temporal.io/cloud/actions):
//   - a workflow started by a client or by continue-as-new is one; a child
//     is two, counted at its parent's StartChildWorkflowExecutionInitiated;
//   - each activity scheduled is one, each retry one more;
//   - the markers of one workflow task (local activities, versions) are one
//     together, each local activity retry one more;
//   - each search-attribute upsert, timer, signal received and update
//     accepted is one.
//
// Activity heartbeats are billed too but are in no history; the worker
// counts them (addHeartbeats).
func billedActions(events []*history.HistoryEvent, into map[string]float64) {
	markerTasks := map[int64]bool{}
	for _, ev := range events {
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			if ev.GetWorkflowExecutionStartedEventAttributes().GetParentWorkflowExecution() == nil {
				into["workflow started"]++
			}
		case enums.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			into["child workflow started"] += 2
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			into["activity"]++
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if a := ev.GetActivityTaskStartedEventAttributes().GetAttempt(); a > 1 {
				into["activity retry"] += float64(a - 1)
			}
		case enums.EVENT_TYPE_MARKER_RECORDED:
			markerTasks[ev.GetMarkerRecordedEventAttributes().GetWorkflowTaskCompletedEventId()] = true
		case enums.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			if n := ev.GetWorkflowTaskCompletedEventAttributes().GetMeteringMetadata().GetNonfirstLocalActivityExecutionAttempts(); n > 0 {
				into["local activity retry"] += float64(n)
			}
		case enums.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			fields := ev.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields()
			if _, version := fields["TemporalChangeVersion"]; !version || len(fields) > 1 {
				into["search attributes"]++
			}
		case enums.EVENT_TYPE_TIMER_STARTED:
			into["timer"]++
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			into["signal"]++
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
			into["update"]++
		case enums.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
			into["options updated"]++
		}
	}
	into["local activities"] += float64(len(markerTasks))
}

// addHeartbeats adds the activity heartbeats the worker sent to Temporal
// (its SDK's request counter): billed, but in no history.
func (c *temporalCost) addHeartbeats(ctx context.Context, w *workerProc) {
	n, err := w.metricSum(ctx, "temporal_request_total", `operation="RecordActivityTaskHeartbeat"`)
	if err != nil {
		c.Note = "heartbeats not counted: " + err.Error()
		return
	}
	c.byKind["activity heartbeat"] += n
	c.settle()
}

// addServerCPU adds the Temporal server's CPU over the run.
func (c *temporalCost) addServerCPU(seconds, runSeconds float64) {
	if c.Events > 0 {
		c.ServerCPUMsPer1000 = seconds * 1e6 / float64(c.Events)
	}
	if runSeconds > 0 {
		c.ServerCores = seconds / runSeconds
		c.ActionsPerS = c.Actions / runSeconds
		c.HistoryBytesPerS = float64(c.HistoryBytes) / runSeconds
	}
}

// settle works out the action figures from byKind.
func (c *temporalCost) settle() {
	c.Actions = 0
	for _, n := range c.byKind {
		c.Actions += n
	}
	if c.Batches > 0 {
		c.ActionsPerBatch = c.Actions / float64(c.Batches)
		c.ActionsByKind = map[string]float64{}
		for k, n := range c.byKind {
			c.ActionsByKind[k] = n / float64(c.Batches)
		}
	}
	if c.Events > 0 {
		c.ActionsPerMillion = c.Actions * 1e6 / float64(c.Events)
		c.DollarsPerMillion = c.ActionsPerMillion * dollarsPerMillionActions / 1e6
	}
}

// metricSum adds up every series of a labelled metric in w's /metrics
// whose labels contain match; an error when the metric has no series at
// all (a name that is wrong would otherwise read as zero).
func (w *workerProc) metricSum(ctx context.Context, name, match string) (float64, error) {
	body, err := w.get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	sum, seen := 0.0, false
	for _, l := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(l, name+"{")
		if !ok {
			continue
		}
		seen = true
		if !strings.Contains(rest, match) {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		v, err := strconv.ParseFloat(rest[i+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics: %q: %w", l, err)
		}
		sum += v
	}
	if !seen {
		return 0, fmt.Errorf("metrics: no %s", name)
	}
	return sum, nil // none matching: the worker sent none
}

// costRuns measures what Temporal bills for the pipeline in storagewrite
// mode into the emulator, at each --cost-rates rate, with no kill.
func (e *env) costRuns(ctx context.Context, o options, rep *report) error {
	for _, rate := range o.CostRates {
		e.logf("Temporal cost, storagewrite: %d events/s for %s on %d partitions", rate, o.CostFor, o.Partitions[0])
		st, err := e.steadyOrError(ctx, steadySpec{sink: config.SinkBigQuery, writeMode: config.WriteModeStorageWrite, partitions: o.Partitions[0], rate: float64(rate), length: o.CostFor, noKill: true})
		if err != nil {
			return err
		}
		if c := st.Cost; c != nil {
			e.logf("  %.1f actions a batch, %.0f a million events ($%.3f), %.0f history bytes a 1,000 events, latency p99 %.2f s", c.ActionsPerBatch, c.ActionsPerMillion, c.DollarsPerMillion, c.BytesPer1000Records, st.LatencyP99)
		}
		rep.Cost = append(rep.Cost, st)
	}
	return nil
}

// costMarkdown is the report's section on what Temporal bills.
func (r *report) costMarkdown() string {
	if len(r.Cost) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Temporal cost\n\n")
	fmt.Fprintf(&b, "Storagewrite mode into the emulator on %d partitions, %s at each rate, no kill. Billed actions are counted from every workflow history of the run by Temporal Cloud's published rules (a child workflow 2, an activity 1, a workflow task's markers 1, an upsert 1, a timer 1, a signal 1, an update 1) plus the activity heartbeats the worker's SDK sent; dollars at $%.0f per million actions (the first tier; $%.0f past 100M a month).\n\n",
		r.Options.Partitions[0], r.Options.CostFor, dollarsPerMillionActions, dollarsPerMillionActionsAtTier)
	// The Load column is the emulator's share of the latency: its
	// appends, which the discard sink's runs (scaling) leave out.
	b.WriteString("| events/s | batches | events a batch | actions a batch | actions a million events | $ a million events | history bytes a 1,000 events | server CPU ms a 1,000 events | latency p50 / p99 | Load p50 / p95 | reconciled |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range r.Cost {
		c := st.Cost
		if c == nil {
			fmt.Fprintf(&b, "| %.0f | did not finish: %s ||||||||||\n", st.Rate, st.Error)
			continue
		}
		perBatch := 0.0
		if c.Batches > 0 {
			perBatch = float64(c.Events) / float64(c.Batches)
		}
		fmt.Fprintf(&b, "| %.0f | %d | %.0f | %.2f | %.0f | $%.4f | %.0f | %.1f | %.2f / %.2f s%s | %.2f / %.2f s | %v |\n",
			st.Rate, c.Batches, perBatch, c.ActionsPerBatch, c.ActionsPerMillion, c.DollarsPerMillion, c.BytesPer1000Records, c.ServerCPUMsPer1000, st.LatencyP50, st.LatencyP99, behind(st), st.LoadP50S, st.LoadP95S, st.Reconciled)
	}
	for _, st := range r.Cost {
		if c := st.Cost; c != nil {
			fmt.Fprintf(&b, "\n- %.0f events/s, actions a batch by kind:", st.Rate)
			for _, k := range slices.Sorted(maps.Keys(c.ActionsByKind)) {
				fmt.Fprintf(&b, " %s %.2f,", k, c.ActionsByKind[k])
			}
			if c.Note != "" {
				fmt.Fprintf(&b, " (%s)", c.Note)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
