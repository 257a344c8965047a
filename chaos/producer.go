package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Produced is one record the chaos producer wrote, as Kafka acknowledged
// it: the producer's own account, which the oracle trusts over any reader.
type Produced struct {
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Timestamp time.Time // what the record carries (milliseconds)
	Producer  string    // client ID: plain-<codec>, frozen, skewed or a transactional ID
	Txn       int       // the transaction's number, 0 outside one
	Committed bool      // false for records of aborted transactions
	Intent    string    // what the producer meant the record to be, for the report
	Amount    string    // as written, for valid-looking payments
	Currency  string
}

// codecs are the compressions Kafka producers use; the plain producers
// cycle through them and each transactional producer has one.
var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
}{
	{"none", kgo.NoCompression()}, {"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()},
	{"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()},
}

var currencies = []string{"EUR", "USD", "JPY", "KWD", "GBP", "CLP"}

// sentPayment is a payment the producer may send again (a duplicate) or
// contradict (a conflict).
type sentPayment struct {
	id, value, amount, currency string
	at                          time.Time // wall time it was first sent
}

// producer writes the chaos stream: plain producers with every codec,
// transactional producers interleaving and aborting, and records that are
// duplicates, conflicts, malformed, late, large, or stamped by frozen and
// skewed clocks. Every choice comes from its seed; only the moments
// depend on the machine.
type producer struct {
	rng     *rand.Rand
	brokers []string
	topic   string
	plain   []*kgo.Client
	txn     []*kgo.Client
	txnIDs  []string
	nextID  int
	nextTxn int
	recent  []sentPayment // payments of the last minutes, committed or not yet known
	aborted []sentPayment // payments whose transaction aborted, to send again

	mu       sync.Mutex
	produced []Produced
	rounds   map[string]int
}

func newProducer(seed uint64, brokers []string, topic string) (*producer, error) {
	p := &producer{rng: rand.New(rand.NewPCG(seed, 1)), brokers: brokers, topic: topic, rounds: map[string]int{}}
	common := []kgo.Opt{
		kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		// Partitions added during the run are found within seconds.
		kgo.MetadataMaxAge(2 * time.Second), kgo.MetadataMinAge(500 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.RecordRetries(20),
	}
	for _, c := range codecs {
		cl, err := kgo.NewClient(append(common, kgo.ClientID("plain-"+c.name), kgo.ProducerBatchCompression(c.codec))...)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("plain producer %s: %w", c.name, err)
		}
		p.plain = append(p.plain, cl)
	}
	for i := range 3 {
		id := fmt.Sprintf("chaos-payments-%d", i)
		c := codecs[(i+1)%len(codecs)]
		cl, err := kgo.NewClient(append(common, kgo.ClientID(id), kgo.TransactionalID(id), kgo.ProducerBatchCompression(c.codec),
			kgo.TransactionTimeout(2*time.Minute))...)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("transactional producer %s: %w", id, err)
		}
		p.txn, p.txnIDs = append(p.txn, cl), append(p.txnIDs, id)
	}
	return p, nil
}

func (p *producer) close() {
	for _, cl := range append(p.plain, p.txn...) {
		cl.Close()
	}
}

// Records returns what was produced so far.
func (p *producer) Records() []Produced {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Produced(nil), p.produced...)
}

// Rounds counts the rounds of each kind the producer ran.
func (p *producer) Rounds() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.rounds {
		out[k] = v
	}
	return out
}

// Run produces rounds until ctx ends, then closes any transaction it
// holds open as drawn. An error is a producer failure, not a finding.
func (p *producer) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := p.round(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(20+p.rng.IntN(150)) * time.Millisecond):
		}
	}
	return nil
}

// record is one record a round writes, before Kafka places it.
type record struct {
	key, value       string
	ts               time.Time
	intent           string
	amount, currency string
}

