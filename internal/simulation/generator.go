// Package simulation generates a realistic, reproducible stream of payment
// records for the payments topic — valid events with suspicious patterns
// mixed in, producer-retry and client-replay duplicates, malformed and late
// records — and keeps the manifest of what it generated: the answer a
// reconciliation must arrive at.
package simulation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
)

// Kind is what a generated record is, and so where the pipeline must put it.
type Kind string

const (
	KindValid           Kind = "valid"            // unique, on time: one row in transactions
	KindDuplicateRetry  Kind = "duplicate_retry"  // identical bytes again, as a producer retry sends them
	KindDuplicateReplay Kind = "duplicate_replay" // same transaction re-serialized by a client, seconds later
	KindLate            Kind = "late"             // event_time behind the partition's watermark
	KindBadJSON         Kind = "malformed_bad_json"
	KindMissingField    Kind = "malformed_missing_field"
	KindWrongType       Kind = "malformed_wrong_type"
	KindNegativeAmount  Kind = "malformed_negative_amount"
	KindUnknownCurrency Kind = "malformed_unknown_currency"
	KindInvalidUTF8     Kind = "malformed_invalid_utf8"
)

// Kinds lists every kind, valid first.
var Kinds = []Kind{
	KindValid, KindDuplicateRetry, KindDuplicateReplay, KindLate, KindBadJSON, KindMissingField,
	KindWrongType, KindNegativeAmount, KindUnknownCurrency, KindInvalidUTF8,
}

var malformedKinds = []Kind{KindBadJSON, KindMissingField, KindWrongType, KindNegativeAmount, KindUnknownCurrency, KindInvalidUTF8}

// ExpectedReason is the ingest_errors reason code a record of this kind
// must be filed under, or "" when it is loaded or deduplicated.
func (k Kind) ExpectedReason() string {
	switch k {
	case KindBadJSON, KindInvalidUTF8:
		return string(payment.ReasonMalformedJSON)
	case KindMissingField:
		return string(payment.ReasonMissingField)
	case KindWrongType, KindNegativeAmount, KindUnknownCurrency:
		return string(payment.ReasonInvalidField)
	case KindLate:
		return string(payment.ReasonLate)
	}
	return ""
}

// IsDuplicate reports whether the pipeline must drop the record as a
// duplicate of an earlier one.
func (k Kind) IsDuplicate() bool { return k == KindDuplicateRetry || k == KindDuplicateReplay }

// Record is one generated Kafka record.
type Record struct {
	Seq           int // position in the generated stream, from 0
	Partition     int
	Key           []byte
	Value         []byte
	Kind          Kind
	TransactionID string // the ID the record carries or was meant to carry
	// DuplicateOf is the Seq of the record a duplicate repeats, -1 otherwise.
	DuplicateOf int
}

// Options shape the stream. Same options, same records, byte for byte.
type Options struct {
	Seed       uint64
	Partitions int
	// StartTime is the event_time of the first record; event time then
	// advances at EventRate events per second.
	StartTime       time.Time
	EventRate       float64
	DuplicateRatio  float64
	MalformedRatio  float64
	LateRatio       float64
	AllowedLateness time.Duration // the pipeline's; late records are made older than it
	Customers       int
	Merchants       int
}

// DefaultOptions are the simulator's defaults.
func DefaultOptions() Options {
	return Options{
		Seed:            1,
		Partitions:      8,
		StartTime:       time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		EventRate:       2000,
		DuplicateRatio:  0.03,
		MalformedRatio:  0.01,
		LateRatio:       0.005,
		AllowedLateness: 10 * time.Minute,
		Customers:       5000,
		Merchants:       500,
	}
}

