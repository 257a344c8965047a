package main

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/testtier"
)

// TestScheduleIsTheSeeds: one seed, one schedule, step for step; another
// seed, another schedule; and the lateness steps alternate.
func TestScheduleIsTheSeeds(t *testing.T) {
	a := NewSchedule(42, 5*time.Minute, config.WriteModeLoad)
	b := NewSchedule(42, 5*time.Minute, config.WriteModeLoad)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 42 drew two schedules:\n%+v\n%+v", a, b)
	}
	if c := NewSchedule(43, 5*time.Minute, config.WriteModeLoad); reflect.DeepEqual(a.Steps, c.Steps) {
		t.Fatal("seeds 42 and 43 drew the same steps")
	}
	if n := len(a.Steps); n != 37 {
		t.Errorf("5 minutes drew %d steps, want one per 8 s: 37", n)
	}
	for i, st := range a.Steps {
		if st.At < 5*time.Second || st.At > 5*time.Minute-10*time.Second {
			t.Errorf("step %d at %s: outside [5s, duration-10s]", i, st.At)
		}
		if i > 0 && st.At < a.Steps[i-1].At {
			t.Errorf("step %d at %s before step %d at %s", i, st.At, i-1, a.Steps[i-1].At)
		}
	}
	// Over many seeds every fault is drawn.
	seen := map[Fault]int{}
	lateness := 0
	for seed := range uint64(50) {
		s := NewSchedule(seed, 5*time.Minute, config.WriteModeLoad)
		want := s.Lateness
		for _, st := range s.Steps {
			seen[st.Fault]++
			if st.Fault == FaultLateness {
				lateness++
				if want == latenesses[0] {
					want = latenesses[1]
				} else {
					want = latenesses[0]
				}
				if st.Lateness != want {
					t.Fatalf("seed %d: lateness step to %s, want %s", seed, st.Lateness, want)
				}
			}
		}
	}
	for _, w := range faultWeights {
		if seen[w.fault] == 0 {
			t.Errorf("fault %s never drawn in 50 seeds", w.fault)
		}
	}
	if lateness == 0 {
		t.Error("no lateness change in 50 seeds")
	}
}

// TestOracleFromTheProducersAccount: an aborted transaction's records land
// nowhere and are nobody's original; the payment sent again after the
// abort is loaded; a repeat of a loaded one is a duplicate, with another
// amount a conflict; late and malformed records are errors.
func TestOracleFromTheProducersAccount(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pay := func(id, amount, cur string, at time.Time) []byte {
		return fmt.Appendf(nil, `{"transaction_id":%q,"event_time":%q,"amount":%q,"currency":%q,"customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`,
			id, at.Format(time.RFC3339Nano), amount, cur)
	}
	recs := []Produced{
		{Partition: 0, Offset: 0, Key: []byte("a"), Value: pay("a", "10.00", "EUR", now), Timestamp: now, Committed: true},
		{Partition: 0, Offset: 1, Key: []byte("b"), Value: pay("b", "5.25", "EUR", now), Timestamp: now, Txn: 1, Committed: false},
		{Partition: 0, Offset: 2, Key: []byte("c"), Value: pay("c", "7", "JPY", now), Timestamp: now, Txn: 2, Committed: true},
		// offset 3: the abort marker of txn 1, offset 4: the commit of txn 2
		{Partition: 0, Offset: 5, Key: []byte("b"), Value: pay("b", "5.25", "EUR", now), Timestamp: now, Committed: true},
		{Partition: 0, Offset: 6, Key: []byte("a"), Value: pay("a", "10.00", "EUR", now), Timestamp: now, Committed: true},
		{Partition: 0, Offset: 7, Key: []byte("c"), Value: pay("c", "8", "JPY", now), Timestamp: now, Committed: true},
		{Partition: 0, Offset: 8, Key: []byte("d"), Value: pay("d", "1.00", "EUR", now.Add(-2*time.Hour)), Timestamp: now, Committed: true},
		{Partition: 0, Offset: 9, Key: []byte("e"), Value: []byte(`{"transaction_id":"e",`), Timestamp: now, Committed: true},
		{Partition: 0, Offset: 10, Key: []byte("f"), Value: pay("f", "2.00", "EUR", now), Timestamp: now.Add(-time.Hour), Committed: true},
		{Partition: 1, Offset: 0, Key: []byte("a"), Value: pay("a", "10.00", "EUR", now), Timestamp: now, Committed: true},
	}
	books, err := Oracle(recs, latenesses)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for p, offs := range books.Partitions {
		for off, e := range offs {
			got[fmt.Sprintf("%d/%d", p, off)] = e.String()
		}
	}
	want := map[string]string{
		"0/0": "transactions a 10.000 EUR", "0/2": "transactions c 7.000 JPY", "0/5": "transactions b 5.250 EUR",
		"0/6": "dedup_audit", "0/7": "ingest_errors conflict", "0/8": "ingest_errors late",
		"0/9": "ingest_errors malformed_json", "0/10": "ingest_errors invalid_field",
		"1/0": "transactions a 10.000 EUR",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("books:\n got %v\nwant %v", got, want)
	}
	if books.Aborted != 1 {
		t.Errorf("aborted %d, want 1", books.Aborted)
	}
	totals := books.Totals()
	if s := totals["EUR"].String(); s != "3 rows, 25.250" {
		t.Errorf("EUR: %s, want 3 rows, 25.250", s)
	}
	if s := totals["JPY"].String(); s != "1 rows, 7.000" {
		t.Errorf("JPY: %s, want 1 rows, 7.000", s)
	}

	// A record judged differently under the two latenesses is refused:
	// the books would depend on which batch saw the change.
	ambiguous := append(recs, Produced{Partition: 0, Offset: 11, Key: []byte("g"), Value: pay("g", "1.00", "EUR", now.Add(-12*time.Minute)), Timestamp: now, Committed: true})
	if _, err := Oracle(ambiguous, latenesses); err == nil || !strings.Contains(err.Error(), "depends on the lateness") {
		t.Errorf("a record 12 minutes behind under lateness 10m and 15m: %v, want the ambiguity refused", err)
	}
}

