package dedup

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

const lateness = 10 * time.Minute

type rec struct {
	offset int64
	value  []byte
}

// observe feeds one record the way the Dedup activity does.
func observe(t *testing.T, w *Window, r rec) Verdict {
	t.Helper()
	e, err := payment.Parse(r.value)
	var v Verdict
	if err != nil {
		v, err = w.ObserveInvalid(r.offset)
	} else {
		v, err = w.Observe(r.offset, &e, r.value, e.EventTime)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rebuild makes a cold Window for a batch starting at end, replaying the
// log from the warm Window's bounds, as a worker without the cache does.
func rebuild(t *testing.T, log []rec, start int64, newest time.Time, end int64) *Window {
	t.Helper()
	w := New(lateness, start, newest)
	for _, r := range log[start:end] {
		observe(t, w, r)
	}
	w.AdvanceTo(end)
	return w
}

func simulatedLog(t *testing.T, n int, seed uint64) []rec {
	t.Helper()
	opts := simulation.DefaultOptions()
	opts.Partitions = 1
	opts.Seed = seed
	opts.EventRate = 50 // slow event time: the window spans ~30,000 records
	opts.DuplicateRatio, opts.LateRatio = 0.08, 0.02
	g, err := simulation.NewGenerator(opts)
	if err != nil {
		t.Fatal(err)
	}
	log := make([]rec, n)
	for i := range log {
		log[i] = rec{int64(i), g.Next().Value}
	}
	return log
}

// TestWarmColdAndOracleAgree runs the same log through a Window kept warm
// across batches and through a Window rebuilt from Bounds at every batch
// boundary (a worker that lost its cache, or a continue-as-new that carried
// only the bounds), and checks both against the oracle record by record.
func TestWarmColdAndOracleAgree(t *testing.T) {
	log := simulatedLog(t, 30000, 3)
	oracle := simulation.NewOracle(lateness)
	warm := New(lateness, 0, time.Time{})
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[Decision]int{}
	for start := int64(0); start < int64(len(log)); {
		end := min(start+1+rng.Int64N(4000), int64(len(log)))
		wsStart, wsNewest := warm.Bounds()
		cold := rebuild(t, log, wsStart, wsNewest, start)
		if cold.Next() != start || !cold.Newest().Equal(warm.Newest()) {
			t.Fatalf("batch [%d,%d): rebuilt window at %d newest %v, warm at %d newest %v", start, end, cold.Next(), cold.Newest(), warm.Next(), warm.Newest())
		}
		for _, r := range log[start:end] {
			vw, vc := observe(t, warm, r), observe(t, cold, r)
			if vw != vc {
				t.Fatalf("offset %d: warm says %v of %d, cold (rebuilt from %d) says %v of %d", r.offset, vw.Decision, vw.DuplicateOf, wsStart, vc.Decision, vc.DuplicateOf)
			}
			vo := oracle.ObserveEventTime(0, r.offset, []byte(mustID(r.value)), r.value)
			want := map[simulation.Outcome]Decision{simulation.OutcomeLoaded: Loaded, simulation.OutcomeDuplicate: Duplicate, simulation.OutcomeLate: Late}[vo.Outcome]
			if vo.Reason == payment.ReasonConflict {
				want = Conflict
			} else if vo.Outcome == simulation.OutcomeRejected {
				want = Invalid
			}
			if vw.Decision != want || (want == Duplicate && (vw.DuplicateOf != vo.DuplicateOf || vw.Identical != vo.IdenticalBytes)) {
				t.Fatalf("offset %d: window says %v of %d, oracle %v of %d", r.offset, vw.Decision, vw.DuplicateOf, vo.Outcome, vo.DuplicateOf)
			}
			counts[vw.Decision]++
		}
		warm.AdvanceTo(end)
		start = end
	}
	for _, d := range []Decision{Loaded, Duplicate, Late, Invalid} {
		if counts[d] == 0 {
			t.Errorf("no %v record in the log: the test proves nothing about it", d)
		}
	}
}

// event builds a valid record for the crafted cases.
func event(id string, at time.Time, amount string) []byte {
	return []byte(fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"amount":%q,"currency":"EUR","customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`,
		id, at.Format(time.RFC3339Nano), amount))
}

// TestStraddlingReplayIsRebuiltExactly covers a replay whose later
// event_time keeps an ID inside the window after its original fell out:
// the case where remembering only loaded records would rebuild wrongly.
func TestStraddlingReplayIsRebuiltExactly(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	log := []rec{
		{0, event("A", t0, "1.00")},
		{1, event("A", t0.Add(9*time.Minute), "1.00")}, // replay, 9 min later in event time
		{2, event("B", t0.Add(15*time.Minute), "2.00")},
		// watermark now t0+5m: A's original (t0) is out, its replay (t0+9m) in
		{3, event("A", t0.Add(15*time.Minute), "1.00")},
		{4, event("C", t0.Add(16*time.Minute), "3.00")},
		{5, event("A", t0.Add(16*time.Minute), "9.99")},
		{6, event("D", t0.Add(2*time.Minute), "4.00")},
		{7, []byte(`{"transaction_id":"E"`)},
	}
	want := []Verdict{
		{Loaded, 0, false}, {Duplicate, 0, false}, {Loaded, 0, false}, {Duplicate, 0, false}, {Loaded, 0, false}, {Conflict, 0, false}, {Late, 0, false}, {Invalid, 0, false},
	}
	for split := int64(0); split <= int64(len(log)); split++ {
		warm := New(lateness, 0, time.Time{})
		var got []Verdict
		for _, r := range log[:split] {
			got = append(got, observe(t, warm, r))
		}
		s, newest := warm.Bounds()
		cold := rebuild(t, log, s, newest, split)
		for _, r := range log[split:] {
			got = append(got, observe(t, cold, r))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("split at %d: offset %d is %v of %d, want %v of %d", split, i, got[i].Decision, got[i].DuplicateOf, want[i].Decision, want[i].DuplicateOf)
			}
		}
	}
}

