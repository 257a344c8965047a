package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/rows"
)

// errStop ends a ReadRange early.
var errStop = errors.New("stop")

// Plan picks the end of the next batch: at most MaxRecords records and,
// past the first record, at most MaxBytes of keys and values, and never
// past the last stable offset, so that no batch holds a record of a
// transaction still open. A batch short of MaxRecords closes once its
// first record has waited Linger since it was produced, less what the
// partition's recent batches took to write (see pace), so that records
// already waiting (after a restart, or a slow batch before) are not held
// a Linger more and a record's latency stays near the Linger.
func (e *Engine) Plan(ctx context.Context, in contract.PlanInput) (contract.PlanResult, error) {
	began := time.Now()
	deadline := began.Add(in.PollFor)
	var oldest time.Time // when the record at in.Next was produced, once it is there
	e.windows.touch(windowKey(in.Topic, in.Partition))
	// The log counts as growing while its end moved in the last two
	// polls: one quiet poll is a producer's hiccup, not the end of a
	// backlog.
	ends := [2]int64{-1, -1}
	// The whole bounds (three offsets, two requests) are read at the
	// start, again whenever the log seems to end before the next offset,
	// and before answering; the polls between read the stable offset alone.
	b, err := e.bounds(ctx, in)
	if err != nil {
		return contract.PlanResult{}, err
	}
	for {
		short := b.Stable-in.Next < int64(in.MaxRecords)
		growing := ends[0] < 0 || b.Stable > ends[0]
		if b.Stable > in.Next && oldest.IsZero() {
			if oldest, err = e.producedAt(ctx, in); err != nil {
				return contract.PlanResult{}, err
			}
		}
		if b.Stable > in.Next && (!short || !growing || time.Since(oldest) >= e.pace.linger(in.Topic, in.Partition, in.Linger)) {
			if b, err = e.bounds(ctx, in); err != nil {
				return contract.PlanResult{}, err
			}
			res, err := e.planRange(ctx, in, b)
			if err == nil {
				e.pace.cut(contract.Range{Topic: in.Topic, Partition: in.Partition, Start: in.Next, End: res.End}, time.Now())
			}
			return res, err
		}
		ends = [2]int64{ends[1], b.Stable}
		if b.Stable == in.Next && time.Now().After(deadline) {
			if b, err = e.bounds(ctx, in); err != nil {
				return contract.PlanResult{}, err
			}
			return contract.PlanResult{End: in.Next, HighWatermark: b.End, Stable: b.Stable}, nil
		}
		progress(ctx, b.Stable)
		select {
		case <-ctx.Done():
			return contract.PlanResult{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		stable, err := e.client.Stable(ctx, in.Topic, in.Partition)
		if err != nil {
			return contract.PlanResult{}, err
		}
		if stable < in.Next {
			if b, err = e.bounds(ctx, in); err != nil {
				return contract.PlanResult{}, err
			}
			continue
		}
		b.Stable, b.End = stable, max(b.End, stable)
	}
}

// producedAt is when the first record at or after in.Next was produced,
// by its timestamp, and never later than now: a producer whose clock runs
// ahead must not hold a batch longer. (One whose clock runs behind makes
// smaller batches, never later ones.) Now when the offset holds no data
// record (a transaction marker).
func (e *Engine) producedAt(ctx context.Context, in contract.PlanInput) (time.Time, error) {
	now := time.Now()
	at := now
	_, err := e.readRange(ctx, in.Topic, in.Partition, in.Next, in.Next+1, func(r kafkalog.Record) error {
		if !r.Time.IsZero() && r.Time.Before(now) {
			at = r.Time
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read the time of %s/%d offset %d: %w", in.Topic, in.Partition, in.Next, err)
	}
	return at, nil
}

// bounds reads the partition's bounds, fails for good when its log no
// longer holds the next offset, and records its lag.
func (e *Engine) bounds(ctx context.Context, in contract.PlanInput) (kafkalog.Bounds, error) {
	b, err := e.client.Bounds(ctx, in.Topic, in.Partition)
	if err != nil {
		return b, err
	}
	if err := e.checkNext(ctx, in, b); err != nil {
		return b, err
	}
	e.Metrics.Lag(in.Topic, in.Partition, b.End-in.Next)
	return b, nil
}

// checkNext fails for good when the log no longer holds the partition's
// next offset: deleted by retention, or a log that ends before it (a
// topic deleted and re-created, or truncated). The second is seen twice,
// a second apart, before it is believed: a leader that just took over may
// answer before it caught up.
func (e *Engine) checkNext(ctx context.Context, in contract.PlanInput, b kafkalog.Bounds) error {
	if in.Next < b.First {
		msg := fmt.Sprintf("%s/%d: offset %d was deleted by retention (log starts at %d); those records cannot be read", in.Topic, in.Partition, in.Next, b.First)
		e.Metrics.OffsetLost(in.Topic, in.Partition)
		return permanent(contract.ErrTypeOffsetOutOfRange, errors.New(msg))
	}
	if in.Next <= b.End {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
	}
	again, err := e.client.Bounds(ctx, in.Topic, in.Partition)
	if err != nil || in.Next <= again.End {
		return err
	}
	msg := fmt.Sprintf("%s/%d: the log ends at offset %d, before the next offset %d: the topic was re-created or truncated; ingestion of this partition stops until an operator decides",
		in.Topic, in.Partition, again.End, in.Next)
	e.Metrics.OffsetLost(in.Topic, in.Partition)
	return permanent(contract.ErrTypeLogTruncated, errors.New(msg))
}

// planRange reads the records it plans, to bound their bytes (the
// request's MaxBytes of keys and values, and the worker's MaxBatchBytes
// once parsed), and keeps them parsed for the batch's Dedup, Enrich and
// Load on this worker (see batchRecords): the batch is then read from
// Kafka once.
func (e *Engine) planRange(ctx context.Context, in contract.PlanInput, b kafkalog.Bounds) (contract.PlanResult, error) {
	limit := min(b.Stable, in.Next+int64(max(in.MaxRecords, 1)))
	if in.MaxBytes <= 0 && in.Schemas.Registry {
		// The plan records the registry's verdicts on its range: it
		// reads the range even when no byte bound asks it to.
		in.MaxBytes = math.MaxInt64
	}
	if in.MaxBytes <= 0 {
		return contract.PlanResult{End: limit, HighWatermark: b.End, Stable: b.Stable}, nil
	}
	// The range ends at limit, or where the first record that does not
	// fit starts: the markers and aborted records before it, and only
	// those, were tallied by then.
	end, size, parsed := limit, int64(0), 0
	recs := make([]rows.Record, 0, limit-in.Next)
	j := newJudge(in.AllowedLateness, limit, in.Schemas)
	tally, err := e.readRange(ctx, in.Topic, in.Partition, in.Next, limit, func(r kafkalog.Record) error {
		size += int64(len(r.Key) + len(r.Value))
		parsed += recordCost(r)
		if (size > in.MaxBytes || e.MaxBatchBytes > 0 && parsed > e.MaxBatchBytes) && len(recs) > 0 {
			end = r.Offset
			return errStop
		}
		// A registry that is down fails the plan: its verdicts on the
		// range's schema IDs are recorded with it, for the batch.
		rec, err := e.parse(ctx, r, j)
		recs = append(recs, rec)
		return err
	})
	if err != nil && !errors.Is(err, errStop) {
		return contract.PlanResult{}, err
	}
	j.until = end
	met := j.met()
	// New fields get their columns now, before the batch is decided; the
	// records parsed without them are judged again by them.
	if met.Columns, err = e.recordColumns(ctx, in.Schemas, j.wanted, in.Next); err != nil {
		return contract.PlanResult{}, fmt.Errorf("plan %s/%d at %d: typed columns: %w", in.Topic, in.Partition, in.Next, err)
	}
	if len(met.Columns) > 0 {
		j.recorded.Merge(contract.Schemas{Columns: met.Columns})
		if err := e.retype(ctx, j, recs); err != nil {
			return contract.PlanResult{}, fmt.Errorf("plan %s/%d at %d: typed columns: %w", in.Topic, in.Partition, in.Next, err)
		}
	}
	if in.AllowedLateness > 0 {
		e.cacheBatch(contract.Range{Topic: in.Topic, Partition: in.Partition, Start: in.Next, End: end}.ID(), in.Next, j, recs, tally)
	}
	return contract.PlanResult{End: end, HighWatermark: b.End, Stable: b.Stable, Schemas: met}, nil
}