// TestChaosShort is the chaos run CI affords (about 2.5 minutes): seed 10
// for 45 s in storagewrite mode, whose schedule kills a worker twice,
// drains, pauses and stops/starts back to back while the producer
// interleaves and aborts transactions, and the books checked against the
// oracle. PAYSTREAM_CHAOS_DURATION and PAYSTREAM_CHAOS_WRITE_MODE change
// it; `make chaos` runs a long one.
func TestChaosShort(t *testing.T) {
	testtier.NeedsServers(t)
	duration, mode := 45*time.Second, config.WriteModeStorageWrite
	if d, err := time.ParseDuration(os.Getenv("PAYSTREAM_CHAOS_DURATION")); err == nil {
		duration = d
	}
	if m := os.Getenv("PAYSTREAM_CHAOS_WRITE_MODE"); m != "" {
		mode = m
	}
	var log strings.Builder
	res, err := run(context.Background(), Options{Seed: 10, Duration: duration, WriteMode: mode, Dir: t.TempDir(), CatchUp: 3 * time.Minute, Log: &log})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.Verdict.Write(&out)
	t.Logf("produced %d records (%d aborted), rounds %v, faults %v\n%s", res.Produced, res.Aborted, res.Rounds, res.Done, out.String())
	if res.Produced < 200 || res.Aborted == 0 {
		t.Errorf("produced %d records, %d of them aborted: too few to prove anything", res.Produced, res.Aborted)
	}
	if res.Done[FaultKill] == 0 {
		t.Errorf("no worker was killed: faults carried out %v", res.Done)
	}
	for _, f := range res.Findings {
		t.Errorf("finding: %s", f)
	}
	if !res.Verdict.OK() {
		t.Errorf("the books differ from the oracle; first batch: %s", res.Verdict.FirstBadBatch)
	}
}

// TestProducersAccountIsTheLog runs the chaos producer for a few seconds
// against an in-process broker and reads the log back as the pipeline
// does: every committed record at the offset the producer was told, no
// record of an aborted transaction, and books the oracle can judge under
// either lateness.
func TestProducersAccountIsTheLog(t *testing.T) {
	testtier.NeedsServers(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "chaos"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	p, err := newProducer(11, kc.ListenAddrs(), "chaos")
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	produced := p.Records()
	books, err := Oracle(produced, latenesses)
	if err != nil {
		t.Fatal(err)
	}
	intents := map[string]int{}
	for _, r := range produced {
		intents[r.Intent]++
	}
	t.Logf("%d records, %d aborted, rounds %v, intents %v", len(produced), books.Aborted, p.Rounds(), intents)
	if books.Aborted == 0 || len(produced) < 200 {
		t.Fatalf("%d records, %d aborted: the producer wrote too little to test", len(produced), books.Aborted)
	}
	// Whole, and in the steps batches of 1 and 25 records take: a range
	// that starts inside a transaction.
	for _, step := range []int64{0, 1, 25} {
		diffs, err := CompareLog(context.Background(), kafkalog.Plain(kc.ListenAddrs()), "chaos", produced, step)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range diffs {
			if i == 10 {
				t.Errorf("steps of %d: … %d more", step, len(diffs)-i)
				break
			}
			t.Errorf("steps of %d: %s", step, d)
		}
	}
}
