package engine

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/rows"
)

// Decide decides every record of the batch against the partition's dedup
// window (docs/design.md §4) and returns the offsets it turns away. The window comes
// from this worker's cache when it ends where the batch starts; otherwise it
// is rebuilt by replaying the log from spec.Window.
func (e *Engine) Decide(ctx context.Context, spec contract.Spec) (contract.Decisions, error) {
	began := time.Now()
	log := e.logger(ctx, spec)
	key := windowKey(spec.Topic, spec.Partition)
	w := e.windows.take(key)
	j := newJudge(spec.AllowedLateness, spec.End, spec.Schemas)
	recs, tally, err := e.batchRecords(ctx, spec, j)
	if err != nil {
		if w != nil {
			e.windows.put(key, w) // untouched: still ends where it ended
		}
		return contract.Decisions{}, fmt.Errorf("dedup %s: %w", spec.ID(), err)
	}
	if w != nil && w.Next() == spec.Start && !w.SameAs(spec.AllowedLateness, spec.Window.Start, spec.Window.Newest, rows.DedupFloors(spec.Window.Floors)) {
		// A lateness changed by a restart, or bounds or floors from
		// elsewhere than this window (an older ledger row): the batch's
		// window is the one its spec rebuilds, as on any other worker.
		log.Info("dedup window kept here is not the batch's (other lateness, bounds or floors); rebuilding it",
			zap.Duration("kept_lateness", w.Lateness()), zap.Duration("allowed_lateness", spec.AllowedLateness))
		w = nil
	}
	if w == nil || w.Next() != spec.Start || e.RebuildEveryBatch {
		if w, err = e.rebuildWindow(ctx, spec, recs, j); err != nil {
			return contract.Decisions{}, err
		}
	}
	e.maybeSnapshot(log, spec, w, recs)
	d, raised, err := rows.Decide(w, spec, recs, tally)
	if err != nil {
		return contract.Decisions{}, fmt.Errorf("dedup %s: %w", spec.ID(), err)
	}
	d.Schemas = j.met()
	faults.At("dedup")
	if raised != nil {
		e.Metrics.WindowFloorRaised(spec.Topic)
		log.Warn("dedup window at its bound: its watermark is raised, and records older than it are quarantined as late",
			zap.Int("max_window_ids", spec.MaxWindowIDs), zap.Time("floor", raised.Time), zap.Int64("from_offset", raised.Offset))
	}
	e.windows.put(key, w)
	log.Info("dedup done", zap.Int("records", d.Records), zap.Int("loaded", d.Loaded), zap.Int("duplicates", len(d.DuplicateOffsets)),
		zap.Int("late", len(d.LateOffsets)), zap.Int("invalid", d.Invalid), zap.Int("conflicts", len(d.ConflictOffsets)),
		zap.Int("control", d.Control), zap.Int("aborted", d.Aborted), since(began))
	return d, nil
}

// rebuildWindow makes the window at spec.Start on a worker that does not
// hold it: from the partition's snapshot and the records after it when
// there is a usable one, else by replaying [spec.Window.Start, spec.Start)
// into a new window, exactly the one a warm worker would hold (see
// dedup.Window.Bounds).
func (e *Engine) rebuildWindow(ctx context.Context, spec contract.Spec, recs []rows.Record, j *judge) (*dedup.Window, error) {
	began := time.Now()
	log := e.logger(ctx, spec)
	if !e.RebuildEveryBatch {
		w, from, replayed, err := e.windowFromSnapshot(ctx, spec, recs, j)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			log.Warn("dedup snapshot not used; replaying the window from the log", zap.Error(err))
		}
		if w != nil {
			e.Metrics.WindowBuilt(spec.Topic, metrics.WindowFromSnapshot)
			log.Info("dedup window loaded from its snapshot", zap.Int64("snapshot_offset", from), zap.Int("replayed", replayed),
				zap.Int("ids", w.Len()), since(began))
			return w, nil
		}
	}
	w := dedup.New(spec.AllowedLateness, spec.Window.Start, spec.Window.Newest)
	w.SetFloors(rows.DedupFloors(spec.Window.Floors))
	if _, err := e.replay(ctx, spec, w, spec.Window.Start, j, nil); err != nil {
		return nil, fmt.Errorf("rebuild dedup window of %s/%d from offset %d: %w", spec.Topic, spec.Partition, spec.Window.Start, err)
	}
	w.AdvanceTo(spec.Start)
	source := metrics.WindowFromLog
	if spec.Start == spec.Window.Start {
		source = metrics.WindowEmpty
	}
	e.Metrics.WindowBuilt(spec.Topic, source)
	log.Info("dedup window rebuilt from the log", zap.Int64("from_offset", spec.Window.Start), zap.Int64("records", spec.Start-spec.Window.Start),
		zap.Int("ids", w.Len()), since(began))
	return w, nil
}

// replay observes the records of [from, spec.Start) into w, in offset
// order, and returns how many there were; vet, when set, must accept the
// first record before anything is observed.
func (e *Engine) replay(ctx context.Context, spec contract.Spec, w *dedup.Window, from int64, j *judge, vet func(kafkalog.Record) error) (int, error) {
	n := 0
	_, err := e.readRange(ctx, spec.Topic, spec.Partition, from, spec.Start, func(r kafkalog.Record) error {
		if n == 0 && vet != nil {
			if err := vet(r); err != nil {
				return err
			}
		}
		n++
		rec, err := e.parse(ctx, r, j)
		if err != nil {
			return err
		}
		_, err = rows.Observe(w, &rec)
		return err
	})
	return n, err
}

// maybeSnapshot writes the window, still at the batch's start, when the
// partition's snapshot is due. A failure costs only a longer rebuild after
// a restart, so it is logged, not returned.
func (e *Engine) maybeSnapshot(log *zap.Logger, spec contract.Spec, w *dedup.Window, recs []rows.Record) {
	store := e.snapshots
	key := windowKey(spec.Topic, spec.Partition)
	if store == nil || len(recs) == 0 || recs[0].Offset != spec.Start || !store.due(key, time.Now()) {
		return
	}
	began := time.Now()
	if err := store.save(spec.Topic, spec.Partition, w, recs[0].Record); err != nil {
		log.Warn("dedup snapshot not written", zap.Error(err))
		return
	}
	log.Info("dedup snapshot written", zap.Int("ids", w.Len()), since(began))
}
