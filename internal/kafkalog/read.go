package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Record is one record of a partition.
type Record struct {
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Time      time.Time
}

// ErrOffsetOutOfRange means the range starts before the log's first offset
// (deleted by retention) or ends past its last: no retry will bring those
// records back.
var ErrOffsetOutOfRange = errors.New("offset out of range")

// ReadRange calls fn for every record of topic/partition with an offset in
// [start, end), in offset order. The log is immutable, so every call for the
// same range sees the same records. Offsets without a record (transaction
// markers, compacted records) are skipped.
func ReadRange(ctx context.Context, kc Cluster, topic string, partition int, start, end int64, fn func(Record) error) error {
	if start >= end {
		return nil
	}
	conn, first, last, err := dialLeader(ctx, kc, topic, partition)
	if err != nil {
		return err
	}
	defer conn.Close()
	if start < first || end > last {
		return fmt.Errorf("%s/%d range [%d, %d) outside the log [%d, %d): %w", topic, partition, start, end, first, last, ErrOffsetOutOfRange)
	}
	next := start
	var seenBytes, seenRecords int64
	for next < end {
		before := next
		if _, err := conn.Seek(next, kafka.SeekAbsolute); err != nil {
			return fmt.Errorf("seek %s/%d to %d: %w", topic, partition, next, err)
		}
		batch := conn.ReadBatch(1, fetchBytes(end-next, seenBytes, seenRecords))
		for next < end {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if m.Offset < next {
				continue // the broker returns whole record batches
			}
			if m.Offset >= end {
				next = end
				break
			}
			seenBytes += int64(len(m.Key) + len(m.Value) + recordOverhead)
			seenRecords++
			if err := fn(Record{Partition: partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}); err != nil {
				batch.Close()
				return err
			}
			next = m.Offset + 1
		}
		if o := batch.Offset(); o > next {
			next = min(o, end) // past records the client skips, e.g. transaction markers
		}
		if err := batch.Close(); err != nil && !errors.Is(err, kafka.ErrGenerationEnded) {
			return fmt.Errorf("read %s/%d at offset %d: %w", topic, partition, next, err)
		}
		if next == before && next < end {
			return fmt.Errorf("read %s/%d: no progress at offset %d", topic, partition, next)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
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

// Bounds returns a partition's first offset still in the log and its high
// watermark (the offset the next record will get).
func Bounds(ctx context.Context, kc Cluster, topic string, partition int) (first, end int64, err error) {
	conn, first, end, err := dialLeader(ctx, kc, topic, partition)
	if err != nil {
		return 0, 0, err
	}
	conn.Close()
	return first, end, nil
}

// dialLeader connects to the partition's leader, bounded by ctx's
// deadline, and reads the log's first offset and high watermark.
func dialLeader(ctx context.Context, kc Cluster, topic string, partition int) (conn *kafka.Conn, first, end int64, err error) {
	conn, err = kc.Dialer(10*time.Second).DialLeader(ctx, "tcp", kc.Brokers[0], topic, partition)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("connect to leader of %s/%d: %w", topic, partition, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if first, end, err = conn.ReadOffsets(); err != nil {
		conn.Close()
		return nil, 0, 0, fmt.Errorf("read offsets of %s/%d: %w", topic, partition, err)
	}
	return conn, first, end, nil
}
