package engine

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/testtier"
)

// craftedLog starts an in-process broker with a one-partition topic
// holding recs in order.
func craftedLog(t *testing.T, topic string, recs []*kgo.Record) kafkalog.Cluster {
	t.Helper()
	testtier.NeedsServers(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return kafkalog.Plain(cluster.ListenAddrs())
}

// paymentRecord is a valid event of the contract with its own ID as key.
func paymentRecord(id string, at, ts time.Time) *kgo.Record {
	v := fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"amount":"10.00","currency":"EUR","customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`,
		id, at.Format(time.RFC3339Nano))
	return &kgo.Record{Key: []byte(id), Value: []byte(v), Timestamp: ts}
}

var craftedStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// decideOn decides spec on a, failing the test on an error.
func decideOn(t *testing.T, a *Engine, spec contract.Spec) contract.Decisions {
	t.Helper()
	d, err := a.Decide(context.Background(), spec)
	if err != nil {
		t.Fatalf("%s: %v", spec.ID(), err)
	}
	return d
}

// TestLatenessChangeDecidesAlikeWarmColdAndFromSnapshot: after a stop and
// start with a shorter allowed lateness, the partition's next batch comes
// with the window its predecessor handed on and the new lateness. A warm
// worker, a cold one and one restarted on a snapshot must decide it
// alike: the warm window, built at the old lateness, is not that batch's
// window. Here a record 30 minutes behind the newest one is on time at
// an hour and late at ten minutes.
func TestLatenessChangeDecidesAlikeWarmColdAndFromSnapshot(t *testing.T) {
	const topic, n = "lateness", 1000
	var recs []*kgo.Record
	for i := range n {
		at := craftedStart.Add(time.Duration(i) * time.Second)
		if i == 700 {
			at = craftedStart.Add(699*time.Second - 30*time.Minute)
		}
		recs = append(recs, paymentRecord(fmt.Sprintf("p%d", i), at, craftedStart.Add(time.Duration(i)*time.Second)))
	}
	kafka := craftedLog(t, topic, recs)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond})
	first := contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 500}, AllowedLateness: time.Hour}
	d := decideOn(t, warm, first)
	second := contract.Spec{Range: contract.Range{Topic: topic, Start: 500, End: n}, Window: d.Next, AllowedLateness: 10 * time.Minute}
	got := map[string]contract.Decisions{
		"warm":          decideOn(t, warm, second),
		"cold":          decideOn(t, New(Config{Kafka: kafka, RebuildEveryBatch: true}), second),
		"from snapshot": decideOn(t, New(Config{Kafka: kafka, SnapshotDir: dir}), second),
	}
	want := got["cold"]
	if want.Loaded != 499 || !reflect.DeepEqual([]int64(want.LateOffsets), []int64{700}) {
		t.Fatalf("cold worker: %d loaded, late %v; want 499 loaded and offset 700 late at ten minutes", want.Loaded, want.LateOffsets)
	}
	for path, d := range got {
		if d.Loaded != want.Loaded || !reflect.DeepEqual(d, want) {
			t.Errorf("%s: %d loaded, late %v; the cold worker %d loaded, late %v", path, d.Loaded, d.LateOffsets, want.Loaded, want.LateOffsets)
		}
	}
}

// floorsLog is a partition whose producers' clock crawls (a millisecond
// an event), so its window reaches a bound of 1,000 IDs and raises its
// floor at offsets 1500 and 2000, then a resend, at offset 2000, of the
// payment at offset 500: behind the floor, so late, since its original
// is no longer held; then new payments up to offset 2500.
func floorsLog(t *testing.T, topic string) kafkalog.Cluster {
	t.Helper()
	ts := craftedStart.Add(10 * time.Second)
	var recs []*kgo.Record
	at := func(i int) time.Time { return craftedStart.Add(time.Duration(i) * time.Millisecond) }
	for i := range 2500 {
		switch i {
		case 2000:
			recs = append(recs, paymentRecord("p500", at(500), ts))
		default:
			recs = append(recs, paymentRecord(fmt.Sprintf("p%d", i), at(i), ts))
		}
	}
	return craftedLog(t, topic, recs)
}

const floorsBound, floorsBatch = 1000, 500

// floorsChain decides the floors log's first four batches on a, as one
// partition run does, and returns the spec of the fifth, as that run
// would plan it.
func floorsChain(t *testing.T, a *Engine, topic string) contract.Spec {
	t.Helper()
	window := contract.Window{}
	for start := int64(0); start < 2000; start += floorsBatch {
		spec := contract.Spec{Range: contract.Range{Topic: topic, Start: start, End: start + floorsBatch}, Window: window,
			AllowedLateness: time.Hour, MaxWindowIDs: floorsBound}
		window = decideOn(t, a, spec).Next
	}
	if len(window.Floors) != 2 || window.Start != 1024 {
		t.Fatalf("the window handed on after offset 2000 is %+v: want it from offset 1024 with two floors", window)
	}
	return contract.Spec{Range: contract.Range{Topic: topic, Start: 2000, End: 2500}, Window: window, AllowedLateness: time.Hour, MaxWindowIDs: floorsBound}
}

