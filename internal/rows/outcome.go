package rows

import (
	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/payment"
)

// outcomes applies recorded Decisions to re-read records: what Dedup
// turned away is looked up by offset; everything else is loaded if it
// parses and invalid if not. Nothing here decides anew (invariant 3).
type outcomes struct {
	turnedAway map[int64]turnedAway
}

type turnedAway struct {
	decision  dedup.Decision
	of        int64
	identical bool
}

func newOutcomes(d contract.Decisions) outcomes {
	o := outcomes{turnedAway: make(map[int64]turnedAway, len(d.DuplicateOffsets)+len(d.ConflictOffsets)+len(d.LateOffsets))}
	for i, off := range d.DuplicateOffsets {
		o.turnedAway[off] = turnedAway{dedup.Duplicate, d.DuplicateOf[i], i < len(d.DuplicateIdentical) && d.DuplicateIdentical[i]}
	}
	for i, off := range d.ConflictOffsets {
		o.turnedAway[off] = turnedAway{dedup.Conflict, d.ConflictOf[i], false}
	}
	for _, off := range d.LateOffsets {
		o.turnedAway[off] = turnedAway{dedup.Late, 0, false}
	}
	return o
}

// outcome is one record with its recorded decision.
type outcome struct {
	decision  dedup.Decision
	of        int64 // offset a duplicate or conflict repeats
	identical bool
	event     *payment.Event
	parseErr  error
}

func (o outcomes) of(r *Record) outcome {
	if r.ParseErr != nil {
		return outcome{decision: dedup.Invalid, parseErr: r.ParseErr}
	}
	if t, ok := o.turnedAway[r.Offset]; ok {
		return outcome{decision: t.decision, of: t.of, identical: t.identical, event: &r.Event}
	}
	return outcome{decision: dedup.Loaded, event: &r.Event}
}

// Loaded are the events of recs that the decisions load, in offset order:
// those Enrich scores, and Build writes with those scores.
func Loaded(d contract.Decisions, recs []Record) []*payment.Event {
	o := newOutcomes(d)
	var out []*payment.Event
	for i := range recs {
		if x := o.of(&recs[i]); x.decision == dedup.Loaded {
			out = append(out, x.event)
		}
	}
	return out
}