// Validate checks the options a user sets; the partition count comes
// from the topic later.
func (o Options) Validate() error {
	switch {
	case o.EventRate <= 0:
		return fmt.Errorf("event rate must be positive, got %v", o.EventRate)
	case o.DuplicateRatio < 0 || o.MalformedRatio < 0 || o.LateRatio < 0:
		return errors.New("ratios must not be negative")
	case o.DuplicateRatio+o.MalformedRatio+o.LateRatio >= 0.5:
		return fmt.Errorf("duplicate, malformed and late ratios add up to %.3f; keep them under 0.5 so most events are valid",
			o.DuplicateRatio+o.MalformedRatio+o.LateRatio)
	case o.AllowedLateness <= 0:
		return errors.New("allowed lateness must be positive")
	case o.Customers < 1 || o.Merchants < 1:
		return errors.New("need at least one customer and one merchant")
	}
	return nil
}

func (o Options) validate() error {
	if o.Partitions < 1 {
		return fmt.Errorf("partitions must be at least 1, got %d", o.Partitions)
	}
	return o.Validate()
}

// recent is a valid on-time record that later duplicates may repeat.
type recent struct {
	seq   int
	part  int
	event payment.Event
	value []byte
}

// replayWindow is how far back in event time a client replay reaches:
// "seconds later", well inside any sane allowed lateness.
const replayWindow = 30 * time.Second

// Generator produces the records one by one. It is not safe for concurrent
// use.
type Generator struct {
	opts     Options
	rng      *rand.Rand
	world    *world
	idTag    string
	seq      int
	nextID   int
	recent   []recent // valid on-time records of the last replayWindow, oldest first
	partMax  []time.Time
	burst    burst
	manifest Manifest
}

// burst is a card making many payments within a minute (a velocity
// pattern fraud rules must catch).
type burst struct {
	customer, card int
	left           int
}

// NewGenerator returns a generator for opts.
func NewGenerator(opts Options) (*Generator, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	h := fnv.New32a()
	fmt.Fprint(h, opts.Seed)
	g := &Generator{
		opts:     opts,
		rng:      rng,
		world:    newWorld(rng, opts.Customers, opts.Merchants),
		idTag:    fmt.Sprintf("%08x", h.Sum32()),
		partMax:  make([]time.Time, opts.Partitions),
		manifest: newManifest(opts),
	}
	return g, nil
}

// Manifest returns what has been generated so far.
func (g *Generator) Manifest() Manifest { return g.manifest.clone() }

// Next generates the next record.
func (g *Generator) Next() Record {
	now := g.opts.StartTime.Add(time.Duration(float64(g.seq) / g.opts.EventRate * float64(time.Second)))
	o := g.opts
	r := g.rng.Float64()
	var rec Record
	switch {
	case r < o.DuplicateRatio && len(g.recent) > 0:
		rec = g.duplicate(now)
	case r < o.DuplicateRatio+o.MalformedRatio:
		rec = g.malformed(now)
	case r < o.DuplicateRatio+o.MalformedRatio+o.LateRatio:
		rec = g.maybeLate(now)
	default:
		rec = g.valid(now)
	}
	rec.Seq = g.seq
	g.seq++
	g.manifest.add(rec)
	return rec
}

func (g *Generator) partitionOf(key []byte) int {
	return kafkalog.PartitionForKey(key, g.opts.Partitions)
}

func (g *Generator) newTransactionID() string {
	g.nextID++
	return fmt.Sprintf("tx_%s_%09d", g.idTag, g.nextID)
}

// valid emits a new unique on-time event.
func (g *Generator) valid(now time.Time) Record {
	e := g.newEvent(now)
	return g.validFrom(e, g.partitionOf([]byte(e.TransactionID)))
}

// maybeLate emits an event older than its partition's watermark. While the
// partition has no watermark yet (nothing on time seen), it emits a valid
// event instead: a record can only be late relative to something.
func (g *Generator) maybeLate(now time.Time) Record {
	e := g.newEvent(now)
	key := []byte(e.TransactionID)
	p := g.partitionOf(key)
	if g.partMax[p].IsZero() {
		return g.validFrom(e, p)
	}
	// At least a minute past the allowed lateness, up to six hours.
	behind := g.opts.AllowedLateness + time.Minute + time.Duration(g.rng.Int64N(int64(6*time.Hour)))
	e.EventTime = g.partMax[p].Add(-behind).Truncate(time.Millisecond)
	return Record{Kind: KindLate, TransactionID: e.TransactionID, Key: key, Value: payment.Encode(e), Partition: p, DuplicateOf: -1}
}

