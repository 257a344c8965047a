package kafkalog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
)

// Record is one data record of a partition.
type Record struct {
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Time      time.Time
}

// Tally counts the offsets of a range that hold no data record for
// paystream: every offset is a data record, a transaction marker, a record
// of an aborted transaction, or a gap (compaction).
type Tally struct {
	Control int64 // commit and abort markers
	Aborted int64 // records of aborted transactions
}

// ErrOffsetOutOfRange means the range starts before the log's first offset
// (deleted by retention, or the topic was re-created): no retry will bring
// those records back.
var ErrOffsetOutOfRange = errors.New("offset out of range")

// ReadRange calls fn for every committed data record of topic/partition
// with an offset in [start, end), in offset order, and counts the offsets
// that hold markers or aborted records. It reads as a read_committed
// consumer does, so end must be at or below the partition's last stable
// offset (Bounds.Stable): the log below it never changes, so every call
// for the same range sees the same records.
func (c *Client) ReadRange(ctx context.Context, topic string, partition int, start, end int64, fn func(Record) error) (Tally, error) {
	var t Tally
	next := start
	var seenBytes, seenRecords int64
	var failing retrier
	for next < end {
		if err := ctx.Err(); err != nil {
			return t, err
		}
		resp, err := c.fetch(ctx, topic, partition, next, fetchBytes(end-next, seenBytes, seenRecords))
		if err == nil && resp.ErrorCode != 0 {
			err = kafka.Error(resp.ErrorCode)
		}
		if err != nil {
			if errors.Is(err, kafka.OffsetOutOfRange) {
				return t, c.outOfRange(ctx, topic, partition, start, end)
			}
			if werr := failing.wait(ctx, err); werr != nil {
				return t, fmt.Errorf("read %s/%d at offset %d: %w", topic, partition, next, werr)
			}
			continue
		}
		failing = retrier{}
		before := next
		r := rangeReader{partition: partition, next: next, end: end, aborted: byFirstOffset(resp.Aborted), headers: resp.headers, tally: &t, fn: func(rec Record) error {
			seenBytes += int64(len(rec.Key) + len(rec.Value) + recordOverhead)
			seenRecords++
			return fn(rec)
		}}
		if err := r.read(resp.Records); err != nil {
			return t, err
		}
		next = r.next
		if next == before && next < end {
			if next >= resp.LastStableOffset {
				return t, fmt.Errorf("read %s/%d: range [%d, %d) passes the last stable offset %d (an open transaction)", topic, partition, start, end, resp.LastStableOffset)
			}
			return t, fmt.Errorf("read %s/%d: no progress at offset %d", topic, partition, next)
		}
	}
	return t, nil
}

// fetch sends one read_committed fetch to the partition's leader, which the
// transport finds from the cluster's metadata. The partition's limit,
// maxBytes, cuts the answer; the request's own limit is higher by more than
// any record batch (requestHeadroom), as the Java consumer's defaults have
// it (fetch.max.bytes far above max.partition.fetch.bytes). The local
// broker, kfake, leaves out the aborted transactions of an answer cut by
// the request's limit, which made aborted records read as committed ones
// when a large batch followed a smaller one; cut by the partition's limit
// it lists them, as Kafka does in both cases.
func (c *Client) fetch(ctx context.Context, topic string, partition int, offset int64, maxBytes int) (*fetched, error) {
	req := &fetchRequest{Request: fetchapi.Request{
		ReplicaID:      -1,
		MaxWaitTime:    500,
		MinBytes:       1,
		MaxBytes:       int32(maxBytes + requestHeadroom),
		IsolationLevel: int8(kafka.ReadCommitted),
		Topics: []fetchapi.RequestTopic{{Topic: topic, Partitions: []fetchapi.RequestPartition{{
			Partition: int32(partition), FetchOffset: offset, PartitionMaxBytes: int32(maxBytes),
		}}}},
	}}
	m, err := c.transport.RoundTrip(ctx, c.kc.Addr, req)
	if err != nil {
		return nil, err
	}
	res := m.(*fetched)
	if res.ErrorCode != 0 {
		return nil, kafka.Error(res.ErrorCode)
	}
	return res, nil
}