// TestFloorsDecideAlikeOnEveryPath: the batch after two floor raises is
// decided by the warm worker, a cold one, a restarted one with a
// snapshot, and with the window as handed on without its floors (what a
// ledger row of an earlier release gives `start` and backfill). With the
// floors, every path files the resent payment as late; a warm window is
// reused only for a spec whose floors are its own, so a spec without
// them is decided as a cold worker decides it, whatever worker gets it.
func TestFloorsDecideAlikeOnEveryPath(t *testing.T) {
	const topic = "floors"
	kafka := floorsLog(t, topic)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond})
	next := floorsChain(t, warm, topic)
	got := map[string]contract.Decisions{
		"warm":          decideOn(t, warm, next),
		"cold":          decideOn(t, New(Config{Kafka: kafka, RebuildEveryBatch: true}), next),
		"from snapshot": decideOn(t, New(Config{Kafka: kafka, SnapshotDir: dir}), next),
	}
	want := got["cold"]
	if want.Loaded != 499 || !reflect.DeepEqual([]int64(want.LateOffsets), []int64{2000}) {
		t.Fatalf("cold worker with the floors: %d loaded, late %v; want 499 loaded and the resend at 2000 late", want.Loaded, want.LateOffsets)
	}
	for path, d := range got {
		if !reflect.DeepEqual(d, want) {
			t.Errorf("%s: %d loaded, late %v; the cold worker %d loaded, late %v", path, d.Loaded, d.LateOffsets, want.Loaded, want.LateOffsets)
		}
	}

	// The same batch with the floors dropped: a warm worker must not
	// answer with the window it holds, which has them.
	bare := next
	bare.Window.Floors = nil
	warm2 := New(Config{Kafka: kafka})
	floorsChain(t, warm2, topic)
	w, c := decideOn(t, warm2, bare), decideOn(t, New(Config{Kafka: kafka, RebuildEveryBatch: true}), bare)
	if !reflect.DeepEqual(w, c) {
		t.Errorf("without floors: warm %d loaded, late %v; cold %d loaded, late %v", w.Loaded, w.LateOffsets, c.Loaded, c.LateOffsets)
	}
}

// TestRecordsParsedAtAnotherLatenessAreParsedAgain: a record whose
// event_time runs 30 minutes ahead of its Kafka timestamp is valid at an
// hour's lateness and invalid at ten minutes. A worker that planned the
// batch at an hour, then decides it for a spec at ten minutes (a batch
// run again after a restart with another lateness), decides as a worker
// that never planned it.
func TestRecordsParsedAtAnotherLatenessAreParsedAgain(t *testing.T) {
	const topic = "skew"
	var recs []*kgo.Record
	for i := range 100 {
		ts := craftedStart.Add(time.Duration(i) * time.Second)
		at := ts
		if i == 50 {
			at = ts.Add(30 * time.Minute)
		}
		recs = append(recs, paymentRecord(fmt.Sprintf("s%d", i), at, ts))
	}
	kafka := craftedLog(t, topic, recs)
	planned := New(Config{Kafka: kafka})
	if _, err := planned.Plan(context.Background(), contract.PlanInput{Topic: topic, Next: 0, MaxRecords: 100, MaxBytes: 8 << 20, AllowedLateness: time.Hour}); err != nil {
		t.Fatal(err)
	}
	spec := contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 100}, AllowedLateness: 10 * time.Minute}
	got, want := decideOn(t, planned, spec), decideOn(t, New(Config{Kafka: kafka}), spec)
	if want.Invalid != 1 || want.Loaded != 99 || !reflect.DeepEqual(got, want) {
		t.Errorf("the worker that planned at an hour: %d loaded, %d invalid; one that did not: %d loaded, %d invalid (want 99 and 1)",
			got.Loaded, got.Invalid, want.Loaded, want.Invalid)
	}
}

// TestALongerLatenessAfterAStopLoadsNoResendTwice: after a stop, a start
// with a longer allowed lateness resumes from the ledger's window, which
// holds only the IDs the old lateness kept. A resend of a payment older
// than those is late, not loaded again.
func TestALongerLatenessAfterAStopLoadsNoResendTwice(t *testing.T) {
	const topic = "longer"
	at := func(i int) time.Time { return craftedStart.Add(time.Duration(i) * time.Second) }
	var recs []*kgo.Record
	for i := range 5000 {
		id := fmt.Sprintf("p%d", i)
		if i == 4500 {
			recs = append(recs, paymentRecord("p100", at(100), at(i))) // a resend, 4,400 s after its original
			continue
		}
		recs = append(recs, paymentRecord(id, at(i), at(i)))
	}
	kafka := craftedLog(t, topic, recs)
	a := New(Config{Kafka: kafka, RebuildEveryBatch: true})
	first := decideOn(t, a, contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 4000}, AllowedLateness: 10 * time.Minute})
	if first.Loaded != 4000 || first.Next.Start <= 100 {
		t.Fatalf("first batch: %d loaded, window from %d; want 4000 and p100 aged out of the window", first.Loaded, first.Next.Start)
	}
	// What start hands the partition after the stop, at an hour's lateness.
	window := first.Next.KeepWatermark(10*time.Minute, 2*time.Hour, 4000)
	second := decideOn(t, a, contract.Spec{Range: contract.Range{Topic: topic, Start: 4000, End: 5000}, Window: window, AllowedLateness: 2 * time.Hour})
	if second.Loaded != 999 || !reflect.DeepEqual([]int64(second.LateOffsets), []int64{4500}) {
		t.Errorf("after the start: %d loaded, late %v; want 999 loaded and the resend at 4500 late, not loaded again", second.Loaded, second.LateOffsets)
	}
}
