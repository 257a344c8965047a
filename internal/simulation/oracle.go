package simulation

import (
	"context"
	"fmt"
	"time"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
)

// Outcome is where a record of the log must end up.
type Outcome string

const (
	OutcomeLoaded    Outcome = "loaded"    // a row in transactions
	OutcomeDuplicate Outcome = "duplicate" // a row in dedup_audit
	OutcomeLate      Outcome = "late"      // ingest_errors, reason late
	OutcomeRejected  Outcome = "rejected"  // ingest_errors, reason from the parser
)

// Verdict is the oracle's answer for one record.
type Verdict struct {
	Outcome        Outcome
	Reason         payment.Reason // for OutcomeRejected
	TransactionID  string
	DuplicateOf    int64 // offset of the original, for OutcomeDuplicate
	IdenticalBytes bool  // a duplicate repeating its original byte for byte
	Event          payment.Event
}

// Oracle classifies a partition's records by the rules of docs/design.md §4, in
// the plainest way: it remembers every valid record forever. It is the
// reference the pipeline's bounded dedup index is tested against, and the
// read-back check of the simulator's manifest. Feed it each partition's
// records in offset order.
type Oracle struct {
	lateness time.Duration
	parts    map[int]*oraclePartition
}

type oraclePartition struct {
	newest time.Time // the furthest payment.WatermarkTime of its valid records
	ids    map[string]*oracleID
}

// oracleID is what the oracle knows of one transaction_id, forever.
type oracleID struct {
	loadedAt int64     // offset of the loaded record
	newest   time.Time // newest event_time of its valid, not-late records
	raw      string
	amount   payment.Amount
	currency string
}

// NewOracle returns an oracle for the given allowed lateness.
func NewOracle(lateness time.Duration) *Oracle {
	return &Oracle{lateness: lateness, parts: map[int]*oraclePartition{}}
}

// Observe classifies the record at partition/offset, with Kafka
// timestamp timestamp.
func (o *Oracle) Observe(partition int, offset int64, key, value []byte, timestamp time.Time) Verdict {
	e, err := payment.ParseRecord(key, value, timestamp, o.lateness)
	if err != nil {
		return Verdict{Outcome: OutcomeRejected, Reason: payment.ReasonOf(err)}
	}
	return o.decide(partition, offset, value, e, payment.WatermarkTime(&e, timestamp))
}

// ObserveEventTime classifies the record by the dedup rule alone: every
// valid record moves the watermark to its event_time, whatever its Kafka
// timestamp, as dedup.Window does when it is told so. For the window's
// own tests.
func (o *Oracle) ObserveEventTime(partition int, offset int64, key, value []byte) Verdict {
	e, err := payment.Parse(value)
	if err == nil && string(key) != e.TransactionID {
		err = &payment.Error{Reason: payment.ReasonKeyMismatch}
	}
	if err != nil {
		return Verdict{Outcome: OutcomeRejected, Reason: payment.ReasonOf(err)}
	}
	return o.decide(partition, offset, value, e, e.EventTime)
}

// decide applies the dedup rule to a valid event that moves its
// partition's newest event time up to moves.
func (o *Oracle) decide(partition int, offset int64, value []byte, e payment.Event, moves time.Time) Verdict {
	p := o.parts[partition]
	if p == nil {
		p = &oraclePartition{ids: map[string]*oracleID{}}
		o.parts[partition] = p
	}
	v := Verdict{TransactionID: e.TransactionID, Event: e}
	id := p.ids[e.TransactionID]
	watermark := p.newest.Add(-o.lateness)
	switch {
	case id != nil && !id.newest.Before(watermark):
		// A valid record of the same ID inside the window came earlier.
		v.Outcome, v.DuplicateOf, v.IdenticalBytes = OutcomeDuplicate, id.loadedAt, id.raw == string(value)
		if id.amount != e.Amount || id.currency != e.Currency {
			v.Outcome, v.Reason = OutcomeRejected, payment.ReasonConflict
		}
		if e.EventTime.After(id.newest) {
			id.newest = e.EventTime
		}
	case !p.newest.IsZero() && e.EventTime.Before(watermark):
		v.Outcome = OutcomeLate
	default:
		v.Outcome = OutcomeLoaded
		p.ids[e.TransactionID] = &oracleID{loadedAt: offset, newest: e.EventTime, raw: string(value), amount: e.Amount, currency: e.Currency}
	}
	if moves.After(p.newest) {
		p.newest = moves
	}
	return v
}

// Tally counts verdicts the way the manifest counts kinds.
type Tally struct {
	Loaded           int
	Duplicates       int
	IdenticalRetries int
	Late             int
	ByReason         map[payment.Reason]int
	AmountByCurrency map[string]*payment.Sum
}

// Add counts v.
func (t *Tally) Add(v Verdict) {
	if t.ByReason == nil {
		t.ByReason = map[payment.Reason]int{}
		t.AmountByCurrency = map[string]*payment.Sum{}
	}
	switch v.Outcome {
	case OutcomeLoaded:
		t.Loaded++
		if t.AmountByCurrency[v.Event.Currency] == nil {
			t.AmountByCurrency[v.Event.Currency] = &payment.Sum{}
		}
		t.AmountByCurrency[v.Event.Currency].Add(v.Event.Amount)
	case OutcomeDuplicate:
		t.Duplicates++
		if v.IdenticalBytes {
			t.IdenticalRetries++
		}
	case OutcomeLate:
		t.Late++
	case OutcomeRejected:
		t.ByReason[v.Reason]++
	}
}

// Mismatches lists every figure where the tally and the manifest differ;
// empty means they agree.
func (t Tally) Mismatches(m Manifest) []string {
	var out []string
	check := func(what string, got, want any) {
		if got != want {
			out = append(out, fmt.Sprintf("%s: read back %v, manifest %v", what, got, want))
		}
	}
	check("loaded (unique valid on-time IDs)", t.Loaded, m.UniqueIDs)
	check("duplicates", t.Duplicates, m.Duplicates)
	check("late", t.Late, m.RecordsByKind[KindLate])
	for _, reason := range []payment.Reason{payment.ReasonMalformedJSON, payment.ReasonMissingField, payment.ReasonInvalidField} {
		check("rejected "+string(reason), t.ByReason[reason], m.ErrorsByReason[string(reason)])
	}
	for cur, want := range m.AmountByCurrency {
		got := "0"
		if s := t.AmountByCurrency[cur]; s != nil {
			got = s.String()
		}
		check("amount "+cur, got, want)
	}
	return out
}

// ReadBack reads the records a Produce run wrote — each partition's
// [StartOffsets, EndOffsets) of the manifest — classifies them with a fresh
// Oracle and returns the tally. It is the consumer's view of the run, to
// compare with the manifest.
func ReadBack(ctx context.Context, kc kafkalog.Cluster, m Manifest, lateness time.Duration) (Tally, error) {
	t := Tally{ByReason: map[payment.Reason]int{}, AmountByCurrency: map[string]*payment.Sum{}}
	oracle := NewOracle(lateness)
	if len(m.StartOffsets) != m.Partitions || len(m.EndOffsets) != m.Partitions {
		return t, fmt.Errorf("manifest has no offsets for its %d partitions", m.Partitions)
	}
	for p := range m.Partitions {
		err := kafkalog.ReadRange(ctx, kc, m.Topic, p, m.StartOffsets[p], m.EndOffsets[p], func(r kafkalog.Record) error {
			t.Add(oracle.Observe(p, r.Offset, r.Key, r.Value, r.Time))
			return nil
		})
		if err != nil {
			return t, err
		}
	}
	return t, nil
}
