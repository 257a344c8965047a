package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/paystream/paystream/internal/batch"
	"github.com/paystream/paystream/internal/kafkalog"
)

// PlanInput asks for the next range of a partition.
type PlanInput struct {
	Topic      string
	Partition  int
	Next       int64
	MaxRecords int
	MaxBytes   int64
	// PollFor is how long to wait for new records when caught up, instead
	// of a workflow spinning timers.
	PollFor time.Duration
	// Linger is how long, from the call, a batch short of MaxRecords
	// waits to fill while records keep arriving: a live stream then makes
	// a batch per Linger instead of one per record burst, and each batch
	// costs a workflow, a ledger row and load jobs whatever its size. A
	// log that stopped growing (the end of a backlog) is cut at once.
	Linger time.Duration
}

// PlanResult is the planned range [Next, End); End == Next means nothing
// arrived while polling.
type PlanResult struct {
	End           int64
	HighWatermark int64
}

// errStop ends a ReadRange early.
var errStop = errors.New("stop")

// PlanBatch picks the end of the next batch: at most MaxRecords records and,
// past the first record, at most MaxBytes of keys and values.
func (a *Activities) PlanBatch(ctx context.Context, in PlanInput) (PlanResult, error) {
	began := time.Now()
	deadline := began.Add(in.PollFor)
	// The log counts as growing while its end moved in the last two
	// polls: one quiet poll is a producer's hiccup, not the end of a
	// backlog.
	hws := [2]int64{-1, -1}
	// The log's start is checked once; while the plan waits, only its
	// end is polled, over the worker's kept client.
	first, hw, err := kafkalog.Bounds(ctx, a.Kafka, in.Topic, in.Partition)
	if err != nil {
		return PlanResult{}, err
	}
	if in.Next < first {
		msg := fmt.Sprintf("%s/%d: offset %d was deleted by retention (log starts at %d); those records cannot be read", in.Topic, in.Partition, in.Next, first)
		return PlanResult{}, temporal.NewNonRetryableApplicationError(msg, ErrTypeOffsetOutOfRange, nil)
	}
	for polls := 0; ; polls++ {
		if polls > 0 {
			if hw, err = a.kafkaClient().HighWatermark(ctx, in.Topic, in.Partition); err != nil {
				return PlanResult{}, err
			}
		}
		a.Metrics.Lag(in.Topic, in.Partition, hw-in.Next)
		short := hw-in.Next < int64(in.MaxRecords)
		growing := hws[0] < 0 || hw > hws[0]
		if hw > in.Next && (!short || !growing || time.Since(began) >= in.Linger) {
			return a.planRange(ctx, in, hw)
		}
		hws = [2]int64{hws[1], hw}
		if hw == in.Next && time.Now().After(deadline) {
			return PlanResult{End: in.Next, HighWatermark: hw}, nil
		}
		activity.RecordHeartbeat(ctx, hw)
		select {
		case <-ctx.Done():
			return PlanResult{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// planRange reads the records it plans, to bound their bytes (the
// request's MaxBytes of keys and values, and the worker's MaxBatchBytes
// once parsed), and keeps them parsed for the batch's Dedup, Enrich and
// Load on this worker (see batchRecords): the batch is then read from
// Kafka once.
func (a *Activities) planRange(ctx context.Context, in PlanInput, hw int64) (PlanResult, error) {
	limit := min(hw, in.Next+int64(max(in.MaxRecords, 1)))
	if in.MaxBytes <= 0 {
		return PlanResult{End: limit, HighWatermark: hw}, nil
	}
	end, size, parsed := in.Next, int64(0), 0
	recs := make([]parsedRecord, 0, limit-in.Next)
	err := a.readRange(ctx, in.Topic, in.Partition, in.Next, limit, func(r kafkalog.Record) error {
		size += int64(len(r.Key) + len(r.Value))
		parsed += recordCost(r)
		if (size > in.MaxBytes || a.MaxBatchBytes > 0 && parsed > a.MaxBatchBytes) && r.Offset > in.Next {
			return errStop
		}
		end = r.Offset + 1
		recs = append(recs, parse(r))
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return PlanResult{}, err
	}
	if !errors.Is(err, errStop) {
		end = limit // offsets past the last record (markers) belong to this range
	}
	a.cacheBatch(batch.Range{Topic: in.Topic, Partition: in.Partition, Start: in.Next, End: end}.ID(), recs)
	return PlanResult{End: end, HighWatermark: hw}, nil
}
