package rows

import (
	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
)

// Decide decides every record of a batch against the partition's dedup
// window w, which ends where the batch starts, and tallies the decisions
// the batch's history records: the offsets turned away and why, the
// counts, and the window's bounds after the batch for the next one. w
// moves to the batch's end; past spec.MaxWindowIDs it raises its floor,
// which Decide returns. Decide is a pure function of w and recs, so a
// window rebuilt on another worker decides alike.
func Decide(w *dedup.Window, spec contract.Spec, recs []Record, tally kafkalog.Tally) (contract.Decisions, *dedup.Floor, error) {
	d := contract.Decisions{Control: int(tally.Control), Aborted: int(tally.Aborted)}
	for i := range recs {
		r := &recs[i]
		d.Records++
		v, err := Observe(w, r)
		if err != nil {
			return contract.Decisions{}, nil, err
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
	w.AdvanceTo(spec.End)
	var raised *dedup.Floor
	if f, ok := w.Bound(spec.MaxWindowIDs); ok {
		raised = &f
	}
	d.Next.Start, d.Next.Newest = w.Bounds()
	d.Next.Floors = ContractFloors(w.Floors(d.Next.Start))
	return d, raised, nil
}

// Observe decides one record against w.
func Observe(w *dedup.Window, r *Record) (dedup.Verdict, error) {
	if r.ParseErr != nil {
		return w.ObserveInvalid(r.Offset)
	}
	return w.Observe(r.Offset, &r.Event, r.Value, payment.WatermarkTime(&r.Event, r.Time))
}

// ContractFloors and DedupFloors convert a window's floor raises between
// the workflows' contract and the dedup package.
func ContractFloors(fs []dedup.Floor) []contract.Floor {
	var out []contract.Floor
	for _, f := range fs {
		out = append(out, contract.Floor{Offset: f.Offset, Time: f.Time})
	}
	return out
}

func DedupFloors(fs []contract.Floor) []dedup.Floor {
	var out []dedup.Floor
	for _, f := range fs {
		out = append(out, dedup.Floor{Offset: f.Offset, Time: f.Time})
	}
	return out
}