// outOfRange says why the broker refused the range: records deleted (not
// retryable), or a log that ends before it (a topic re-created smaller, or
// a new leader not yet caught up: retryable, and PlanBatch judges it).
func (c *Client) outOfRange(ctx context.Context, topic string, partition int, start, end int64) error {
	b, err := c.Bounds(ctx, topic, partition)
	if err != nil {
		return err
	}
	if start < b.First {
		return fmt.Errorf("%s/%d range [%d, %d) starts before the log's first offset %d: %w", topic, partition, start, end, b.First, ErrOffsetOutOfRange)
	}
	return fmt.Errorf("%s/%d range [%d, %d) ends past the log's end %d", topic, partition, start, end, b.End)
}

// rangeReader walks a fetch's record batches the way a read_committed
// consumer does (KIP-98): a transactional batch whose producer has an
// aborted transaction starting at or before it is skipped until that
// producer's abort marker. Offsets that no batch holds, or that lie past a
// batch's last record but not past its header's last offset, are gaps
// compaction left: passed over, and counted as skipped by the caller.
type rangeReader struct {
	partition int
	next, end int64
	aborted   []abortedTransaction  // by first offset (byFirstOffset)
	abortedBy map[int64]bool        // producer IDs inside an aborted transaction
	headers   map[int64]batchHeader // each batch's header, by its first offset
	tally     *Tally
	fn        func(Record) error
}

func (r *rangeReader) read(rs protocol.RecordReader) error {
	if rs == nil {
		return nil
	}
	batches := []protocol.RecordReader{rs}
	if s, ok := rs.(*protocol.RecordStream); ok {
		batches = s.Records
	}
	for _, b := range batches {
		if r.next >= r.end {
			return nil
		}
		var err error
		var first int64 = -1
		var n int // records the batch decoded to
		switch b := b.(type) {
		case *protocol.ControlBatch:
			first = b.BaseOffset
			r.skipTo(first)
			n, err = r.control(b)
		case *protocol.RecordBatch:
			first = b.BaseOffset
			r.skipTo(first)
			r.noteAborted(first)
			skip := b.Attributes.Transactional() && r.abortedBy[b.ProducerID]
			n, err = r.records(b, skip)
		default:
			_, err = r.records(b, false)
		}
		if err != nil {
			return err
		}
		if h, ok := r.headers[first]; ok {
			// Offsets past the last record, up to the header's last, are
			// a gap only if every record the header counts was read:
			// kafka-go cuts a batch short at a record it cannot decode.
			if n != h.records {
				return fmt.Errorf("record batch at offset %d: decoded %d of its %d records", first, n, h.records)
			}
			r.skipTo(h.last + 1)
		}
	}
	return nil
}

// skipTo passes over a gap up to offset, within the range.
func (r *rangeReader) skipTo(offset int64) {
	r.next = max(r.next, min(offset, r.end))
}

