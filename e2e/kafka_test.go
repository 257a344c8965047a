package e2e

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/simulation"
)

// payment is a valid event of the contract, for tests that write records
// by hand.
func paymentJSON(id, amount, currency string, at time.Time) []byte {
	return []byte(fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"amount":%q,"currency":%q,"customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`,
		id, at.Format(time.RFC3339Nano), amount, currency))
}

// TestHostileTimestampsAndHugeAmounts writes records whose Kafka
// timestamps lie (zero, -1, microseconds) or whose event_time runs ahead
// of them, between honest ones, and a hundred of the largest amounts a
// payment may have: no batch stops, no honest record is made late, each
// record ends where the rules say, and the sums are exact.
func TestHostileTimestampsAndHugeAmounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 200, time.Second
	e := Start(t, Options{Partitions: 1, Tuning: tuning})
	cfg := e.Operator.Config
	now := time.Now().UTC().Truncate(time.Millisecond)
	// A producer that wrote microseconds as milliseconds. Go's clients
	// overflow converting it (UnixNano), so the broker holds a time in
	// 2188 instead of 58,000: out of the trusted window either way.
	micro := time.UnixMilli(now.UnixMicro())
	microAsSent := micro.UnixNano() / 1e6
	type rec struct {
		msg  *kgo.Record
		want string // "" loaded, else the ingest_errors reason
	}
	msg := func(id string, event, ts time.Time) *kgo.Record {
		return &kgo.Record{Key: []byte(id), Value: paymentJSON(id, "10.00", "EUR", event), Timestamp: ts}
	}
	recs := []rec{
		{msg("honest-1", now.Add(-2*time.Minute), now), ""},
		{msg("ahead-2h", now.Add(2*time.Hour), now), "invalid_field"}, // past the lateness ahead of its timestamp
		// Within the lateness ahead: loaded, but it moves the watermark
		// only to its timestamp, so the honest records below stay on time.
		{msg("ahead-5m", now.Add(5*time.Minute), now), ""},
		{msg("honest-8m", now.Add(-8*time.Minute), now), ""},
		// Timestamps not to trust: no skew to check, and no move of the
		// watermark.
		{msg("micro-ts", now.Add(3*time.Hour), micro), ""},
		{msg("zero-ts", now.Add(-time.Minute), time.UnixMilli(0)), ""},
		{msg("minus-one-ts", now.Add(-time.Minute), time.UnixMilli(-1)), ""},
		{msg("honest-9m", now.Add(-9*time.Minute), now), ""},
		{&kgo.Record{Key: []byte("bad-micro"), Value: []byte("{not json"), Timestamp: micro}, "malformed_json"},
		{msg("late", now.Add(-time.Hour), now), "late"},
	}
	const huge = "999999999999999.99" // the largest USD amount the contract allows
	wantUSD := new(big.Rat)
	for i := range 100 {
		id := fmt.Sprintf("huge-%d", i)
		recs = append(recs, rec{&kgo.Record{Key: []byte(id), Value: paymentJSON(id, huge, "USD", now.Add(-time.Minute)), Timestamp: now}, ""})
		r, _ := new(big.Rat).SetString(huge)
		wantUSD.Add(wantUSD, r)
	}
	// franz-go writes a timestamp's milliseconds as given, however far
	// out (kafka-go's writer overflows on microseconds).
	w, err := kgo.NewClient(kgo.SeedBrokers(cfg.KafkaBrokers...), kgo.DefaultProduceTopic(cfg.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, r := range recs {
		if err := w.ProduceSync(ctx, r.msg).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 5*time.Minute)

	ds := fmt.Sprintf("`%s.%s", e.Operator.BigQuery.Project(), cfg.BigQueryDataset)
	got := outcomes(t, e)
	for off, r := range recs {
		if g, ok := got[int64(off)]; !ok || g != r.want {
			t.Errorf("offset %d (%s): ended as %q (found %v), want %q", off, r.msg.Key, g, ok, r.want)
		}
	}
	if len(got) != len(recs) {
		t.Errorf("%d records accounted for, %d sent", len(got), len(recs))
	}
	// The untrusted timestamp is kept as sent, and its TIMESTAMP is NULL.
	bad := rows(t, e, "SELECT kafka_timestamp IS NULL, kafka_timestamp_ms FROM "+ds+".ingest_errors` WHERE reason = 'malformed_json'")
	if len(bad) != 1 || bad[0][0] != true || bad[0][1] != microAsSent {
		t.Errorf("malformed record with a microsecond timestamp: %v, want NULL and %d", bad, microAsSent)
	}
	// Sums to the cent, in the table, the ledger and the minute metrics.
	for _, q := range []string{
		"SELECT CAST(SUM(amount) AS STRING) FROM " + ds + ".transactions` WHERE currency = 'USD'",
		"SELECT CAST(SUM(a.amount) AS STRING) FROM " + ds + ".batch_ledger` AS l, UNNEST(l.amount_by_currency) AS a WHERE a.currency = 'USD'",
		"SELECT CAST(SUM(amount_sum) AS STRING) FROM " + ds + ".metrics_minute` WHERE currency = 'USD'",
	} {
		r := rows(t, e, q)
		sum, ok := new(big.Rat).SetString(fmt.Sprint(r[0][0]))
		if !ok || sum.Cmp(wantUSD) != 0 {
			t.Errorf("%s: %v, want %s", q, r[0][0], wantUSD.FloatString(2))
		}
	}
	e.Reconcile(t, nil)
}

// TestPartitionsAddedToARunningTopic adds two partitions to a topic while
// the pipeline runs, then produces across the new layout: the supervisor
// starts the new partitions' workflows with no `starter start`, and every
// payment of both runs is loaded once.
func TestPartitionsAddedToARunningTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor, tuning.SuperviseEvery = 1000, time.Second, 2*time.Second
	e := Start(t, Options{Partitions: 2, Tuning: tuning})
	cfg := e.Operator.Config
	first := produceAndStart(t, e, 3000)
	e.WaitCaughtUp(t, 5*time.Minute)

	c := cfg.Kafka().Client(10 * time.Second)
	defer c.Close()
	if err := c.GrowTopic(ctx, cfg.Topic, 4); err != nil {
		t.Fatal(err)
	}
	opts := simulation.DefaultOptions()
	opts.Seed, opts.StartTime = 2, opts.StartTime.Add(time.Hour)
	second, err := simulation.Produce(ctx, opts, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if second.Partitions != 4 || second.RecordsByPartition[2]+second.RecordsByPartition[3] == 0 {
		t.Fatalf("second run wrote %v over %d partitions, want records on the new ones", second.RecordsByPartition, second.Partitions)
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	st, err := e.Operator.Status(ctx)
	if err != nil || len(st) != 4 {
		t.Fatalf("status: %v %+v", err, st)
	}
	for _, p := range st[2:] {
		if p.Committed <= 0 || p.Lag != 0 {
			t.Errorf("new partition %d: committed %d, lag %d, state %s", p.Partition, p.Committed, p.Lag, p.State)
		}
	}
	state, sup, err := e.Operator.Supervisor(ctx)
	if err != nil || state != "running" || sup == nil || sup.Partitions != 4 || fmt.Sprint(sup.Started) != "[2 3]" {
		t.Errorf("supervisor: %s %+v (%v), want running, keeping 4, having started [2 3]", state, sup, err)
	}
	ds := fmt.Sprintf("`%s.%s", e.Operator.BigQuery.Project(), cfg.BigQueryDataset)
	loaded := rows(t, e, "SELECT COUNT(*), COUNT(DISTINCT transaction_id) FROM "+ds+".transactions`")
	if want := int64(first.UniqueIDs + second.UniqueIDs); loaded[0][0] != want || loaded[0][1] != want {
		t.Errorf("transactions: %v rows, %v IDs; want %d of each", loaded[0][0], loaded[0][1], want)
	}
	for cur := range first.AmountByCurrency {
		want := sumOf(t, first.AmountByCurrency[cur], second.AmountByCurrency[cur])
		r := rows(t, e, fmt.Sprintf("SELECT CAST(SUM(amount) AS STRING) FROM %s.transactions` WHERE currency = '%s'", ds, cur))
		if got, ok := new(big.Rat).SetString(fmt.Sprint(r[0][0])); !ok || got.Cmp(want) != 0 {
			t.Errorf("%s: loaded %v, produced %s", cur, r[0][0], want.FloatString(3))
		}
	}
	e.Reconcile(t, nil)

	// A pause of the topic while one partition does not run changes
	// nothing: paused behind an error, the others would stay paused.
	if err := e.Operator.Temporal.TerminateWorkflow(ctx, contract.IngestID(cfg.Topic, 3), "", "by hand, in the test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Operator.Control(ctx, contract.PauseUpdate, nil); err == nil || !strings.Contains(err.Error(), "partition 3") {
		t.Fatalf("pause with partition 3 terminated: %v, want an error naming it", err)
	}
	st, err = e.Operator.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st[:3] {
		if p.State == contract.StatePaused || p.State == contract.StatePausing {
			t.Errorf("partition %d is %s after a pause that failed", p.Partition, p.State)
		}
	}
}

func sumOf(t *testing.T, amounts ...string) *big.Rat {
	t.Helper()
	sum := new(big.Rat)
	for _, a := range amounts {
		if a == "" {
			continue
		}
		r, ok := new(big.Rat).SetString(a)
		if !ok {
			t.Fatalf("amount %q", a)
		}
		sum.Add(sum, r)
	}
	return sum
}

// TestThreeBrokersFirstDownLeaderMoved runs the pipeline against a
// three-broker cluster whose first bootstrap broker is down, and moves a
// partition's leader mid-run: everything is loaded once, to the cent.
func TestThreeBrokersFirstDownLeaderMoved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stackCfg := devstacktest.Config(t, 2)
	stackCfg.KafkaBrokers = 3
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	e := Start(t, Options{Servers: &stackCfg, Tuning: tuning})
	cfg := e.Operator.Config
	if len(cfg.KafkaBrokers) != 3 {
		t.Fatalf("brokers %v, want 3", cfg.KafkaBrokers)
	}
	m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 6000})
	if err != nil {
		t.Fatal(err)
	}
	kc := e.Stack.Kafka()
	if err := kc.RemoveNode(0); err != nil { // the broker at the first bootstrap address
		t.Fatal(err)
	}
	if _, err := e.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Mid-run, partition 1's leader moves to the other live broker.
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := e.Operator.Status(ctx)
		if err == nil && st[1].BatchesDone > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no batch of partition 1 within a minute: %+v %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	leader := kc.LeaderFor(cfg.Topic, 1)
	other := int32(1)
	if leader == 1 {
		other = 2
	}
	if err := kc.MoveTopicPartition(cfg.Topic, 1, other); err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	e.Reconcile(t, &m)
	checkAgainstOracle(t, e, m)
	var bounds []kafkalog.Bounds
	if bounds, err = kafkalog.AllBounds(ctx, cfg.Kafka(), cfg.Topic); err != nil || len(bounds) != 2 {
		t.Fatalf("bounds with broker 0 down: %v %v", bounds, err)
	}
}