// validFrom emits e as a valid record of partition p and remembers it for
// later duplicates.
func (g *Generator) validFrom(e payment.Event, p int) Record {
	value := payment.Encode(e)
	if e.EventTime.After(g.partMax[p]) {
		g.partMax[p] = e.EventTime
	}
	g.recent = append(g.recent, recent{seq: g.seq, part: p, event: e, value: value})
	drop := 0
	for drop < len(g.recent) && e.EventTime.Sub(g.recent[drop].event.EventTime) > replayWindow {
		drop++
	}
	g.recent = g.recent[drop:] // append reallocates as needed, copying only what is kept
	g.manifest.addValid(e)
	return Record{Kind: KindValid, TransactionID: e.TransactionID, Key: []byte(e.TransactionID), Value: value, Partition: p, DuplicateOf: -1}
}

// duplicate repeats a recent valid event: half the time as a producer retry
// (identical bytes, one of the last few records), otherwise as a client
// replay from up to replayWindow ago, re-serialized with its fields in
// another order, the amount possibly as a JSON number and the event_time
// possibly a few seconds later.
func (g *Generator) duplicate(now time.Time) Record {
	if g.rng.IntN(2) == 0 {
		orig := g.recent[len(g.recent)-1-g.rng.IntN(min(3, len(g.recent)))]
		return Record{Kind: KindDuplicateRetry, TransactionID: orig.event.TransactionID, Key: []byte(orig.event.TransactionID),
			Value: orig.value, Partition: orig.part, DuplicateOf: orig.seq}
	}
	orig := g.recent[g.rng.IntN(len(g.recent))]
	e := orig.event
	if g.rng.IntN(2) == 0 {
		e.EventTime = e.EventTime.Add(time.Duration(1+g.rng.IntN(5000)) * time.Millisecond)
		if e.EventTime.After(g.partMax[orig.part]) {
			g.partMax[orig.part] = e.EventTime
		}
	}
	return Record{Kind: KindDuplicateReplay, TransactionID: e.TransactionID, Key: []byte(e.TransactionID),
		Value: g.reserialize(e), Partition: orig.part, DuplicateOf: orig.seq}
}

// reserialize writes e's fields in a shuffled order, with the amount as a
// JSON number half the time: the same transaction, other bytes.
func (g *Generator) reserialize(e payment.Event) []byte {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payment.Encode(e), &fields); err != nil {
		panic(err) // Encode always writes an object
	}
	if g.rng.IntN(2) == 0 {
		fields["amount"] = json.RawMessage(e.Amount.String())
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names) // map order is random; sort, then shuffle with our rng
	g.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	return encodeObject(names, fields)
}

// malformed emits a record the parser must reject, one class at a time.
func (g *Generator) malformed(now time.Time) Record {
	e := g.newEvent(now)
	kind := malformedKinds[g.rng.IntN(len(malformedKinds))]
	good := payment.Encode(e)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(good, &fields); err != nil {
		panic(err)
	}
	var value []byte
	switch kind {
	case KindBadJSON:
		// Any strict prefix of an object lacks its closing brace.
		value = good[:1+g.rng.IntN(len(good)-2)]
	case KindMissingField:
		required := []string{"transaction_id", "event_time", "amount", "currency", "customer_id", "merchant_id", "card_id", "payment_method", "status"}
		delete(fields, required[g.rng.IntN(len(required))])
		value = encodeObject(sortedNames(fields), fields)
	case KindWrongType:
		wrong := []struct{ field, value string }{
			{"amount", "true"}, {"event_time", strconv.FormatInt(e.EventTime.Unix(), 10)},
			{"status", "3"}, {"customer_id", "{}"}, {"currency", "[]"},
		}[g.rng.IntN(5)]
		fields[wrong.field] = json.RawMessage(wrong.value)
		value = encodeObject(sortedNames(fields), fields)
	case KindNegativeAmount:
		fields["amount"] = jsonString("-" + e.Amount.String())
		value = encodeObject(sortedNames(fields), fields)
	case KindUnknownCurrency:
		fields["currency"] = jsonString([]string{"ZZZ", "EURO", "US$", "ABC"}[g.rng.IntN(4)])
		value = encodeObject(sortedNames(fields), fields)
	case KindInvalidUTF8:
		// Break the merchant_id string with bytes that are not UTF-8.
		value = bytes.Replace(good, []byte(`"merchant_id":"`), []byte("\"merchant_id\":\"\xff\xfe"), 1)
	}
	rec := Record{Kind: kind, TransactionID: e.TransactionID, Key: []byte(e.TransactionID), Value: value, DuplicateOf: -1}
	rec.Partition = g.partitionOf(rec.Key)
	return rec
}

