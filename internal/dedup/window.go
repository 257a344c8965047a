// Package dedup decides, record by record in offset order, what happens to
// each record of a partition (DESIGN §4): loaded, duplicate of an earlier
// record, late, conflicting, or invalid.
//
// The rule: W, the watermark, is the newest event_time of the partition's
// valid records so far minus the allowed lateness. A valid record is a
// duplicate when the same transaction_id has a valid, not-late record at an
// earlier offset whose event_time is at or after W; it is a conflict when
// that earlier record has another amount or currency (a client bug: which one
// is right is not ours to guess); otherwise it is late when its own
// event_time is before W, and loaded when not.
//
// A Window holds what that rule needs — per transaction_id, the offset of the
// loaded record and the newest event_time of its valid records — and forgets
// an ID once that time falls behind W, so memory is bounded by the window,
// not by the stream. It is a pure function of the log: Bounds names the
// offset and watermark a cold worker replays from to rebuild exactly the same
// Window (see Rebuild in the activities).
package dedup

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/paystream/paystream/internal/payment"
)

// Decision is what happens to one record.
type Decision uint8

const (
	Loaded    Decision = iota + 1 // a row in transactions
	Duplicate                     // a row in dedup_audit
	Late                          // ingest_errors, reason late
	Conflict                      // ingest_errors, reason conflict
	Invalid                       // ingest_errors, reason from the parser
)

func (d Decision) String() string {
	switch d {
	case Loaded:
		return "loaded"
	case Duplicate:
		return "duplicate"
	case Late:
		return "late"
	case Conflict:
		return "conflict"
	case Invalid:
		return "invalid"
	}
	return fmt.Sprintf("Decision(%d)", uint8(d))
}

// Verdict is the decision for one record.
type Verdict struct {
	Decision Decision
	// DuplicateOf is the offset of the loaded record a Duplicate or
	// Conflict repeats.
	DuplicateOf int64
	// Identical is true when a Duplicate repeats its original byte for
	// byte: a producer retry rather than a client replay.
	Identical bool
}

type entry struct {
	origOffset int64     // the loaded record
	maxAtOrig  time.Time // the partition's newest event_time just before it
	newest     time.Time // newest event_time of the ID's valid, not-late records
	amount     payment.Amount
	currency   string
	rawHash    uint64 // of the loaded record's bytes
}

// Window is one partition's dedup state. Not safe for concurrent use.
type Window struct {
	lateness  time.Duration
	next      int64     // the offset the next record must have at least
	newest    time.Time // newest event_time of any valid record so far
	entries   map[string]*entry
	sweepSize int
}

// New returns a Window that starts at offset start, having seen valid
// records up to event time newest (zero for a partition's beginning).
func New(lateness time.Duration, start int64, newest time.Time) *Window {
	return &Window{lateness: lateness, next: start, newest: newest, entries: map[string]*entry{}, sweepSize: 1024}
}

// Next is the offset the Window expects next.
func (w *Window) Next() int64 { return w.next }

// Newest is the newest event_time of the partition's valid records so far.
func (w *Window) Newest() time.Time { return w.newest }

// Watermark is Newest minus the allowed lateness; zero before any record.
func (w *Window) Watermark() time.Time {
	if w.newest.IsZero() {
		return time.Time{}
	}
	return w.newest.Add(-w.lateness)
}

// Len is the number of IDs held (live or not yet swept).
func (w *Window) Len() int { return len(w.entries) }

// ObserveInvalid records that the record at offset failed to parse.
func (w *Window) ObserveInvalid(offset int64) (Verdict, error) {
	if err := w.advance(offset); err != nil {
		return Verdict{}, err
	}
	return Verdict{Decision: Invalid}, nil
}

// Observe decides the valid event e, parsed from raw, at offset.
func (w *Window) Observe(offset int64, e *payment.Event, raw []byte) (Verdict, error) {
	if err := w.advance(offset); err != nil {
		return Verdict{}, err
	}
	wm := w.Watermark()
	var v Verdict
	ent := w.entries[e.TransactionID]
	switch {
	case ent != nil && !ent.newest.Before(wm):
		v = Verdict{Decision: Duplicate, DuplicateOf: ent.origOffset, Identical: ent.rawHash == hashOf(raw)}
		if ent.amount != e.Amount || ent.currency != e.Currency {
			v.Decision, v.Identical = Conflict, false
		}
		if e.EventTime.After(ent.newest) {
			ent.newest = e.EventTime
		}
	case !wm.IsZero() && e.EventTime.Before(wm):
		v = Verdict{Decision: Late}
	default:
		v = Verdict{Decision: Loaded}
		w.entries[e.TransactionID] = &entry{origOffset: offset, maxAtOrig: w.newest, newest: e.EventTime, amount: e.Amount, currency: e.Currency, rawHash: hashOf(raw)}
	}
	if e.EventTime.After(w.newest) {
		w.newest = e.EventTime
	}
	if len(w.entries) >= 2*w.sweepSize {
		w.sweep()
	}
	return v, nil
}

func hashOf(raw []byte) uint64 {
	h := fnv.New64a()
	h.Write(raw)
	return h.Sum64()
}

func (w *Window) advance(offset int64) error {
	if offset < w.next {
		return fmt.Errorf("dedup: offset %d observed after %d: records must come in offset order, once", offset, w.next-1)
	}
	w.next = offset + 1
	return nil
}

// AdvanceTo moves Next to end after a range whose last offsets held no
// record (transaction markers).
func (w *Window) AdvanceTo(end int64) {
	if end > w.next {
		w.next = end
	}
}

// sweep forgets IDs whose newest event_time is behind the watermark: the
// watermark never goes back, so they can never be duplicated again.
func (w *Window) sweep() {
	wm := w.Watermark()
	for id, ent := range w.entries {
		if ent.newest.Before(wm) {
			delete(w.entries, id)
		}
	}
	w.sweepSize = max(1024, len(w.entries))
}

// Bounds returns where a replay must start to rebuild this Window exactly:
// the offset of the oldest loaded record still inside the window, and the
// partition's newest event_time just before it. Every record that can still
// decide anything is at or after that offset.
func (w *Window) Bounds() (start int64, newest time.Time) {
	start, newest = w.next, w.newest
	wm := w.Watermark()
	for _, ent := range w.entries {
		if !ent.newest.Before(wm) && ent.origOffset < start {
			start, newest = ent.origOffset, ent.maxAtOrig
		}
	}
	return start, newest
}