// TestMemoryIsBoundedByTheWindow streams a day of event time through a
// Window: the IDs it holds stay near what ten minutes of events hold.
func TestMemoryIsBoundedByTheWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := New(lateness, 0, time.Time{})
	const perSecond = 5
	peak := 0
	for i := range 24 * 3600 * perSecond {
		e := payment.Event{TransactionID: fmt.Sprintf("tx-%d", i), EventTime: t0.Add(time.Duration(i) * time.Second / perSecond), Currency: "EUR", Amount: payment.Amount{Minor: 1, Scale: 2}}
		if _, err := w.Observe(int64(i), &e, nil, e.EventTime); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, w.Len())
	}
	inWindow := int(lateness.Seconds()) * perSecond
	if peak > 3*inWindow {
		t.Errorf("window held up to %d IDs; ten minutes hold %d", peak, inWindow)
	}
	if s, _ := w.Bounds(); s < int64(24*3600*perSecond-2*inWindow) {
		t.Errorf("replay would start at offset %d, more than the window behind", s)
	}
}

func TestOutOfOrderOffsetsAreRefused(t *testing.T) {
	w := New(lateness, 10, time.Time{})
	if _, err := w.ObserveInvalid(9); err == nil {
		t.Fatal("offset 9 accepted by a window at 10")
	}
	if _, err := w.ObserveInvalid(10); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ObserveInvalid(10); err == nil {
		t.Fatal("offset 10 accepted twice")
	}
}

// mustID is the transaction_id the simulator used as the record's key
// (the records here carry no key of their own).
func mustID(value []byte) string {
	e, err := payment.Parse(value)
	if err != nil {
		return "key"
	}
	return e.TransactionID
}

// TestEventTimesCenturiesApart feeds event times that leap between years
// 1 and 9999, so the Window must move the base its held times are counted
// from, with lateness up to the largest allowed. Every verdict must match
// the oracle's, and a Window rebuilt from Bounds or read from a snapshot
// midway must decide the rest as the warm one does.
func TestEventTimesCenturiesApart(t *testing.T) {
	years := []int{1, 2, 60, 150, 1969, 2026, 2126, 2200, 5000, 9998}
	for _, late := range []time.Duration{10 * time.Minute, 80 * 365 * 24 * time.Hour, MaxLateness} {
		rng := rand.New(rand.NewPCG(uint64(late), 9))
		log := make([]rec, 4000)
		year := years[0]
		for i := range log {
			if rng.IntN(200) == 0 {
				year = years[rng.IntN(len(years))]
			}
			at := time.Date(year+rng.IntN(2), time.Month(1+rng.IntN(12)), 1, 0, rng.IntN(60), 0, rng.IntN(1e9), time.UTC)
			log[i] = rec{int64(i), event(fmt.Sprintf("tx-%d", rng.IntN(60)), at, []string{"1.00", "2.00"}[rng.IntN(40)/39])}
		}
		oracle := simulation.NewOracle(late)
		warm := New(late, 0, time.Time{})
		counts := map[Decision]int{}
		// Windows made midway, which must decide on as warm does.
		followers := map[string]*Window{}
		for i, r := range log {
			if i%500 == 250 {
				s, newest := warm.Bounds()
				cold := New(late, s, newest)
				for _, r := range log[s:i] {
					observe(t, cold, r)
				}
				var buf bytes.Buffer
				if err := warm.WriteSnapshot(&buf, 0, SnapshotAuth{}); err != nil {
					t.Fatal(err)
				}
				loaded, _, err := ReadSnapshot(bytes.NewReader(buf.Bytes()), SnapshotAuth{}, 0)
				if err != nil {
					t.Fatalf("lateness %v, snapshot at %d: %v", late, i, err)
				}
				followers = map[string]*Window{fmt.Sprintf("rebuilt from %d", s): cold, fmt.Sprintf("snapshot at %d", i): loaded}
			}
			id := mustID(r.value)
			vo := oracle.ObserveEventTime(0, r.offset, []byte(id), r.value)
			vw := observe(t, warm, r)
			for name, f := range followers {
				if vf := observe(t, f, r); vf != vw {
					t.Fatalf("lateness %v, offset %d: warm says %+v, the window %s %+v", late, r.offset, vw, name, vf)
				}
			}
			want := map[simulation.Outcome]Decision{simulation.OutcomeLoaded: Loaded, simulation.OutcomeDuplicate: Duplicate, simulation.OutcomeLate: Late}[vo.Outcome]
			if vo.Reason == payment.ReasonConflict {
				want = Conflict
			}
			if vw.Decision != want || (want == Duplicate && vw.DuplicateOf != vo.DuplicateOf) {
				t.Fatalf("lateness %v, offset %d (%s): window says %v of %d, oracle %v of %d", late, r.offset, id, vw.Decision, vw.DuplicateOf, vo.Outcome, vo.DuplicateOf)
			}
			counts[vw.Decision]++
		}
		for _, d := range []Decision{Loaded, Duplicate, Late, Conflict} {
			if counts[d] == 0 {
				t.Errorf("lateness %v: no %v record: the test proves nothing about it (%v)", late, d, counts)
			}
		}
	}
}
