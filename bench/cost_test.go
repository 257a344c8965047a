package main

import (
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
)

// TestBilledActionsFollowTemporalCloudsRules counts a hand-made partition
// and batch history by the published rules: a child is two actions at its
// parent, the markers of one workflow task are one, a retry is one more.
func TestBilledActionsFollowTemporalCloudsRules(t *testing.T) {
	ev := func(typ enums.EventType, set func(*history.HistoryEvent)) *history.HistoryEvent {
		e := &history.HistoryEvent{EventType: typ}
		if set != nil {
			set(e)
		}
		return e
	}
	parent := []*history.HistoryEvent{
		ev(enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, func(e *history.HistoryEvent) {
			e.Attributes = &history.HistoryEvent_WorkflowExecutionStartedEventAttributes{WorkflowExecutionStartedEventAttributes: &history.WorkflowExecutionStartedEventAttributes{}}
		}),
		ev(enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, nil),
		ev(enums.EVENT_TYPE_ACTIVITY_TASK_STARTED, func(e *history.HistoryEvent) {
			e.Attributes = &history.HistoryEvent_ActivityTaskStartedEventAttributes{ActivityTaskStartedEventAttributes: &history.ActivityTaskStartedEventAttributes{Attempt: 3}}
		}),
		ev(enums.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED, nil),
		ev(enums.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, nil),
		ev(enums.EVENT_TYPE_TIMER_STARTED, nil),
	}
	marker := func(task int64) *history.HistoryEvent {
		return ev(enums.EVENT_TYPE_MARKER_RECORDED, func(e *history.HistoryEvent) {
			e.Attributes = &history.HistoryEvent_MarkerRecordedEventAttributes{MarkerRecordedEventAttributes: &history.MarkerRecordedEventAttributes{WorkflowTaskCompletedEventId: task}}
		})
	}
	child := []*history.HistoryEvent{
		ev(enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, func(e *history.HistoryEvent) {
			e.Attributes = &history.HistoryEvent_WorkflowExecutionStartedEventAttributes{WorkflowExecutionStartedEventAttributes: &history.WorkflowExecutionStartedEventAttributes{
				ParentWorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: "ingest/payments/0"},
			}}
		}),
		marker(4), marker(4), // Dedup and Enrich in one workflow task
		ev(enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, nil),
		marker(9),
		ev(enums.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, func(e *history.HistoryEvent) {
			e.Attributes = &history.HistoryEvent_UpsertWorkflowSearchAttributesEventAttributes{UpsertWorkflowSearchAttributesEventAttributes: &history.UpsertWorkflowSearchAttributesEventAttributes{
				SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{"BatchLoaded": {}}},
			}}
		}),
		ev(enums.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, func(e *history.HistoryEvent) {
			e.Attributes = &history.HistoryEvent_UpsertWorkflowSearchAttributesEventAttributes{UpsertWorkflowSearchAttributesEventAttributes: &history.UpsertWorkflowSearchAttributesEventAttributes{
				SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{"TemporalChangeVersion": {}}},
			}}
		}),
	}
	got := map[string]float64{}
	billedActions(parent, got)
	billedActions(child, got)
	want := map[string]float64{
		"workflow started":       1, // the parent's; the child's is in the 2 below
		"activity":               2,
		"activity retry":         2,
		"child workflow started": 2,
		"signal":                 1,
		"timer":                  1,
		"local activities":       2, // two workflow tasks with markers
		"search attributes":      1, // the version upsert is free
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %v actions, want %v", k, got[k], n)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && got[k] != 0 {
			t.Errorf("unexpected %s: %v", k, got[k])
		}
	}
	c := temporalCost{Batches: 1, Events: 1000, byKind: got}
	c.settle()
	if c.Actions != 12 || c.ActionsPerMillion != 12000 || c.DollarsPerMillion != 0.6 {
		t.Errorf("settled: %v actions, %v a million, $%v a million; want 12, 12000, $0.6", c.Actions, c.ActionsPerMillion, c.DollarsPerMillion)
	}
}

// TestOutagesReportEachServer: the outage section names each server with
// its slowest and median partition's time from the server's return, and
// says so when a run did not finish rather than leave a blank.
func TestOutagesReportEachServer(t *testing.T) {
	r := &report{Options: defaultOptions(), Outages: []recoveryFigures{
		{Sink: "discard", Outage: outageTemporal, Runs: []recoveryRun{{MaxS: 6.5, MedianS: 4.25, Reconciled: true}}},
		{Sink: "discard", Outage: outageKafka, Errors: []string{"producer stopped early"}},
		{Sink: "discard", Outage: outageBigQuery, Runs: []recoveryRun{{MaxS: -1, MedianS: -1}}},
	}}
	md := r.outagesMarkdown()
	for _, want := range []string{
		"| temporal | 6.50 s | 4.25 s | true |",
		"| kafka | did not finish: producer stopped early |",
		"| bigquery | not seen (a partition had no batch visible afterwards) |",
		"stopped for 15s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the outage section lacks %q:\n%s", want, md)
		}
	}
}
