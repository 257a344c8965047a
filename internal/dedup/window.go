// Package dedup decides, record by record in offset order, what happens to
// each record of a partition (docs/design.md §4): loaded, duplicate of an earlier
// record, late, conflicting, or invalid.
//
// The rule: W, the watermark, is the newest event_time of the partition's
// valid records so far minus the allowed lateness, where a record counts
// with its event_time capped by its Kafka timestamp (payment.WatermarkTime),
// so no record stamped ahead can make honest ones late. A valid record is a
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
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
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

// fingerprint is the first 16 bytes of an ID's SHA-256: the index holds
// it instead of the ID, whose string would cost more than the rest of an
// entry together. Two different IDs share one with probability 2^-128;
// with three million IDs held that is about 10^-26 per window, far below
// the rate of undetected hardware errors. A collision-resistant hash keeps
// a producer from crafting an ID that shadows another payment's.
type fingerprint [16]byte

func fingerprintOf(id string) fingerprint {
	sum := sha256.Sum256([]byte(id))
	return fingerprint(sum[:16])
}

// contentOf hashes what makes a repeat a conflict when it differs. A
// conflict taken for a plain duplicate (a 2^-32 chance) still loads
// nothing twice: the repeat is kept out of transactions either way, and
// is only filed under dedup_audit rather than ingest_errors.
func contentOf(e *payment.Event) uint32 {
	h := fnv.New32a()
	var b [9]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(e.Amount.Minor))
	b[8] = byte(e.Amount.Scale)
	h.Write(b[:])
	h.Write([]byte(e.Currency))
	return h.Sum32()
}

// MaxLateness is the longest allowed lateness a Window takes. It keeps the
// times it holds as int64 nanoseconds from a base second, which it moves
// when a time drifts 100 years from it; every time it holds lies within the
// lateness of the newest, so each fits.
const MaxLateness = 100 * 365 * 24 * time.Hour

// DefaultMaxIDs is the default bound of a partition's window: above any
// partition's honest window (10 minutes at 5,000 events/s is 3,000,000)
// and about 300 MB of table.
const DefaultMaxIDs = 5_000_000

// rebaseAfter is how far, in seconds, a held time may lie from the base;
// 292 years is the int64 limit.
const rebaseAfter = int64(MaxLateness / time.Second)

// checkpointEvery is how many offsets apart the Window notes the partition's
// newest event_time, so Bounds can name where a replay starts without each
// entry carrying it.
const checkpointEvery = 1024

// checkpoint is the partition's newest event_time just before offset.
type checkpoint struct {
	offset int64
	newest time.Time
}

// Floor is a raise of the watermark's floor: from Offset on, the watermark
// is at least Time. Bound raises it when a window holds more IDs than its
// partition allows, so that memory stays bounded when event times stop
// advancing (a producer's frozen clock): IDs older than the floor are
// forgotten and records older than it are late, as with any watermark. A
// rebuild replays the same raises at the same offsets (SetFloors), so a
// cold worker still decides as a warm one does.
type Floor struct {
	Offset int64
	Time   time.Time
}

// Window is one partition's dedup state. Not safe for concurrent use.
type Window struct {
	lateness    time.Duration
	next        int64     // the offset the next record must have at least
	newest      time.Time // newest event_time of any valid record so far
	base        int64     // the second held times are counted from
	ids         *index
	checkpoints []checkpoint // in offset order; the first is at or before every held ID's offset
	// floors are the watermark floor's raises in offset order, the first
	// applied floors in effect; the rest wait for their offset (a replay).
	floors  []Floor
	applied int
	// handed is what Bounds last returned: with the lateness and floors,
	// the parameters a rebuild of this window starts from (SameAs).
	handed checkpoint
}

// New returns a Window that starts at offset start, having seen valid
// records up to event time newest (zero for a partition's beginning).
// lateness must be in (0, MaxLateness]; the configuration checks it.
func New(lateness time.Duration, start int64, newest time.Time) *Window {
	if lateness <= 0 || lateness > MaxLateness {
		panic(fmt.Sprintf("dedup: allowed lateness %v outside (0, %v]", lateness, MaxLateness))
	}
	return &Window{lateness: lateness, next: start, newest: newest, base: newest.Unix(), ids: newIndex(0),
		checkpoints: []checkpoint{{start, newest}}}
}

