package engine

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/registry"
	"github.com/paystream/paystream/internal/rows"
)

// DefaultBatchCacheBytes bounds the batches a worker keeps parsed between
// a batch's activities. Each partition holds up to two (the one loading and
// the next, planned meanwhile), about 1.5 KB a record: 256 MiB keeps four
// partitions of 20,000-record batches, or sixteen of 5,000. A miss costs a
// re-read from Kafka, never a wrong answer.
const DefaultBatchCacheBytes = 256 << 20

// BatchCacheBytesFor is the batch cache for a worker whose GC keeps its
// heap under gcLimit bytes (math.MaxInt64: no limit): a quarter of it, at
// most DefaultBatchCacheBytes. The dedup windows need most of the rest; a
// cache that crowds them makes the GC run without pause.
func BatchCacheBytesFor(gcLimit int64) int {
	return int(min(gcLimit/4, DefaultBatchCacheBytes))
}

// MaxBatchBytesFor is the parsed size of the largest batch a worker whose
// GC keeps its heap under gcLimit bytes plans: a thirty-second of it, so
// the batches it can hold at once (two a partition, one deciding while
// the one before loads, on four partitions) stay within a quarter of it,
// beside the dedup windows. 0 (no bound) without a limit.
func MaxBatchBytesFor(gcLimit int64) int {
	if gcLimit <= 0 || gcLimit == math.MaxInt64 {
		return 0
	}
	return int(gcLimit / 32)
}

// batchRecords returns the batch's records, parsed. Dedup, Enrich and Load
// each need them; the first to run on this worker reads and parses them and
// the others reuse that, which is safe because a range of the log never
// changes and parsing is a pure function of the bytes. A batch whose
// activities run on different workers is simply read again.
//
// j says how to judge them; the registry schema IDs they named are in
// j.seen afterwards.
func (e *Engine) batchRecords(ctx context.Context, spec contract.Spec, j *judge) ([]rows.Record, kafkalog.Tally, error) {
	id := spec.ID()
	// Parsing depends on the lateness (ParseRecord) and on the schema IDs
	// recorded, so a batch parsed by a plan at another lateness, or one
	// that took an ID the other way, is read again.
	if b, ok := e.batches.get(id); ok && b.lateness == j.lateness && b.registry == j.recorded.Reads(spec.Start) &&
		slices.Equal(b.columns, j.recorded.Columns) && j.agrees(b.recs) {
		for i := range b.recs {
			r := &b.recs[i]
			if sid, ok := registry.SchemaID(r.Value); ok && registry.Framed(r.Value) && b.registry &&
				j.recorded.Verdict(sid, r.Offset) == contract.VerdictNone {
				j.see(sid, payment.ReasonOf(r.ParseErr) != payment.ReasonSchemaUnknownID, r.Offset)
			}
		}
		return b.recs, b.tally, nil
	}
	recs := make([]rows.Record, 0, spec.End-spec.Start)
	tally, err := e.readRange(ctx, spec.Topic, spec.Partition, spec.Start, spec.End, func(r kafkalog.Record) error {
		rec, err := e.parse(ctx, r, j)
		recs = append(recs, rec)
		return err
	})
	if err != nil {
		return nil, tally, err
	}
	e.cacheBatch(id, spec.Start, j, recs, tally)
	return recs, tally, nil
}

// parse judges a record by the event contract; an event_time may run
// ahead of the record's Kafka timestamp by at most the allowed lateness.
func parse(r kafkalog.Record, lateness time.Duration) rows.Record {
	e, err := payment.ParseRecord(r.Key, r.Value, r.Time, lateness)
	return rows.Record{Record: r, Event: e, ParseErr: err}
}

func (e *Engine) cacheBatch(id string, start int64, j *judge, recs []rows.Record, tally kafkalog.Tally) {
	size := 0
	for i := range recs {
		size += recordCost(recs[i].Record)
	}
	e.batches.put(id, cachedBatch{recs: recs, tally: tally, size: size, lateness: j.lateness, registry: j.recorded.Reads(start),
		columns: slices.Clone(j.recorded.Columns)}, e.batchCacheLimit())
}

func (e *Engine) batchCacheLimit() int {
	if e.BatchCacheBytes == 0 {
		return DefaultBatchCacheBytes
	}
	return e.BatchCacheBytes
}

// recordCost estimates a parsed record's heap: its bytes, the event's
// strings (about as long again) and the fixed part.
func recordCost(r kafkalog.Record) int { return 2*(len(r.Key)+len(r.Value)) + 400 }

// batchCache holds recently parsed batches, oldest evicted first once
// their estimated size passes the limit.
type batchCache struct {
	mu    sync.Mutex
	order []string
	m     map[string]cachedBatch
	size  int
}

type cachedBatch struct {
	recs     []rows.Record
	tally    kafkalog.Tally
	size     int
	lateness time.Duration // the records were parsed at
	registry bool          // whether framed records were read with the registry
	// columns are the recorded typed columns the records were judged by:
	// a column widened since changes which of them are schema_type_changed.
	columns []contract.Column
}

func (c *batchCache) get(id string) (cachedBatch, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[id]
	return b, ok
}

func (c *batchCache) put(id string, b cachedBatch, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedBatch{}
	}
	if _, ok := c.m[id]; ok || b.size > limit {
		return
	}
	c.m[id] = b
	c.order = append(c.order, id)
	c.size += b.size
	for c.size > limit && len(c.order) > 0 {
		c.dropLocked(c.order[0])
	}
}

// drop forgets a batch its last reader (Load) is done with.
func (c *batchCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
}

func (c *batchCache) dropLocked(id string) {
	b, ok := c.m[id]
	if !ok {
		return
	}
	delete(c.m, id)
	c.size -= b.size
	for i, o := range c.order {
		if o == id {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}