// TestRecreatedTopicStopsThePartitionLoudly deletes and re-creates the
// topic under a running pipeline: the partition's next offset is gone, so
// it stops with one error that status and /metrics show, and is never
// reported as caught up.
func TestRecreatedTopicStopsThePartitionLoudly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 200, time.Second
	e := Start(t, Options{Partitions: 1, Tuning: tuning})
	cfg := e.Operator.Config
	produceAndStart(t, e, 500)
	e.WaitCaughtUp(t, 5*time.Minute)

	c := cfg.Kafka().Client(10 * time.Second)
	defer c.Close()
	if err := c.DeleteTopic(ctx, cfg.Topic); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(ctx, cfg.Topic, 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var st []operator.PartitionStatus
	for {
		var err error
		st, err = e.Operator.Status(ctx)
		if err == nil && len(st) == 1 && st[0].State == "failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition never stopped: %+v (%v)", st, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(st[0].LastError, "re-created or truncated") {
		t.Errorf("status error %q does not say the log lost the offset", st[0].LastError)
	}
	short, cancelShort := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShort()
	if err := e.Operator.WaitCaughtUp(short, nil); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("a stopped partition was reported caught up (%v)", err)
	}
	var out strings.Builder
	if err := expfmtText(e, &out); err != nil {
		t.Fatal(err)
	}
	if got := sum(out.String(), "paystream_partition_offset_lost_total", `partition="0"`); got != 1 {
		t.Errorf("paystream_partition_offset_lost_total for partition 0: %v, want 1", got)
	}
}

// expfmtText writes what the env's worker serves on /metrics.
func expfmtText(e *Stack, out *strings.Builder) error {
	srv := httptest.NewServer(e.Worker.HTTPHandler(e.Operator.Temporal, e.Worker.Engine.Metrics))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(out, resp.Body)
	return err
}
