package kafkalog

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/testtier"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// transactionalLog writes to partition 0 of topic: for each i < rounds, a
// transaction of per records that commits when i is even and aborts when
// it is odd, each record's value naming its round and as large as a
// payment, so that a fetch's answer is cut by its size limit. It returns
// the values a read_committed consumer must see, in order.
func transactionalLog(t *testing.T, brokers []string, topic string, rounds, per int) []string {
	t.Helper()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("payments-tx"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var want []string
	for i := range rounds {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range per {
			v := fmt.Sprintf("round-%d-%d-%s", i, j, strings.Repeat("x", 1000))
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: 0, Key: []byte(v), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				want = append(want, v)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(i%2 == 0)); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// TestReadRangeIsReadCommitted: records of aborted transactions are not
// returned, markers are counted, and every offset is accounted for, in
// whatever pieces the range is read.
func TestReadRangeIsReadCommitted(t *testing.T) {
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "tx"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	const rounds, per = 10, 40 // 400 KiB: more than one fetch
	want := transactionalLog(t, kc.ListenAddrs(), "tx", rounds, per)

	c := Plain(kc.ListenAddrs()).Client(10 * time.Second)
	defer c.Close()
	b, err := c.Bounds(ctx, "tx", 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.End != rounds*(per+1) || b.Stable != b.End {
		t.Fatalf("bounds %+v, want stable = end = %d (records and one marker per transaction)", b, rounds*(per+1))
	}
	for _, step := range []int64{1, 25, 77, b.End} {
		var got []string
		var tally Tally
		for start := int64(0); start < b.End; start += step {
			part, err := c.ReadRange(ctx, "tx", 0, start, min(start+step, b.End), func(r Record) error {
				got = append(got, string(r.Value))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			tally.Control += part.Control
			tally.Aborted += part.Aborted
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("read in steps of %d: %d records, want the %d committed ones", step, len(got), len(want))
		}
		if tally.Control != rounds || tally.Aborted != rounds/2*per {
			t.Errorf("read in steps of %d: %+v, want %d markers and %d aborted records", step, tally, rounds, rounds/2*per)
		}
	}
}

// TestOpenTransactionHoldsTheStableOffset: while a transaction is open the
// last stable offset stays at its first record, and moves past its marker
// once it ends.
func TestOpenTransactionHoldsTheStableOffset(t *testing.T) {
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	transactionalLog(t, kc.ListenAddrs(), "open", 1, 3) // offsets 0-2 and a marker at 3
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.TransactionalID("open-tx"), kgo.DefaultProduceTopic("open"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("open")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c := Plain(kc.ListenAddrs()).Client(10 * time.Second)
	defer c.Close()
	b, err := c.Bounds(ctx, "open", 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Stable != 4 || b.End != 6 {
		t.Errorf("open transaction: bounds %+v, want stable 4 (its first record), end 6", b)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if b, err = c.Bounds(ctx, "open", 0); err != nil || b.Stable != 7 {
		t.Errorf("committed: bounds %+v (%v), want stable 7", b, err)
	}
}

// TestReadsSurviveBrokerFailures: with three brokers, the first bootstrap
// broker gone and a partition's leader moved, reads and bounds still
// answer, from the brokers that lead now.
func TestReadsSurviveBrokerFailures(t *testing.T) {
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(2, "ha"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	addrs := kc.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("ha"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 100 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 2), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c := Plain(addrs).Client(10 * time.Second)
	defer c.Close()
	read := func(what string) {
		t.Helper()
		for p := range 2 {
			n := 0
			if _, err := c.ReadRange(ctx, "ha", p, 0, 50, func(Record) error { n++; return nil }); err != nil || n != 50 {
				t.Fatalf("%s: partition %d: read %d of 50 records (%v)", what, p, n, err)
			}
		}
	}
	read("all brokers up")
	// A leader moves to another broker.
	if err := kc.MoveTopicPartition("ha", 0, (kc.LeaderFor("ha", 0)+1)%3); err != nil {
		t.Fatal(err)
	}
	read("after partition 0's leader moved")
	// The first bootstrap broker dies; a new client must still find the
	// cluster through the others.
	if err := kc.RemoveNode(0); err != nil {
		t.Fatal(err)
	}
	read("after broker 0 died")
	fresh := Plain(addrs)
	parts, err := Partitions(ctx, fresh, "ha")
	if err != nil || len(parts) != 2 {
		t.Fatalf("partitions with the first bootstrap broker down: %v (%v)", parts, err)
	}
	if err := ReadRange(ctx, fresh, "ha", 1, 0, 50, func(Record) error { return nil }); err != nil {
		t.Fatalf("a new client with the first bootstrap broker down: %v", err)
	}
}

// overlappingTransactions writes rounds of two transactional producers
// whose transactions overlap in every partition of topic: A opens and
// writes, B opens and writes, A writes again, then they end in an order
// and with outcomes drawn from seed (round 0 is the case a broker lists
// out of first-offset order: B aborts, then A aborts). It returns, per
// partition, the values a read_committed consumer must see, in order, and
// how many records were aborted.
func overlappingTransactions(t *testing.T, brokers []string, topic string, partitions, rounds int, seed int64) (want [][]string, aborted int) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewSource(seed))
	producer := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	a, b := producer("payments-a"), producer("payments-b")
	type open struct {
		cl        *kgo.Client
		name      string
		committed bool
	}
	type written struct {
		value string
		tx    *open
	}
	log := make([][]written, partitions) // in offset order
	write := func(o *open, round, step int) {
		for p := range partitions {
			// Some records are large, as payments with big metadata are:
			// a batch larger than what is left of the answer's room cuts it.
			size := []int{300, 50 << 10, 90 << 10}[(round+step+p)%3]
			filler := make([]byte, size)
			for i := range filler {
				filler[i] = 'a' + byte(rng.Intn(26)) // random, so compression keeps it large
			}
			v := fmt.Sprintf("%s-%d-%d-p%d-%s", o.name, round, step, p, filler)
			if err := o.cl.ProduceSync(ctx, &kgo.Record{Partition: int32(p), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			log[p] = append(log[p], written{v, o})
		}
	}
	end := func(o *open, commit bool) {
		if err := o.cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		o.committed = commit
	}
	for round := range rounds {
		ta, tb := &open{cl: a, name: "a"}, &open{cl: b, name: "b"}
		if err := a.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		write(ta, round, 0)
		if err := b.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		write(tb, round, 0)
		write(ta, round, 1)
		commitA, commitB, bFirst := rng.Intn(2) == 0, rng.Intn(2) == 0, rng.Intn(2) == 0
		if round == 0 {
			commitA, commitB, bFirst = false, false, true
		}
		if bFirst {
			end(tb, commitB)
			end(ta, commitA)
		} else {
			end(ta, commitA)
			end(tb, commitB)
		}
	}
	want = make([][]string, partitions)
	for p, ws := range log {
		for _, w := range ws {
			if w.tx.committed {
				want[p] = append(want[p], w.value)
			} else {
				aborted++
			}
		}
	}
	return want, aborted
}

// TestOverlappingTransactionsOfTwoProducers: the broker lists a fetch's
// aborted transactions in the order of their abort markers, not of their
// first offsets; records of an aborted transaction that opened before
// another producer's aborted one must still be skipped, however the range
// is read.
func TestOverlappingTransactionsOfTwoProducers(t *testing.T) {
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const partitions, rounds = 3, 24
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "tx2"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	want, aborted := overlappingTransactions(t, kc.ListenAddrs(), "tx2", partitions, rounds, 27)
	if aborted == 0 {
		t.Fatal("the seed aborted nothing")
	}
	c := Plain(kc.ListenAddrs()).Client(10 * time.Second)
	defer c.Close()
	for p := range partitions {
		b, err := c.Bounds(ctx, "tx2", p)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []int64{1, 25, b.End} {
			var got []string
			var tally Tally
			for start := int64(0); start < b.End; start += step {
				part, err := c.ReadRange(ctx, "tx2", p, start, min(start+step, b.End), func(r Record) error {
					got = append(got, string(r.Value))
					return nil
				})
				if err != nil {
					t.Fatalf("partition %d, steps of %d: %v", p, step, err)
				}
				tally.Control += part.Control
				tally.Aborted += part.Aborted
			}
			loadedAborted := 0
			for _, v := range got {
				if !slices.Contains(want[p], v) {
					loadedAborted++
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want[p]) {
				t.Errorf("partition %d, steps of %d: %d records (%d of them aborted), want the %d committed ones", p, step, len(got), loadedAborted, len(want[p]))
			}
			if int(tally.Control) != 2*rounds || int64(len(got))+tally.Aborted+tally.Control != b.End {
				t.Errorf("partition %d, steps of %d: %+v and %d records, want %d markers and every one of %d offsets accounted for", p, step, tally, len(got), 2*rounds, b.End)
			}
		}
	}
}

// compactedBatch is a record batch as a compacted log keeps it: the records
// at offsets present, and a header whose last offset may lie past the last
// of them (compaction keeps a batch's header when it removes its tail).
type compactedBatch struct {
	base, last int64
	present    []int64
	count      int32 // the header's record count; 0: len(present)
}

func (b compactedBatch) encode() []byte {
	var records []byte
	for _, o := range b.present {
		var body []byte
		body = append(body, 0)              // attributes
		body = binary.AppendVarint(body, 0) // timestamp delta
		body = binary.AppendVarint(body, o-b.base)
		body = binary.AppendVarint(body, -1) // no key
		v := fmt.Sprintf("offset-%d", o)
		body = binary.AppendVarint(body, int64(len(v)))
		body = append(body, v...)
		body = binary.AppendVarint(body, 0) // no headers
		records = append(binary.AppendVarint(records, int64(len(body))), body...)
	}
	count := b.count
	if count == 0 {
		count = int32(len(b.present))
	}
	rb := kmsg.RecordBatch{FirstOffset: b.base, Magic: 2, LastOffsetDelta: int32(b.last - b.base), ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: count, Records: records}
	raw := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))                                          // length: what follows it
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli))) // crc: from attributes on
	return raw
}

// TestRangesEndingInCompactionGaps: a range that starts or ends inside a
// gap compaction left, between batches or at a batch's tail, is read to
// its end, each present record once.
func TestRangesEndingInCompactionGaps(t *testing.T) {
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seq := func(from, to int64) (s []int64) {
		for o := from; o <= to; o++ {
			s = append(s, o)
		}
		return s
	}
	batches := []compactedBatch{
		{base: 0, last: 9, present: seq(0, 9)},
		{base: 10, last: 19, present: seq(10, 11)},         // 12-19 compacted away, the header kept
		{base: 25, last: 29, present: []int64{25, 27, 29}}, // 20-24 a whole batch removed; 26, 28 removed
		{base: 30, last: 34, present: seq(30, 34)},
	}
	const logEnd = 35
	var want []string
	for _, b := range batches {
		for _, o := range b.present {
			want = append(want, fmt.Sprintf("offset-%d", o))
		}
	}
	kc := compactedLog(t, batches, logEnd)
	c := Plain(kc.ListenAddrs()).Client(10 * time.Second)
	defer c.Close()
	for _, step := range []int64{1, 3, 7, logEnd} {
		var got []string
		for start := int64(0); start < logEnd; start += step {
			if _, err := c.ReadRange(ctx, "compacted", 0, start, min(start+step, logEnd), func(r Record) error {
				if want := fmt.Sprintf("offset-%d", r.Offset); string(r.Value) != want {
					t.Errorf("record at offset %d holds %q", r.Offset, r.Value)
				}
				got = append(got, string(r.Value))
				return nil
			}); err != nil {
				t.Fatalf("steps of %d: range [%d, %d): %v", step, start, min(start+step, logEnd), err)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("steps of %d: read %d records %v, want the %d present", step, len(got), got, len(want))
		}
	}
}

// compactedLog is a broker whose partition 0 of topic "compacted" holds
// batches and ends at logEnd. It answers a fetch with the batches from
// the one holding the fetch offset on, whole, as Kafka does.
func compactedLog(t *testing.T, batches []compactedBatch, logEnd int64) *kfake.Cluster {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "compacted"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	kc.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			topic := kmsg.NewFetchResponseTopic()
			topic.Topic, topic.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				p := kmsg.NewFetchResponseTopicPartition()
				p.Partition, p.HighWatermark, p.LastStableOffset, p.LogStartOffset = rp.Partition, logEnd, logEnd, 0
				for _, b := range batches {
					if b.last >= rp.FetchOffset {
						p.RecordBatches = append(p.RecordBatches, b.encode()...)
					}
				}
				topic.Partitions = append(topic.Partitions, p)
			}
			resp.Topics = append(resp.Topics, topic)
		}
		return resp, nil, true
	})
	return kc
}

// TestABatchDecodedInPartIsAnError: a batch whose header counts more
// records than decode is not a compaction gap: the read fails rather than
// pass over committed records.
func TestABatchDecodedInPartIsAnError(t *testing.T) {
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := compactedLog(t, []compactedBatch{
		{base: 0, last: 9, present: []int64{0, 1, 2, 3, 4}, count: 10},
		{base: 10, last: 14, present: []int64{10, 11, 12, 13, 14}},
	}, 15)
	c := Plain(kc.ListenAddrs()).Client(10 * time.Second)
	defer c.Close()
	var got []int64
	_, err := c.ReadRange(ctx, "compacted", 0, 0, 15, func(r Record) error { got = append(got, r.Offset); return nil })
	if err == nil || !strings.Contains(err.Error(), "5 of its 10 records") {
		t.Errorf("read offsets %v, error %v; want the batch at 0 refused: 5 of its 10 records", got, err)
	}
}
