package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
)

// TestBadInputIsQuarantinedAndNeverStopsThePartition sends every kind of
// bad record between valid ones through the real pipeline: each lands in
// ingest_errors with its reason, the valid ones after it are loaded, and the
// books balance.
func TestBadInputIsQuarantinedAndNeverStopsThePartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxBytes, tuning.MaxRecords, tuning.PollFor = 64<<10, 4, time.Second
	e := Start(t, Options{Partitions: 1, Tuning: tuning})
	cfg := e.Operator.Config
	now := time.Now().UTC()
	ev := func(id, amount, currency string, at time.Time, extra string) []byte {
		return []byte(fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"amount":%s,"currency":%q,"customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"%s}`,
			id, at.Format(time.RFC3339Nano), amount, currency, extra))
	}
	type rec struct {
		key    []byte
		value  []byte
		reason string // "" loaded, "dup" duplicate
	}
	recs := []rec{
		{[]byte("ok-1"), ev("ok-1", `"10.00"`, "EUR", now, ""), ""},
		{nil, ev("nokey", `"10.00"`, "EUR", now, ""), "key_mismatch"},
		{[]byte("other"), ev("ok-2", `"10.00"`, "EUR", now, ""), "key_mismatch"},
		{[]byte("empty"), []byte{}, "malformed_json"},
		{[]byte("big"), ev("big", `"10.00"`, "EUR", now, `,"padding":"`+strings.Repeat("x", 300<<10)+`"`), "oversized"},
		{[]byte("ok-3"), ev("ok-3", `"10.00"`, "EUR", now, `,"padding":"`+strings.Repeat("y", 100<<10)+`"`), ""}, // bigger than a batch, still fine
		{[]byte("dec"), ev("dec", `"10.001"`, "EUR", now, ""), "invalid_field"},
		{[]byte("jpy"), ev("jpy", `1500.5`, "JPY", now, ""), "invalid_field"},
		{[]byte("future"), ev("future", `"10.00"`, "EUR", now.Add(72*time.Hour), ""), "invalid_field"},
		{[]byte("ok-1"), ev("ok-1", `"99.00"`, "EUR", now, ""), "conflict"},
		{[]byte("ok-1"), ev("ok-1", `10.0`, "EUR", now.Add(time.Second), ""), "dup"},
		{[]byte("late"), ev("late", `"10.00"`, "EUR", now.Add(-time.Hour), ""), "late"},
		{[]byte("utf8"), []byte("{\"transaction_id\":\"\xff\"}"), "malformed_json"},
		{[]byte("ok-4"), ev("ok-4", `"12.34"`, "USD", now, ""), ""},
	}
	w := cfg.Kafka().Producer(cfg.Topic, kafkalog.ProducerOptions{Partitioner: kafkalog.ByKey, BatchSize: 1})
	defer w.Close()
	for _, r := range recs {
		if err := w.Produce(ctx, kafkalog.Message{Key: r.key, Value: r.value}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 5*time.Minute)

	got := outcomes(t, e)
	for off, r := range recs {
		if g, ok := got[int64(off)]; !ok || g != r.reason {
			t.Errorf("offset %d: ended as %q (found %v), want %q", off, g, ok, r.reason)
		}
	}
	if len(got) != len(recs) {
		t.Errorf("%d records accounted for, %d sent", len(got), len(recs))
	}
	report, err := e.Operator.Reconcile(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Errorf("reconciliation:\n%s", out.String())
	}
}

// outcomes is where each offset of partition 0 ended: "" loaded, "dup" in
// dedup_audit, else its ingest_errors reason.
func outcomes(t *testing.T, e *Stack) map[int64]string {
	t.Helper()
	ds := fmt.Sprintf("`%s.%s", e.Operator.BigQuery.Project(), e.Operator.Config.BigQueryDataset)
	got := map[int64]string{}
	for _, row := range rows(t, e, "SELECT kafka_offset, reason FROM "+ds+".ingest_errors` WHERE kafka_partition = 0") {
		got[row[0].(int64)] = row[1].(string)
	}
	for _, row := range rows(t, e, "SELECT kafka_offset FROM "+ds+".dedup_audit` WHERE kafka_partition = 0") {
		got[row[0].(int64)] = "dup"
	}
	for _, row := range rows(t, e, "SELECT kafka_offset FROM "+ds+".transactions` WHERE kafka_partition = 0") {
		got[row[0].(int64)] = ""
	}
	return got
}
