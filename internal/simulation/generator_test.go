package simulation

import (
	"bytes"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/payment"
)

func generate(t *testing.T, opts Options, n int) ([]Record, Manifest) {
	t.Helper()
	g, err := NewGenerator(opts)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = g.Next()
	}
	return recs, g.Manifest()
}

func TestSameSeedSameBytes(t *testing.T) {
	a, ma := generate(t, DefaultOptions(), 20000)
	b, mb := generate(t, DefaultOptions(), 20000)
	for i := range a {
		if a[i].Partition != b[i].Partition || !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			t.Fatalf("record %d differs between two runs with seed %d", i, DefaultOptions().Seed)
		}
	}
	if ma.AmountByCurrency["USD"] != mb.AmountByCurrency["USD"] || ma.UniqueIDs != mb.UniqueIDs {
		t.Fatal("manifests differ between two runs with the same seed")
	}
	other := DefaultOptions()
	other.Seed = 2
	c, _ := generate(t, other, 10)
	if bytes.Equal(a[0].Value, c[0].Value) {
		t.Fatal("seeds 1 and 2 produced the same first record")
	}
}

// TestRecordsAreWhatTheyClaim classifies every record the way DESIGN §4
// defines it — parse, then per partition: duplicate of an earlier valid
// record, or behind the watermark — independently of the generator, and
// checks the manifest against that classification.
func TestRecordsAreWhatTheyClaim(t *testing.T) {
	opts := DefaultOptions()
	const n = 50000
	recs, m := generate(t, opts, n)

	type seen struct {
		seq int
		ev  payment.Event
	}
	firstValid := map[string]seen{}
	maxTime := make([]time.Time, opts.Partitions)
	gotKinds := map[Kind]int{}
	gotReasons := map[string]int{}
	minorByCurrency := map[string]*big.Rat{}
	valid := 0
	for _, r := range recs {
		if string(r.Key) != r.TransactionID {
			t.Fatalf("record %d: key %q is not its transaction_id %q", r.Seq, r.Key, r.TransactionID)
		}
		if want := (&Generator{partitons: []int{0, 1, 2, 3, 4, 5, 6, 7}}).partitionOf(r.Key); r.Partition != want {
			t.Fatalf("record %d: partition %d, key hashes to %d", r.Seq, r.Partition, want)
		}
		e, err := payment.Parse(r.Value)
		if err != nil {
			reason := string(payment.ReasonOf(err))
			if reason != r.Kind.ExpectedReason() {
				t.Fatalf("record %d (%s) rejected as %q, want %q: %v", r.Seq, r.Kind, reason, r.Kind.ExpectedReason(), err)
			}
			gotReasons[reason]++
			gotKinds[r.Kind]++
			continue
		}
		p := r.Partition
		if orig, dup := firstValid[e.TransactionID]; dup {
			if !r.Kind.IsDuplicate() || r.DuplicateOf != orig.seq {
				t.Fatalf("record %d (%s) repeats record %d, claims DuplicateOf %d", r.Seq, r.Kind, orig.seq, r.DuplicateOf)
			}
			if r.Kind == KindDuplicateRetry && !bytes.Equal(r.Value, recs[orig.seq].Value) {
				t.Fatalf("retry %d does not repeat the bytes of %d", r.Seq, orig.seq)
			}
			if orig.ev.Amount != e.Amount || orig.ev.Currency != e.Currency || orig.ev.CustomerID != e.CustomerID ||
				orig.ev.MerchantID != e.MerchantID || orig.ev.CardID != e.CardID {
				t.Fatalf("duplicate %d changes the transaction of %d", r.Seq, orig.seq)
			}
			if maxTime[p].Sub(orig.ev.EventTime) > opts.AllowedLateness {
				t.Fatalf("duplicate %d arrives after its original left the dedup window", r.Seq)
			}
			if e.EventTime.After(maxTime[p]) {
				maxTime[p] = e.EventTime
			}
			gotKinds[r.Kind]++
			continue
		}
		if !maxTime[p].IsZero() && e.EventTime.Before(maxTime[p].Add(-opts.AllowedLateness)) {
			if r.Kind != KindLate {
				t.Fatalf("record %d (%s) is behind the watermark of partition %d", r.Seq, r.Kind, p)
			}
			gotReasons["late"]++
			gotKinds[KindLate]++
			continue
		}
		if r.Kind != KindValid {
			t.Fatalf("record %d claims %s but is a valid on-time event", r.Seq, r.Kind)
		}
		firstValid[e.TransactionID] = seen{r.Seq, e}
		if e.EventTime.After(maxTime[p]) {
			maxTime[p] = e.EventTime
		}
		valid++
		if minorByCurrency[e.Currency] == nil {
			minorByCurrency[e.Currency] = new(big.Rat)
		}
		minorByCurrency[e.Currency].Add(minorByCurrency[e.Currency], e.Amount.Rat())
		gotKinds[KindValid]++
	}

	if m.Records != n || m.UniqueIDs != valid {
		t.Errorf("manifest: %d records, %d unique IDs; classified %d records, %d valid", m.Records, m.UniqueIDs, n, valid)
	}
	for _, k := range Kinds {
		if m.RecordsByKind[k] != gotKinds[k] {
			t.Errorf("manifest says %d %s, classification found %d", m.RecordsByKind[k], k, gotKinds[k])
		}
		if gotKinds[k] == 0 {
			t.Errorf("no %s record in %d", k, n)
		}
	}
	for reason, c := range gotReasons {
		if m.ErrorsByReason[reason] != c {
			t.Errorf("manifest expects %d errors %q, classification found %d", m.ErrorsByReason[reason], reason, c)
		}
	}
	if len(m.CountByCurrency) < 8 {
		t.Errorf("only %d currencies, want at least 8", len(m.CountByCurrency))
	}
	for cur, sum := range minorByCurrency {
		scale, _ := payment.MinorUnits(cur)
		if want := sum.FloatString(scale); m.AmountByCurrency[cur] != want {
			t.Errorf("%s: manifest amount %s, parsed events sum to %s", cur, m.AmountByCurrency[cur], want)
		}
	}
	checkRatio := func(name string, got int, want float64) {
		if r := float64(got) / n; math.Abs(r-want) > want*0.25+0.001 {
			t.Errorf("%s ratio %.4f, asked for %.4f", name, r, want)
		}
	}
	checkRatio("duplicate", m.Duplicates, opts.DuplicateRatio)
	checkRatio("malformed", n-m.Duplicates-m.UniqueIDs-m.RecordsByKind[KindLate], opts.MalformedRatio)
	checkRatio("late", m.RecordsByKind[KindLate], opts.LateRatio)
	for _, pattern := range []string{"country_mismatch", "large_round_amount", "high_risk_mcc", "card_velocity"} {
		if m.Suspicious[pattern] == 0 {
			t.Errorf("no %s pattern among %d valid events", pattern, valid)
		}
	}
}

func TestDuplicatesCrossBatchBoundaries(t *testing.T) {
	recs, _ := generate(t, DefaultOptions(), 20000)
	far := 0
	for _, r := range recs {
		if r.Kind.IsDuplicate() && r.Seq-r.DuplicateOf > 1000 {
			far++
		}
	}
	if far == 0 {
		t.Fatal("no duplicate arrives more than 1000 records after its original; batch boundaries would never be crossed")
	}
}

func TestOptionsAreValidated(t *testing.T) {
	for _, mutate := range []func(*Options){
		func(o *Options) { o.Partitions = 0 },
		func(o *Options) { o.DuplicateRatio = -0.1 },
		func(o *Options) { o.DuplicateRatio, o.MalformedRatio = 0.3, 0.3 },
		func(o *Options) { o.EventRate = 0 },
	} {
		o := DefaultOptions()
		mutate(&o)
		if _, err := NewGenerator(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}
