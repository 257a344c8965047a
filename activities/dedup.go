package activities

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
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/rows"
)

// Dedup decides every record of the batch against the partition's dedup
// window (DESIGN §4) and returns the offsets it turns away. The window comes
// from this worker's cache when it ends where the batch starts; otherwise it
// is rebuilt by replaying the log from spec.Window.
func (a *Activities) Dedup(ctx context.Context, spec contract.Spec) (contract.Decisions, error) {
	began := time.Now()
	log := a.logger(ctx, spec)
	key := windowKey(spec.Topic, spec.Partition)
	w := a.windows.take(key)
	recs, tally, err := a.batchRecords(ctx, spec)
	if err != nil {
		if w != nil {
			a.windows.put(key, w) // untouched: still ends where it ended
		}
		return contract.Decisions{}, fmt.Errorf("dedup %s: %w", spec.ID(), err)
	}
	if w == nil || w.Next() != spec.Start || a.RebuildEveryBatch {
		if w, err = a.rebuildWindow(ctx, spec, recs); err != nil {
			return contract.Decisions{}, err
		}
	}
	a.maybeSnapshot(log, spec, w, recs)
	d := contract.Decisions{Control: int(tally.Control), Aborted: int(tally.Aborted)}
	for i := range recs {
		r := &recs[i]
		d.Records++
		v, err := observe(w, r)
		if err != nil {
			return contract.Decisions{}, fmt.Errorf("dedup %s: %w", spec.ID(), err)
		}
		switch v.Decision {
		case dedup.Loaded:
			d.Loaded++
		case dedup.Invalid:
			d.Invalid++
		case dedup.Duplicate:
			d.DuplicateOffsets = append(d.DuplicateOffsets, r.Offset)
			d.DuplicateOf = append(d.DuplicateOf, v.DuplicateOf)
			d.DuplicateIdentical = append(d.DuplicateIdentical, v.Identical)
		case dedup.Conflict:
			d.ConflictOffsets = append(d.ConflictOffsets, r.Offset)
			d.ConflictOf = append(d.ConflictOf, v.DuplicateOf)
		case dedup.Late:
			d.LateOffsets = append(d.LateOffsets, r.Offset)
		}
	}
	faults.At("dedup")
	w.AdvanceTo(spec.End)
	if f, raised := w.Bound(spec.MaxWindowIDs); raised {
		a.Metrics.WindowFloorRaised(spec.Topic)
		log.Warn("dedup window at its bound: its watermark is raised, and records older than it are quarantined as late",
			zap.Int("max_window_ids", spec.MaxWindowIDs), zap.Time("floor", f.Time), zap.Int64("from_offset", f.Offset))
	}
	d.Next.Start, d.Next.Newest = w.Bounds()
	d.Next.Floors = batchFloors(w.Floors(d.Next.Start))
	a.windows.put(key, w)
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
func (a *Activities) rebuildWindow(ctx context.Context, spec contract.Spec, recs []rows.Record) (*dedup.Window, error) {
	began := time.Now()
	log := a.logger(ctx, spec)
	if !a.RebuildEveryBatch {
		w, from, replayed, err := a.windowFromSnapshot(ctx, spec, recs)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			log.Warn("dedup snapshot not used; replaying the window from the log", zap.Error(err))
		}
		if w != nil {
			a.Metrics.WindowBuilt(spec.Topic, metrics.WindowFromSnapshot)
			log.Info("dedup window loaded from its snapshot", zap.Int64("snapshot_offset", from), zap.Int("replayed", replayed),
				zap.Int("ids", w.Len()), since(began))
			return w, nil
		}
	}
	w := dedup.New(spec.AllowedLateness, spec.Window.Start, spec.Window.Newest)
	w.SetFloors(dedupFloors(spec.Window.Floors))
	if _, err := a.replay(ctx, spec, w, spec.Window.Start, nil); err != nil {
		return nil, fmt.Errorf("rebuild dedup window of %s/%d from offset %d: %w", spec.Topic, spec.Partition, spec.Window.Start, err)
	}
	w.AdvanceTo(spec.Start)
	source := metrics.WindowFromLog
	if spec.Start == spec.Window.Start {
		source = metrics.WindowEmpty
	}
	a.Metrics.WindowBuilt(spec.Topic, source)
	log.Info("dedup window rebuilt from the log", zap.Int64("from_offset", spec.Window.Start), zap.Int64("records", spec.Start-spec.Window.Start),
		zap.Int("ids", w.Len()), since(began))
	return w, nil
}

// replay observes the records of [from, spec.Start) into w, in offset
// order, and returns how many there were; vet, when set, must accept the
// first record before anything is observed.
func (a *Activities) replay(ctx context.Context, spec contract.Spec, w *dedup.Window, from int64, vet func(kafkalog.Record) error) (int, error) {
	n := 0
	_, err := a.readRange(ctx, spec.Topic, spec.Partition, from, spec.Start, func(r kafkalog.Record) error {
		if n == 0 && vet != nil {
			if err := vet(r); err != nil {
				return err
			}
		}
		n++
		rec := parse(r, spec.AllowedLateness)
		_, err := observe(w, &rec)
		return err
	})
	return n, err
}

// maybeSnapshot writes the window, still at the batch's start, when the
// partition's snapshot is due. A failure costs only a longer rebuild after
// a restart, so it is logged, not returned.
func (a *Activities) maybeSnapshot(log *zap.Logger, spec contract.Spec, w *dedup.Window, recs []rows.Record) {
	store := a.snapshotStore()
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

func observe(w *dedup.Window, r *rows.Record) (dedup.Verdict, error) {
	if r.ParseErr != nil {
		return w.ObserveInvalid(r.Offset)
	}
	return w.Observe(r.Offset, &r.Event, r.Value, payment.WatermarkTime(&r.Event, r.Time))
}

// batchFloors and dedupFloors convert a window's floor raises between the
// workflows' contract and the dedup package.
func batchFloors(fs []dedup.Floor) []contract.Floor {
	var out []contract.Floor
	for _, f := range fs {
		out = append(out, contract.Floor{Offset: f.Offset, Time: f.Time})
	}
	return out
}

func dedupFloors(fs []contract.Floor) []dedup.Floor {
	var out []dedup.Floor
	for _, f := range fs {
		out = append(out, dedup.Floor{Offset: f.Offset, Time: f.Time})
	}
	return out
}