// byFirstOffset orders a fetch's aborted transactions by first offset, as
// the Java consumer's queue does: brokers list them in the order of their
// abort markers, so one producer's transaction that opened first but
// aborted last comes after another's it overlaps.
func byFirstOffset(txs []abortedTransaction) []abortedTransaction {
	sorted := slices.Clone(txs)
	slices.SortStableFunc(sorted, func(a, b abortedTransaction) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	return sorted
}

func (r *rangeReader) noteAborted(offset int64) {
	for len(r.aborted) > 0 && r.aborted[0].FirstOffset <= offset {
		if r.abortedBy == nil {
			r.abortedBy = map[int64]bool{}
		}
		r.abortedBy[r.aborted[0].ProducerID] = true
		r.aborted = r.aborted[1:]
	}
}

func (r *rangeReader) control(b *protocol.ControlBatch) (n int, err error) {
	r.noteAborted(b.BaseOffset)
	for ; ; n++ {
		cr, err := b.ReadControlRecord()
		if err != nil {
			return n, ignoreEOF(err)
		}
		if cr.Type == 0 { // abort: the producer's next batches are its own again
			delete(r.abortedBy, b.ProducerID)
		}
		if cr.Offset >= r.next && cr.Offset < r.end {
			r.tally.Control++
			r.next = cr.Offset + 1
		}
	}
}

func (r *rangeReader) records(b protocol.RecordReader, aborted bool) (n int, err error) {
	for ; ; n++ {
		rec, err := b.ReadRecord()
		if err != nil {
			return n, ignoreEOF(err)
		}
		key, kerr := readBytes(rec.Key)
		value, verr := readBytes(rec.Value)
		if err := errors.Join(kerr, verr); err != nil {
			return n, fmt.Errorf("read record at offset %d: %w", rec.Offset, err)
		}
		if rec.Offset < r.next || rec.Offset >= r.end {
			continue // the broker returns whole batches
		}
		r.next = rec.Offset + 1
		if aborted {
			r.tally.Aborted++
			continue
		}
		if err := r.fn(Record{Partition: r.partition, Offset: rec.Offset, Key: key, Value: value, Time: rec.Time}); err != nil {
			return n, err
		}
	}
}

func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	return protocol.ReadAll(b)
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// retrier waits between attempts at a request that failed for a reason a
// leader change or a dead broker explains, until the metadata the transport
// refreshes names a live leader; it gives up after retryFor.
type retrier struct {
	began time.Time
	delay time.Duration
}

const retryFor = 20 * time.Second

func (r *retrier) wait(ctx context.Context, err error) error {
	if r.began.IsZero() {
		r.began, r.delay = time.Now(), 50*time.Millisecond
	}
	if !retriable(err) || time.Since(r.began) > retryFor {
		return err
	}
	select {
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	case <-time.After(r.delay):
	}
	r.delay = min(2*r.delay, time.Second)
	return nil
}

// retriable: Kafka's errors that another broker, or the same one a moment
// later, can answer, and every error of the connection itself (a dead
// broker, or the transport's "no leader" while its metadata is stale).
// Kafka's other errors are returned at once.
func retriable(err error) bool {
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return true
	}
	return ke.Temporary() || errors.Is(err, kafka.NotLeaderForPartition) || errors.Is(err, kafka.LeaderNotAvailable) ||
		errors.Is(err, kafka.UnknownTopicOrPartition) || errors.Is(err, kafka.FencedLeaderEpoch) || errors.Is(err, kafka.UnknownLeaderEpoch) ||
		errors.Is(err, kafka.OffsetNotAvailable)
}

// Fetch sizing. A fetch asks for about what the rest of the range needs:
// asking for the most every time made the broker return (and the client
// read) up to 16 MiB for a 2 MiB batch. The broker returns at least one
// record batch whatever the size, so a small guess never stalls.
const (
	recordOverhead    = 70      // per record on the wire, roughly
	guessRecordBytes  = 1 << 10 // before any record was seen
	minFetchBytes     = 64 << 10
	maxFetchBytes     = 16 << 20
	fetchBytesHeadway = 5 // fetch a fifth more than the estimate
)

func fetchBytes(records, seenBytes, seenRecords int64) int {
	per := int64(guessRecordBytes)
	if seenRecords > 0 {
		per = seenBytes / seenRecords
	}
	want := records * per
	want += want / fetchBytesHeadway
	return int(min(max(want, minFetchBytes), maxFetchBytes))
}

// ReadRange reads [start, end) of a partition with a client of its own
// (see Client.ReadRange), for tools and tests that read once.
func ReadRange(ctx context.Context, kc Cluster, topic string, partition int, start, end int64, fn func(Record) error) error {
	c := kc.Client(10 * time.Second)
	defer c.Close()
	_, err := c.ReadRange(ctx, topic, partition, start, end, fn)
	return err
}

// requestHeadroom is what a fetch request's own limit allows above its
// partition's: more than any record batch a broker accepts (Kafka's
// message.max.bytes is 1 MiB by default), so the partition's limit is
// always the one that cuts the answer.
const requestHeadroom = 64 << 20
