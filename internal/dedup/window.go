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
	"crypto/sha256"
	"encoding/binary"
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

// The index holds, per transaction_id, a 48-byte entry under a 16-byte
// fingerprint, and nothing the garbage collector has to scan: at 5,000
// events/s a 10-minute lateness window holds three million IDs, and the
// IDs themselves, as strings in a map, cost more than the rest together.
//
// fingerprint is the first 16 bytes of an ID's SHA-256. Two different IDs
// share one with probability 2^-128; with three million IDs held that is
// about 10^-26 per window, far below the rate of undetected hardware
// errors. A collision-resistant hash keeps a producer from crafting an ID
// that shadows another payment's.
type fingerprint [16]byte

func fingerprintOf(id string) fingerprint {
	sum := sha256.Sum256([]byte(id))
	return fingerprint(sum[:16])
}

// instant is a time as seconds and nanoseconds since the Unix epoch:
// event times span years 1 to 9999, beyond what int64 nanoseconds hold.
type instant struct {
	sec  int64
	nsec int32
}

func instantOf(t time.Time) instant { return instant{t.Unix(), int32(t.Nanosecond())} }

func (i instant) before(j instant) bool {
	return i.sec < j.sec || i.sec == j.sec && i.nsec < j.nsec
}

func (i instant) time() time.Time { return time.Unix(i.sec, int64(i.nsec)).UTC() }

// entry is one held ID. Its times are split so the struct packs into 48
// bytes (two instants would pad to 64).
type entry struct {
	origOffset int64  // the loaded record
	maxAtSec   int64  // the partition's newest event_time just before it
	newestSec  int64  // newest event_time of the ID's valid, not-late records
	content    uint64 // hash of the loaded record's amount and currency
	rawHash    uint64 // of the loaded record's bytes
	maxAtNsec  int32
	newestNsec int32
}

func (e *entry) newest() instant    { return instant{e.newestSec, e.newestNsec} }
func (e *entry) maxAtOrig() instant { return instant{e.maxAtSec, e.maxAtNsec} }

// contentOf hashes what makes a repeat a conflict when it differs. A
// conflict taken for a plain duplicate (a 2^-64 chance) still loads
// nothing twice: both are kept out of transactions.
func contentOf(e *payment.Event) uint64 {
	h := fnv.New64a()
	var b [9]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(e.Amount.Minor))
	b[8] = byte(e.Amount.Scale)
	h.Write(b[:])
	h.Write([]byte(e.Currency))
	return h.Sum64()
}

// Window is one partition's dedup state. Not safe for concurrent use.
type Window struct {
	lateness  time.Duration
	next      int64     // the offset the next record must have at least
	newest    time.Time // newest event_time of any valid record so far
	entries   map[fingerprint]entry
	sweepSize int
}

// New returns a Window that starts at offset start, having seen valid
// records up to event time newest (zero for a partition's beginning).
func New(lateness time.Duration, start int64, newest time.Time) *Window {
	return &Window{lateness: lateness, next: start, newest: newest, entries: map[fingerprint]entry{}, sweepSize: 1024}
}

// Lateness is the allowed lateness the Window decides with.
func (w *Window) Lateness() time.Duration { return w.lateness }

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
	at := instantOf(e.EventTime)
	var v Verdict
	fp := fingerprintOf(e.TransactionID)
	ent, held := w.entries[fp]
	switch {
	case held && !ent.newest().before(instantOf(wm)):
		v = Verdict{Decision: Duplicate, DuplicateOf: ent.origOffset, Identical: ent.rawHash == hashOf(raw)}
		if ent.content != contentOf(e) {
			v.Decision, v.Identical = Conflict, false
		}
		if ent.newest().before(at) {
			ent.newestSec, ent.newestNsec = at.sec, at.nsec
			w.entries[fp] = ent
		}
	case !wm.IsZero() && e.EventTime.Before(wm):
		v = Verdict{Decision: Late}
	default:
		v = Verdict{Decision: Loaded}
		maxAt := instantOf(w.newest)
		w.entries[fp] = entry{origOffset: offset, maxAtSec: maxAt.sec, maxAtNsec: maxAt.nsec, newestSec: at.sec, newestNsec: at.nsec,
			content: contentOf(e), rawHash: hashOf(raw)}
	}
	if e.EventTime.After(w.newest) {
		w.newest = e.EventTime
	}
	// Sweeping at an eighth over the last live count keeps the map near
	// the live window: Go maps never shrink, so a peak stays paid for.
	if len(w.entries) >= w.sweepSize+w.sweepSize/8 {
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
	wm := instantOf(w.Watermark())
	for fp, ent := range w.entries {
		if ent.newest().before(wm) {
			delete(w.entries, fp)
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
	wm := instantOf(w.Watermark())
	for _, ent := range w.entries {
		if !ent.newest().before(wm) && ent.origOffset < start {
			start, newest = ent.origOffset, ent.maxAtOrig().time()
		}
	}
	return start, newest
}