// Lateness is the allowed lateness the Window decides with.
func (w *Window) Lateness() time.Duration { return w.lateness }

// Next is the offset the Window expects next.
func (w *Window) Next() int64 { return w.next }

// Newest is the newest event_time of the partition's valid records so far.
func (w *Window) Newest() time.Time { return w.newest }

// Watermark is Newest minus the allowed lateness, or the floor when that
// is later; zero before any record.
func (w *Window) Watermark() time.Time { return w.watermarkOf(w.newest) }

// watermarkOf is the watermark when the newest event_time is newest.
func (w *Window) watermarkOf(newest time.Time) time.Time {
	wm := watermark(newest, w.lateness)
	if f := w.floor(); f.After(wm) {
		return f
	}
	return wm
}

// floor is the floor in effect (zero for none).
func (w *Window) floor() time.Time {
	if w.applied == 0 {
		return time.Time{}
	}
	return w.floors[w.applied-1].Time
}

func watermark(newest time.Time, lateness time.Duration) time.Time {
	if newest.IsZero() {
		return time.Time{}
	}
	return newest.Add(-lateness)
}

// Len is the number of IDs held (live or not yet swept).
func (w *Window) Len() int { return w.ids.n }

// Bytes is the memory the Window's table of IDs takes.
func (w *Window) Bytes() int { return w.ids.bytes() }

// ObserveInvalid records that the record at offset failed to parse.
func (w *Window) ObserveInvalid(offset int64) (Verdict, error) {
	if err := w.advance(offset); err != nil {
		return Verdict{}, err
	}
	return Verdict{Decision: Invalid}, nil
}

// Observe decides the valid event e, parsed from raw, at offset. moves is
// how far the record may move the partition's newest event time
// (payment.WatermarkTime: its event_time, capped by its Kafka timestamp).
func (w *Window) Observe(offset int64, e *payment.Event, raw []byte, moves time.Time) (Verdict, error) {
	if err := w.advance(offset); err != nil {
		return Verdict{}, err
	}
	wm := w.Watermark()
	newest := w.newest
	if moves.After(newest) {
		newest = moves
	}
	tag, hi := split(fingerprintOf(e.TransactionID))
	i, held := w.ids.find(tag, hi)
	var v Verdict
	switch {
	case held && w.ids.slots[i].newest >= w.ns(wm):
		s := w.ids.slots[i]
		v = Verdict{Decision: Duplicate, DuplicateOf: s.origOffset, Identical: s.rawHash == hashOf(raw)}
		if s.content != contentOf(e) {
			v.Decision, v.Identical = Conflict, false
		}
		if w.ns(e.EventTime) > s.newest {
			w.hold(tag, s, e.EventTime, newest)
		}
	case !wm.IsZero() && e.EventTime.Before(wm):
		v = Verdict{Decision: Late}
	default:
		v = Verdict{Decision: Loaded}
		w.hold(tag, slot{fpHi: hi, origOffset: offset, content: contentOf(e), rawHash: hashOf(raw)}, e.EventTime, newest)
	}
	w.newest = newest
	return v, nil
}

// hold puts s, with newest time at, under the fingerprint whose tag is
// given, in place of what it held. newest is the partition's newest
// event_time once this record is decided; at is within the lateness of it.
func (w *Window) hold(tag uint64, s slot, at, newest time.Time) {
	if d := at.Unix() - w.base; d > rebaseAfter || d < -rebaseAfter {
		w.rebase(at.Unix(), newest, s.origOffset)
	}
	i, held := w.ids.find(tag, s.fpHi)
	if !held && w.ids.full() {
		w.makeRoom(newest, s.origOffset)
		i, _ = w.ids.find(tag, s.fpHi)
	}
	s.newest = w.ns(at)
	if held {
		w.ids.slots[i] = s
	} else {
		w.ids.put(i, tag, s)
	}
}

// ns is t in nanoseconds after the base, saturated for a t outside int64
// nanoseconds of it: a held time never is, so comparisons stay exact.
func (w *Window) ns(t time.Time) int64 {
	const limit = 9e9 // seconds; 9e18 ns
	switch d := t.Unix() - w.base; {
	case d > limit:
		return math.MaxInt64
	case d < -limit:
		return math.MinInt64
	default:
		return d*1e9 + int64(t.Nanosecond())
	}
}