func (p *producer) round(ctx context.Context) error {
	kind := []string{"plain", "plain", "plain", "txn", "txn", "txn", "duplicates", "conflict", "malformed", "late",
		"frozen", "skewed", "large", "long-txn", "resend-aborted"}[p.rng.IntN(15)]
	p.mu.Lock()
	p.rounds[kind]++
	p.mu.Unlock()
	now := time.Now()
	switch kind {
	case "plain":
		var recs []record
		for range 5 + p.rng.IntN(40) {
			recs = append(recs, p.payment(now, now, ""))
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "", recs)
	case "txn", "long-txn":
		return p.transactions(ctx, kind == "long-txn")
	case "duplicates":
		var recs []record
		for range 1 + p.rng.IntN(8) {
			if r, ok := p.duplicate(now); ok {
				recs = append(recs, r)
			}
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "", recs)
	case "conflict":
		s, ok := p.pickRecent(now)
		if !ok {
			return nil
		}
		amount := p.amountFor(s.currency)
		if amount == s.amount {
			return nil
		}
		v := strings.Replace(s.value, `"amount":"`+s.amount+`"`, `"amount":"`+amount+`"`, 1)
		return p.sendPlain(ctx, 0, "", []record{{key: s.id, value: v, ts: now, intent: "conflict", amount: amount, currency: s.currency}})
	case "malformed":
		var recs []record
		for range 1 + p.rng.IntN(4) {
			id := p.newID()
			good := p.payment(now, now, "")
			switch p.rng.IntN(6) {
			case 0:
				recs = append(recs, record{key: id, value: `{"transaction_id":"` + id + `","amount":`, ts: now, intent: "malformed-json"})
			case 1:
				recs = append(recs, record{key: id, value: fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"currency":"EUR","customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`, id, now.UTC().Format(time.RFC3339Nano)), ts: now, intent: "missing-amount"})
			case 2:
				recs = append(recs, record{key: good.key, value: strings.Replace(good.value, `"currency":"`+good.currency+`"`, `"currency":"XXX"`, 1), ts: now, intent: "unknown-currency"})
			case 3:
				recs = append(recs, record{key: "not-" + good.key, value: good.value, ts: now, intent: "key-mismatch"})
			case 4:
				recs = append(recs, record{key: good.key, value: strings.Replace(good.value, `"amount":"`, `"amount":"-`, 1), ts: now, intent: "negative-amount"})
			case 5:
				recs = append(recs, record{key: good.key, value: "\xff\xfe" + good.value, ts: now, intent: "invalid-utf8"})
			}
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "", recs)
	case "late":
		var recs []record
		for range 1 + p.rng.IntN(4) {
			r := p.payment(now.Add(-2*time.Hour), now, "late")
			recs = append(recs, r)
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "", recs)
	case "frozen":
		// A producer whose clock stopped up to a minute ago: every record
		// carries the same timestamp while event times move on.
		frozen := now.Add(-time.Duration(p.rng.IntN(60)) * time.Second)
		var recs []record
		for range 3 + p.rng.IntN(20) {
			recs = append(recs, p.payment(time.Now(), frozen, "frozen-clock"))
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "frozen", recs)
	case "skewed":
		var recs []record
		for range 1 + p.rng.IntN(6) {
			switch p.rng.IntN(4) {
			case 0:
				recs = append(recs, p.payment(now, now.Add(time.Hour), "clock-ahead"))
			case 1:
				// event_time more than the lateness after its timestamp: invalid.
				recs = append(recs, p.payment(now, now.Add(-time.Hour), "clock-behind"))
			case 2:
				recs = append(recs, p.payment(now, now.Add(-2*time.Minute), "clock-slightly-behind"))
			case 3:
				// Seconds written as milliseconds: a timestamp not to trust.
				recs = append(recs, p.payment(now, time.UnixMilli(now.Unix()), "clock-in-seconds"))
			}
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "skewed", recs)
	case "large":
		var recs []record
		for range 1 + p.rng.IntN(3) {
			r := p.payment(now, now, "large")
			size := 20<<10 + p.rng.IntN(100<<10)
			if p.rng.IntN(4) == 0 {
				size, r.intent = 300<<10, "oversized"
			}
			r.value = strings.TrimSuffix(r.value, "}") + `,"note":"` + strings.Repeat("x", size) + `"}`
			recs = append(recs, r)
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "", recs)
	case "resend-aborted":
		// A payment service retrying what its aborted transaction held:
		// the aborted copies are no originals.
		var recs []record
		for len(p.aborted) > 0 && len(recs) < 10 {
			s := p.aborted[0]
			p.aborted = p.aborted[1:]
			if now.Sub(s.at) > 4*time.Minute {
				// Its event_time would be late under one lateness and not
				// the other: the oracle could not say.
				continue
			}
			recs = append(recs, record{key: s.id, value: s.value, ts: now, intent: "resend-aborted", amount: s.amount, currency: s.currency})
		}
		return p.sendPlain(ctx, p.rng.IntN(len(p.plain)), "", recs)
	}
	return nil
}

// transactions opens two or three transactions on different
// transactional IDs, writes to them interleaved, and ends them in a drawn
// order, aborting some. A long one stays open for seconds.
func (p *producer) transactions(ctx context.Context, long bool) error {
	order := p.rng.Perm(len(p.txn))[:2+p.rng.IntN(len(p.txn)-1)]
	type open struct {
		client int
		txn    int
		sent   []int // indexes into p.produced
		pays   []sentPayment
	}
	var opens []*open
	for _, c := range order {
		if err := p.txn[c].BeginTransaction(); err != nil {
			return fmt.Errorf("begin transaction on %s: %w", p.txnIDs[c], err)
		}
		p.nextTxn++
		opens = append(opens, &open{client: c, txn: p.nextTxn})
	}
	n := 4 + p.rng.IntN(30)
	for range n {
		o := opens[p.rng.IntN(len(opens))]
		now := time.Now()
		r := p.payment(now, now, "txn")
		if p.rng.IntN(10) == 0 {
			if d, ok := p.duplicate(now); ok {
				r = d
				r.intent = "txn-duplicate"
			}
		}
		i, err := p.send(ctx, p.txn[o.client], p.txnIDs[o.client], o.txn, r, false)
		if err != nil {
			return err
		}
		o.sent = append(o.sent, i)
		if r.intent == "txn" {
			o.pays = append(o.pays, sentPayment{id: r.key, value: r.value, amount: r.amount, currency: r.currency, at: now})
		}
		if long && p.rng.IntN(5) == 0 {
			time.Sleep(time.Duration(200+p.rng.IntN(800)) * time.Millisecond)
		}
	}
	for _, k := range p.rng.Perm(len(opens)) {
		o := opens[k]
		commit := p.rng.IntN(100) >= 35
		// An abort of a transaction with nothing in flight needs no flush;
		// a failed end leaves its fate unknown, which the run cannot judge.
		if err := p.txn[o.client].EndTransaction(context.WithoutCancel(ctx), kgo.TransactionEndTry(commit)); err != nil {
			return fmt.Errorf("end transaction %d on %s (commit %v): %w", o.txn, p.txnIDs[o.client], commit, err)
		}
		p.mu.Lock()
		for _, i := range o.sent {
			p.produced[i].Committed = commit
		}
		p.mu.Unlock()
		if commit {
			p.recent = append(p.recent, o.pays...)
		} else if p.rng.IntN(2) == 0 {
			p.aborted = append(p.aborted, o.pays...)
		}
	}
	return nil
}

// sendPlain writes recs with plain producer c (or the frozen or skewed
// client name, which only labels them).
func (p *producer) sendPlain(ctx context.Context, c int, label string, recs []record) error {
	name := "plain-" + codecs[c].name
	if label != "" {
		name = label + "-" + codecs[c].name
	}
	for _, r := range recs {
		if _, err := p.send(ctx, p.plain[c], name, 0, r, true); err != nil {
			return err
		}
		if r.intent == "" || r.intent == "large" {
			p.recent = append(p.recent, sentPayment{id: r.key, value: r.value, amount: r.amount, currency: r.currency, at: time.Now()})
		}
	}
	return nil
}

// send writes one record synchronously and keeps Kafka's answer.
func (p *producer) send(ctx context.Context, cl *kgo.Client, name string, txn int, r record, committed bool) (int, error) {
	rec := &kgo.Record{Key: []byte(r.key), Value: []byte(r.value), Timestamp: r.ts.Truncate(time.Millisecond)}
	if r.key == "" {
		rec.Key = nil
	}
	// A cancelled produce may still land, unknown to us: each record is
	// sent to the end, and Run stops between rounds.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	res := cl.ProduceSync(sendCtx, rec)
	if err := res.FirstErr(); err != nil {
		return 0, fmt.Errorf("produce %s (%s) with %s: %w", r.key, r.intent, name, err)
	}
	got := res[0].Record
	intent := r.intent
	if intent == "" {
		intent = "valid"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.produced = append(p.produced, Produced{
		Partition: int(got.Partition), Offset: got.Offset, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp,
		Producer: name, Txn: txn, Committed: committed, Intent: intent, Amount: r.amount, Currency: r.currency,
	})
	return len(p.produced) - 1, nil
}

func (p *producer) newID() string {
	p.nextID++
	return fmt.Sprintf("chaos-%07d", p.nextID)
}

// payment is a new valid payment with event_time eventTime, stamped ts.
func (p *producer) payment(eventTime, ts time.Time, intent string) record {
	id := p.newID()
	cur := currencies[p.rng.IntN(len(currencies))]
	amount := p.amountFor(cur)
	eventTime = eventTime.Add(-time.Duration(p.rng.IntN(2000)) * time.Millisecond)
	v := fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"amount":%q,"currency":%q,"customer_id":"cust-%d","merchant_id":"m-%d","card_id":"tok-%d","payment_method":"card","status":"captured"}`,
		id, eventTime.UTC().Format(time.RFC3339Nano), amount, cur, p.rng.IntN(500), p.rng.IntN(50), p.rng.IntN(1000))
	return record{key: id, value: v, ts: ts, intent: intent, amount: amount, currency: cur}
}

// amountFor draws an amount with the currency's minor-unit digits.
func (p *producer) amountFor(cur string) string {
	minor := 1 + p.rng.Int64N(5_000_000)
	switch cur {
	case "JPY", "CLP":
		return fmt.Sprint(minor)
	case "KWD":
		return fmt.Sprintf("%d.%03d", minor/1000, minor%1000)
	}
	return fmt.Sprintf("%d.%02d", minor/100, minor%100)
}

// duplicate sends a recent payment again: the same bytes (a producer
// retry) or re-serialized with an extra field (a client replay).
func (p *producer) duplicate(now time.Time) (record, bool) {
	s, ok := p.pickRecent(now)
	if !ok {
		return record{}, false
	}
	v, intent := s.value, "duplicate-retry"
	if p.rng.IntN(2) == 0 {
		v, intent = strings.TrimSuffix(s.value, "}")+`,"replayed":true}`, "duplicate-replay"
	}
	return record{key: s.id, value: v, ts: now, intent: intent, amount: s.amount, currency: s.currency}, true
}

// pickRecent picks a payment sent in the last five minutes: well inside
// either allowed lateness, so a repeat is a duplicate whichever applies.
func (p *producer) pickRecent(now time.Time) (sentPayment, bool) {
	for len(p.recent) > 0 && now.Sub(p.recent[0].at) > 5*time.Minute {
		p.recent = p.recent[1:]
	}
	if len(p.recent) == 0 {
		return sentPayment{}, false
	}
	return p.recent[p.rng.IntN(len(p.recent))], true
}
