package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
)

// TestEndToEnd produces a simulated stream with duplicates, malformed and
// late records, runs the pipeline on the real stack until caught up, and
// checks BigQuery by query against the simulator's manifest and against
// the oracle's verdict on every record read back from Kafka.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords = 1500 // many batches, so duplicates cross batch boundaries
	tuning.PollFor = time.Second
	tuning.SearchableCounts = true // found in the web UI by BatchLoaded below
	e := Start(t, Options{Partitions: 3, Tuning: tuning})
	cfg := e.Operator.Config

	m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 12000})
	if err != nil {
		t.Fatal(err)
	}
	started, err := e.Operator.Start(ctx)
	if err != nil || len(started) != 3 {
		t.Fatalf("start: %v %+v", err, started)
	}
	again, err := e.Operator.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range again {
		if !s.Already {
			t.Errorf("second start started partition %d again", s.Partition)
		}
	}
	e.WaitCaughtUp(t, 10*time.Minute)

	// A worker restarted with its predecessor's state directory releases
	// those partitions' workflows from the dead worker's sticky queue:
	// here each caught-up partition's PartitionIngest, and only theirs.
	// The last batch commits its offset inside its Load, so it may still
	// be closing when the partitions read as caught up.
	waitNoBatchRunning(t, e)
	if n, err := pipeline.ReleaseStickyWorkflows(ctx, e.Operator.Temporal, cfg.Namespace, map[string][]int{cfg.Topic: {0, 2}, "other-topic": {1}}); err != nil || n != 2 {
		t.Errorf("released %d workflows of partitions 0 and 2 (%v), want their 2 PartitionIngest runs", n, err)
	}

	report, err := e.Operator.Reconcile(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	report.Write(&out)
	t.Logf("reconciliation:\n%s", out.String())
	if !report.OK() {
		t.Errorf("reconciliation failed:\n%s", out.String())
	}

	checkAgainstOracle(t, e, m)

	// One range, one batch, forever: a completed batch ID refuses a second
	// run, and backfilling an ingested range loads nothing again.
	first := rows(t, e, fmt.Sprintf("SELECT batch_id, end_offset FROM `%s.%s.batch_ledger` WHERE kafka_partition = 0 AND start_offset = 0", e.Operator.BigQuery.Project(), cfg.BigQueryDataset))
	if len(first) != 1 {
		t.Fatal("no ledger row for partition 0's first batch")
	}
	_, err = e.Operator.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: first[0][0].(string), TaskQueue: cfg.TaskQueue,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY, WorkflowExecutionErrorWhenAlreadyStarted: true}, "MicroBatch", contract.Spec{})
	if !errors.As(err, new(*serviceerror.WorkflowExecutionAlreadyStarted)) {
		t.Errorf("second run of completed batch %s: err = %v, want already started", first[0][0], err)
	}
	backfilled, err := e.Operator.Backfill(ctx, 0, 0, m.EndOffsets[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(backfilled) < 2 {
		t.Errorf("backfill of partition 0 touched %d batches, want all of them", len(backfilled))
	}
	for _, b := range backfilled {
		if b.Outcome != "already loaded" {
			t.Errorf("backfill of ingested %s: %s", b.BatchID, b.Outcome)
		}
	}
	if report, err := e.Operator.Reconcile(ctx, &m); err != nil || !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Errorf("after backfill and a second batch start, reconciliation: %v\n%s", err, out.String())
	}

	checkHistoryHoldsNoEventData(t, e, m)

	// Batches are found in the web UI by partition and offset.
	ledgerRows := rows(t, e, fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.batch_ledger` WHERE kafka_partition = 1", e.Operator.BigQuery.Project(), cfg.BigQueryDataset))
	query := "KafkaTopic = 'payments' AND KafkaPartition = 1 AND BatchEndOffset > 0 AND BatchLoaded > 0"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := e.Operator.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			t.Fatalf("list %q: %v", query, err)
		}
		if int64(len(resp.GetExecutions())) == ledgerRows[0][0].(int64) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("search %q finds %d batches, the ledger has %d", query, len(resp.GetExecutions()), ledgerRows[0][0])
		}
	}

	checkQuarantineReplay(t, e, m)
}

// checkAgainstOracle judges every record read back from Kafka with the
// oracle and finds it where it must be: duplicates in dedup_audit pointing
// at their originals, rejected and late records in ingest_errors with their
// bytes.
func checkAgainstOracle(t *testing.T, e *Stack, m simulation.Manifest) {
	t.Helper()
	ctx := context.Background()
	cfg := e.Operator.Config
	oracle := simulation.NewOracle(cfg.AllowedLateness)
	wantDups := map[string]bool{}
	wantErrs := map[string]string{}
	for p := range m.Partitions {
		err := kafkalog.ReadRange(ctx, cfg.Kafka(), cfg.Topic, p, 0, m.EndOffsets[p], func(r kafkalog.Record) error {
			v := oracle.Observe(p, r.Offset, r.Key, r.Value, r.Time)
			switch v.Outcome {
			case simulation.OutcomeDuplicate:
				wantDups[fmt.Sprintf("%d/%d->%d", p, r.Offset, v.DuplicateOf)] = true
			case simulation.OutcomeLate:
				wantErrs[fmt.Sprintf("%d/%d", p, r.Offset)] = string(payment.ReasonLate) + " " + string(r.Value)
			case simulation.OutcomeRejected:
				wantErrs[fmt.Sprintf("%d/%d", p, r.Offset)] = string(v.Reason) + " " + string(r.Value)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ds := fmt.Sprintf("`%s.%s", e.Operator.BigQuery.Project(), cfg.BigQueryDataset)
	gotDups := map[string]bool{}
	for _, row := range rows(t, e, "SELECT kafka_partition, kafka_offset, duplicate_of_offset FROM "+ds+".dedup_audit`") {
		gotDups[fmt.Sprintf("%d/%d->%d", row[0], row[1], row[2])] = true
	}
	if len(gotDups) != len(wantDups) || len(wantDups) != m.Duplicates {
		t.Errorf("dedup_audit has %d rows, oracle expects %d, manifest %d", len(gotDups), len(wantDups), m.Duplicates)
	}
	for k := range wantDups {
		if !gotDups[k] {
			t.Errorf("dedup_audit lacks duplicate %s", k)
		}
	}
	gotErrs := map[string]string{}
	for _, row := range rows(t, e, "SELECT kafka_partition, kafka_offset, reason, raw, raw_encoding FROM "+ds+".ingest_errors`") {
		raw := row[3].(string)
		if row[4] == "base64" {
			b, err := base64.StdEncoding.DecodeString(raw)
			if err != nil {
				t.Fatal(err)
			}
			raw = string(b)
		}
		gotErrs[fmt.Sprintf("%d/%d", row[0], row[1])] = fmt.Sprint(row[2]) + " " + raw
	}
	if len(gotErrs) != len(wantErrs) {
		t.Errorf("ingest_errors has %d rows, oracle expects %d", len(gotErrs), len(wantErrs))
	}
	for k, want := range wantErrs {
		if gotErrs[k] != want {
			t.Errorf("ingest_errors at %s: %.80q, want %.80q", k, gotErrs[k], want)
		}
	}

}

// checkHistoryHoldsNoEventData reads the raw history of a batch and of a
// partition workflow and looks for any card, customer or transaction ID of
// the records that batch processed (invariant 1).
func checkHistoryHoldsNoEventData(t *testing.T, e *Stack, m simulation.Manifest) {
	ctx := context.Background()
	cfg := e.Operator.Config
	var secrets []string
	var firstBatch string
	err := kafkalog.ReadRange(ctx, cfg.Kafka(), cfg.Topic, 0, 0, min(m.EndOffsets[0], 1500), func(r kafkalog.Record) error {
		if ev, err := payment.Parse(r.Value); err == nil {
			secrets = append(secrets, ev.CardID, ev.CustomerID, ev.TransactionID, ev.IPAddress)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ledger := rows(t, e, fmt.Sprintf("SELECT batch_id FROM `%s.%s.batch_ledger` WHERE kafka_partition = 0 AND start_offset = 0", e.Operator.BigQuery.Project(), cfg.BigQueryDataset))
	if len(ledger) != 1 {
		t.Fatalf("no ledger row for the first batch of partition 0")
	}
	firstBatch = ledger[0][0].(string)
	for _, id := range []string{firstBatch, contract.IngestID(cfg.Topic, 0)} {
		raw := historyJSON(t, e.Operator.Temporal, id)
		if !strings.Contains(raw, `"DuplicateOffsets"`) && id == firstBatch {
			t.Fatalf("decoded history of %s lacks the Dedup result; the check would prove nothing", id)
		}
		if !strings.Contains(raw, "ActivityTaskCompleted") && !strings.Contains(raw, "EVENT_TYPE_ACTIVITY_TASK_COMPLETED") {
			t.Fatalf("history of %s has no completed activity; the check would prove nothing", id)
		}
		for _, s := range secrets {
			if strings.Contains(raw, s) {
				t.Fatalf("history of %s contains event data %q", id, s)
			}
		}
		// Fraud scores are computed again by Load from the rule set the
		// batch names, never recorded: no Enrich marker, no score list.
		if id == firstBatch && (strings.Contains(raw, `"Enrich"`) || strings.Contains(raw, `"Scores"`)) {
			t.Errorf("history of %s records fraud scores", id)
		}
		// No workflow code is gated by a version: each GetVersion would
		// add a marker and a TemporalChangeVersion upsert, a visibility
		// write, to every run.
		if strings.Contains(raw, "TemporalChangeVersion") {
			t.Errorf("history of %s records a version marker", id)
		}
		if dir := os.Getenv("PAYSTREAM_RECORD_HISTORY"); dir != "" {
			name := strings.NewReplacer("/", "_").Replace(id) + ".json"
			if err := os.WriteFile(dir+"/"+name, []byte(raw[:strings.Index(raw, "\n")]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func historyJSON(t *testing.T, tc client.Client, workflowID string) string {
	t.Helper()
	raw := devstacktest.HistoryJSON(t, tc, workflowID)
	// Payloads are base64 in the JSON form: decode every one, so what a
	// person would see in the web UI is searched too.
	var doc any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	var decoded strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "data" {
					if b, err := base64.StdEncoding.DecodeString(s); err == nil {
						decoded.Write(b)
						decoded.WriteByte('\n')
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if decoded.Len() == 0 {
		t.Fatalf("history of %s has no payloads", workflowID)
	}
	return raw + "\n" + decoded.String()
}

func rows(t *testing.T, e *Stack, sql string) [][]bigquery.Value {
	t.Helper()
	return e.Query(t, sql)
}

// TestColdWorkersAndContinueAsNewDecideAlike runs the pipeline with a
// worker that rebuilds its dedup window from the log for every batch and
// with continue-as-new every two batches: the answer must be the warm one,
// the oracle's.
func TestColdWorkersAndContinueAsNewDecideAlike(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor, tuning.MaxBatchesPerRun = 700, time.Second, 2
	e := Start(t, Options{Partitions: 2, Tuning: tuning})
	e.Worker.Engine.RebuildEveryBatch = true
	cfg := e.Operator.Config
	opts := simulation.DefaultOptions()
	opts.Seed, opts.EventRate = 9, 20 // slow event time: the window spans the whole run
	m, err := simulation.Produce(ctx, opts, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 6000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	firstRun, err := e.Operator.Temporal.DescribeWorkflowExecution(ctx, contract.IngestID(cfg.Topic, 0), "")
	if err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 10*time.Minute)
	lastRun, err := e.Operator.Temporal.DescribeWorkflowExecution(ctx, contract.IngestID(cfg.Topic, 0), "")
	if err != nil {
		t.Fatal(err)
	}
	if firstRun.GetWorkflowExecutionInfo().GetExecution().GetRunId() == lastRun.GetWorkflowExecutionInfo().GetExecution().GetRunId() {
		t.Fatal("partition 0 never continued as new; the test would prove nothing about it")
	}
	report, err := e.Operator.Reconcile(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Errorf("reconciliation failed:\n%s", out.String())
	}
	checkAgainstOracle(t, e, m)
}

// waitNoBatchRunning waits up to a minute until no MicroBatch runs.
func waitNoBatchRunning(t *testing.T, e *Stack) {
	t.Helper()
	WaitFor(t, time.Minute, 100*time.Millisecond, "batches still running after catching up", func() bool {
		resp, err := e.Operator.Temporal.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: e.Operator.Config.Namespace, Query: "WorkflowType = 'MicroBatch' AND ExecutionStatus = 'Running'"})
		return err == nil && resp.GetCount() == 0
	})
}