// rebase counts held times from base instead, after forgetting the IDs that
// fall behind the watermark of newest. Every ID kept is within the lateness
// of newest, and so of base, which is the second of a time in that range.
// holding is the offset of the ID about to be held.
func (w *Window) rebase(base int64, newest time.Time, holding int64) {
	w.forgetBehind(newest, holding)
	// The kept times are within MaxLateness of both bases, so the shift
	// is at most twice that: no overflow.
	shift := (w.base - base) * 1e9
	for i, tag := range w.ids.tags {
		if tag != 0 {
			w.ids.slots[i].newest += shift
		}
	}
	w.base = base
}

// makeRoom sweeps a full table, then resizes it if what it still holds
// does not fit it (see index.misfit).
func (w *Window) makeRoom(newest time.Time, holding int64) {
	w.forgetBehind(newest, holding)
	if w.ids.misfit() {
		w.ids.resize(slotsFor(w.ids.n))
	}
}

// forgetBehind forgets IDs whose newest event_time is behind the watermark
// of newest: the watermark never goes back, so they can never be
// duplicated again. The checkpoints kept cover them and holding, the
// offset of an ID about to be held, which may be out of the table: a
// duplicate that keeps an old ID in the window after its time fell behind.
func (w *Window) forgetBehind(newest time.Time, holding int64) {
	cut := w.ns(w.watermarkOf(newest))
	oldest, any := w.ids.removeIf(func(s *slot) bool { return s.newest < cut })
	if !any || holding < oldest {
		oldest = holding
	}
	w.dropCheckpointsBefore(oldest)
}

func hashOf(raw []byte) uint32 {
	h := fnv.New32a()
	h.Write(raw)
	return h.Sum32()
}

func (w *Window) advance(offset int64) error {
	if offset < w.next {
		return fmt.Errorf("dedup: offset %d observed after %d: records must come in offset order, once", offset, w.next-1)
	}
	if last := w.checkpoints[len(w.checkpoints)-1]; offset >= last.offset+checkpointEvery {
		w.checkpoints = append(w.checkpoints, checkpoint{offset, w.newest})
	}
	w.applyFloors(offset)
	w.next = offset + 1
	return nil
}

// AdvanceTo moves Next to end after a range whose last offsets held no
// record (transaction markers).
func (w *Window) AdvanceTo(end int64) {
	w.applyFloors(end)
	if end > w.next {
		w.next = end
	}
}

// applyFloors puts in effect the floors raised at or before offset.
func (w *Window) applyFloors(offset int64) {
	raised := false
	for w.applied < len(w.floors) && w.floors[w.applied].Offset <= offset {
		w.applied++
		raised = true
	}
	if raised {
		w.forgetBehind(w.newest, offset)
	}
}

// SetFloors gives a window about to replay the log the floors its
// partition raised from where the replay starts (Floors of the window
// that is being rebuilt).
func (w *Window) SetFloors(floors []Floor) {
	w.floors, w.applied = slices.Clone(floors), 0
	w.applyFloors(w.next)
}

// FollowFloors gives a window loaded from a snapshot the floors its
// partition raised after it, to replay; it fails when the floor in effect
// differs from the partition's there (a snapshot of another history).
func (w *Window) FollowFloors(floors []Floor) error {
	var want time.Time
	for _, f := range floors {
		if f.Offset <= w.next {
			want = f.Time
		}
	}
	if !want.Equal(w.floor()) {
		return fmt.Errorf("dedup: the window's floor at offset %d is %v, its partition's %v", w.next, w.floor(), want)
	}
	for _, f := range floors {
		if f.Offset > w.next {
			w.floors = append(w.floors, f)
		}
	}
	return nil
}

// Floors returns the floor raises a rebuild from start (Bounds) replays:
// the one in effect at start, then those after it.
func (w *Window) Floors(start int64) []Floor {
	first := 0
	for first+1 < w.applied && w.floors[first+1].Offset <= start {
		first++
	}
	w.floors, w.applied = w.floors[first:], w.applied-first
	return slices.Clone(w.floors)
}

