package simulation

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/kafkalog"
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

// TestRecordsAreWhatTheyClaim classifies every record with the Oracle —
// docs/design.md §4's rules, independent of the generator — and checks each kind
// and the manifest against that classification.
func TestRecordsAreWhatTheyClaim(t *testing.T) {
	opts := DefaultOptions()
	const n = 50000
	recs, m := generate(t, opts, n)

	oracle := NewOracle(opts.AllowedLateness)
	var tally Tally
	nextOffset := map[int]int64{}
	seqAt := map[[2]int64]int{} // partition, offset -> Seq
	wantOutcome := map[Kind]Outcome{KindValid: OutcomeLoaded, KindDuplicateRetry: OutcomeDuplicate, KindDuplicateReplay: OutcomeDuplicate, KindLate: OutcomeLate}
	for _, r := range recs {
		if string(r.Key) != r.TransactionID {
			t.Fatalf("record %d: key %q is not its transaction_id %q", r.Seq, r.Key, r.TransactionID)
		}
		if want := kafkalog.PartitionForKey(r.Key, 8); r.Partition != want {
			t.Fatalf("record %d: partition %d, key hashes to %d", r.Seq, r.Partition, want)
		}
		off := nextOffset[r.Partition]
		nextOffset[r.Partition]++
		seqAt[[2]int64{int64(r.Partition), off}] = r.Seq
		v := oracle.Observe(r.Partition, off, r.Key, r.Value, afterEveryEvent)
		tally.Add(v)
		want, ok := wantOutcome[r.Kind]
		if !ok {
			want = OutcomeRejected
		}
		if v.Outcome != want || (want == OutcomeRejected && string(v.Reason) != r.Kind.ExpectedReason()) {
			t.Fatalf("record %d claims %s, oracle says %s %s", r.Seq, r.Kind, v.Outcome, v.Reason)
		}
		if v.Outcome != OutcomeDuplicate {
			continue
		}
		origSeq := seqAt[[2]int64{int64(r.Partition), v.DuplicateOf}]
		if r.DuplicateOf != origSeq {
			t.Fatalf("record %d repeats record %d, claims DuplicateOf %d", r.Seq, origSeq, r.DuplicateOf)
		}
		if v.IdenticalBytes != (r.Kind == KindDuplicateRetry) {
			t.Fatalf("record %d (%s): identical bytes = %v", r.Seq, r.Kind, v.IdenticalBytes)
		}
		orig, _ := payment.Parse(recs[origSeq].Value)
		e := v.Event
		if orig.Amount != e.Amount || orig.Currency != e.Currency || orig.CustomerID != e.CustomerID ||
			orig.MerchantID != e.MerchantID || orig.CardID != e.CardID {
			t.Fatalf("duplicate %d changes the transaction of %d", r.Seq, origSeq)
		}
	}

	if problems := tally.Mismatches(m); len(problems) > 0 {
		t.Errorf("manifest disagrees with the oracle: %v", problems)
	}
	if m.Records != n || tally.IdenticalRetries != m.RecordsByKind[KindDuplicateRetry] {
		t.Errorf("manifest: %d records, %d retries; generated %d, oracle found %d identical", m.Records, m.RecordsByKind[KindDuplicateRetry], n, tally.IdenticalRetries)
	}
	for _, k := range Kinds {
		if m.RecordsByKind[k] == 0 {
			t.Errorf("no %s record in %d", k, n)
		}
	}
	if len(m.CountByCurrency) < 8 {
		t.Errorf("only %d currencies, want at least 8", len(m.CountByCurrency))
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
			t.Errorf("no %s pattern among %d valid events", pattern, tally.Loaded)
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

// afterEveryEvent is a Kafka timestamp later than any generated event, as
// a record's produce time is.
var afterEveryEvent = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