// newEvent draws a fresh transaction from the world at event time now,
// with the suspicious patterns mixed in at small rates.
func (g *Generator) newEvent(now time.Time) payment.Event {
	rng, w := g.rng, g.world
	ci, cardIdx := rng.IntN(len(w.customers)), -1
	if g.burst.left > 0 && rng.IntN(3) == 0 {
		ci, cardIdx = g.burst.customer, g.burst.card
		g.burst.left--
	} else if g.burst.left == 0 && rng.IntN(400) == 0 {
		g.burst = burst{customer: ci, card: rng.IntN(len(w.customers[ci].cards)), left: 5 + rng.IntN(5)}
	}
	c := w.customers[ci]
	if cardIdx < 0 {
		cardIdx = rng.IntN(len(c.cards))
	}
	cd := c.cards[cardIdx]
	dev := c.devices[rng.IntN(len(c.devices))]
	m := w.merchants[rng.IntN(len(w.merchants))]
	mc := countries[m.country]
	scale, _ := payment.MinorUnits(mc.currency)

	ip, where := dev.ip, c.home
	if rng.IntN(100) == 0 { // paying from abroad, or from a stolen card's new home
		where = rng.IntN(len(countries))
		ip = ipIn(rng, where)
	}
	minor := typicalAmount(rng, mc.typical, scale)
	if rng.IntN(200) == 0 { // large round amount
		minor = int64([]float64{100, 200, 500, 1000}[rng.IntN(4)]*mc.typical) * pow10(scale)
		minor = roundToOneDigit(minor)
	}
	e := payment.Event{
		TransactionID:    g.newTransactionID(),
		EventTime:        now.Add(-time.Duration(rng.IntN(1500)) * time.Millisecond).Truncate(time.Millisecond).UTC(),
		Amount:           payment.Amount{Minor: minor, Scale: scale},
		Currency:         mc.currency,
		CustomerID:       c.id,
		MerchantID:       m.id,
		MerchantCategory: m.mcc,
		CardID:           cd.id,
		CardLast4:        cd.last4,
		CardCountry:      cd.country,
		PaymentMethod:    []string{"card", "card", "card", "card", "card", "card", "wallet", "wallet", "bank_transfer"}[rng.IntN(9)],
		Status:           []string{"captured", "captured", "captured", "captured", "captured", "captured", "captured", "authorized", "authorized", "declined"}[rng.IntN(10)],
		Region:           countries[where].region,
		Country:          countries[where].code,
		DeviceID:         dev.id,
		DeviceType:       dev.kind,
		IPAddress:        ip.String(),
	}
	if rng.IntN(50) == 0 {
		e.Status = "refunded"
	}
	if rng.IntN(40) == 0 { // a field the contract does not know yet
		e.Extra = json.RawMessage(`{"channel":"` + []string{"ecom", "moto", "in_store"}[rng.IntN(3)] + `"}`)
	}
	return e
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}

// roundToOneDigit keeps the leading digit: 48213 -> 50000.
func roundToOneDigit(v int64) int64 {
	p := int64(1)
	for v >= 10*p {
		p *= 10
	}
	return max((v+p/2)/p*p, p)
}

func sortedNames(fields map[string]json.RawMessage) []string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// encodeObject writes fields in the order of names.
func encodeObject(names []string, fields map[string]json.RawMessage) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(name))
		b.WriteByte(':')
		b.Write(fields[name])
	}
	b.WriteByte('}')
	return b.Bytes()
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