// Live counts the IDs inside the window: those a duplicate can still
// match. Unlike Len it is the same on a warm window and a rebuilt one.
func (w *Window) Live() int {
	cut := w.ns(w.Watermark())
	n := 0
	for i := range w.ids.tags {
		if w.live(i, cut) {
			n++
		}
	}
	return n
}

// live tells whether slot i holds an ID inside the window, cut being the
// watermark in held-time units (w.ns): one not yet swept may be behind it.
func (w *Window) live(i int, cut int64) bool {
	return w.ids.tags[i] != 0 && w.ids.slots[i].newest >= cut
}

// Bound keeps the window to at most max live IDs (0: no bound): past it,
// it raises the floor at Next so that the newest 90 % of max stay, and
// returns the raise. IDs that share one event time stay or go together,
// so a stream whose clock stopped keeps none. Call it between batches,
// where Next is a batch boundary, as a rebuild replays it there.
func (w *Window) Bound(max int) (Floor, bool) {
	if max <= 0 {
		return Floor{}, false
	}
	cut := w.ns(w.Watermark())
	var times []int64
	for i := range w.ids.tags {
		if w.live(i, cut) {
			times = append(times, w.ids.slots[i].newest)
		}
	}
	if len(times) <= max {
		return Floor{}, false
	}
	keep := max - max/10
	slices.SortFunc(times, func(a, b int64) int { return cmp.Compare(b, a) })
	// Everything at or behind the first time not kept goes.
	f := Floor{Offset: w.next, Time: time.Unix(w.base, times[keep]+1).UTC()}
	w.floors = append(w.floors[:w.applied], f)
	w.applied++
	w.makeRoom(w.newest, w.next) // forget what is behind it, and shrink the table
	return f, true
}

// Bounds returns where a replay must start to rebuild this Window exactly:
// an offset at or before the oldest loaded record still inside the window,
// and the partition's newest event_time just before it.
//
// Starting earlier than that oldest record rebuilds the same Window: a
// replay decides each record by the same watermark as the original run,
// since that depends on the event times alone, and the newest time it
// holds for an ID is never later than the original's, since it saw fewer
// of that ID's records. An ID the original loaded after the start, and
// holds now, was out of the original's window when it was loaded, so it
// was out of the replay's too: the replay loads it at the same offset, and
// from there on holds the same time for it. IDs the original no longer
// holds are behind the watermark in the replay as well.
func (w *Window) Bounds() (start int64, newest time.Time) {
	cut := w.ns(w.Watermark())
	start, any := int64(0), false
	for i := range w.ids.tags {
		if s := &w.ids.slots[i]; w.live(i, cut) && (!any || s.origOffset < start) {
			start, any = s.origOffset, true
		}
	}
	if !any {
		w.handed = checkpoint{w.next, w.newest}
		return w.next, w.newest
	}
	w.dropCheckpointsBefore(start)
	w.handed = w.checkpoints[0]
	return w.checkpoints[0].offset, w.checkpoints[0].newest
}

// SameAs tells whether this window is the one a replay from start, with
// the partition's newest event time newest, the floors given and the
// allowed lateness, rebuilds: its lateness, its floors and the bounds it
// last handed on (Bounds, then Floors) are those. A window kept between
// batches may decide the next batch only then, since a batch's decisions
// must not depend on whether its worker kept the window.
func (w *Window) SameAs(lateness time.Duration, start int64, newest time.Time, floors []Floor) bool {
	if w.lateness != lateness || w.handed.offset != start || !w.handed.newest.Equal(newest) ||
		w.applied != len(w.floors) || len(w.floors) != len(floors) {
		return false
	}
	for i, f := range floors {
		if w.floors[i].Offset != f.Offset || !w.floors[i].Time.Equal(f.Time) {
			return false
		}
	}
	return true
}

// dropCheckpointsBefore keeps the last checkpoint at or before offset and
// those after it: the oldest held ID's offset never goes back.
func (w *Window) dropCheckpointsBefore(offset int64) {
	keep := 0
	for keep+1 < len(w.checkpoints) && w.checkpoints[keep+1].offset <= offset {
		keep++
	}
	w.checkpoints = w.checkpoints[keep:]
}
