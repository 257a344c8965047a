package dedup

import (
	"encoding/binary"
	"math/bits"
	"runtime"
	"unsafe"
)

// index is the Window's table of held IDs: open addressing with linear
// probing over two flat, pointer-free arrays. It replaces a Go map, whose
// 64-byte slots cost 97 bytes per held ID; here a slot is 40 bytes, and
// after each sweep the IDs still held fill 70 to 75 % of the table: 53 to
// 57 bytes per held ID.
// At 5,000 events/s a 10-minute window holds three million IDs, so that
// is the difference between a 300 MB worker and one of half again more.
//
// Probes scan tags, eight to a cache line, and read a slot only when its
// tag matches. Deleting shifts the rest of the probe run back (Knuth's
// algorithm R) instead of leaving tombstones, so a table swept in place
// never fills up with them.
type index struct {
	tags  []uint64 // fingerprint bytes 0..8; 0 marks an empty slot
	slots []slot
	n     int      // slots in use
	mem   *mapping // the memory tags and slots are in
}

// slot is one held ID: the rest of its fingerprint and its entry.
type slot struct {
	fpHi       uint64 // fingerprint bytes 8..16
	origOffset int64  // the loaded record
	newest     int64  // newest event_time of the ID's valid, not-late records, in ns after the Window's base
	content    uint32 // contentOf the loaded record
	rawHash    uint32 // of the loaded record's bytes
}

const (
	minIndexSlots = 1024
	slotBytes     = 8 + int(unsafe.Sizeof(slot{})) // a tag and a slot
)

// newIndex returns an empty table of at least capacity slots. Its memory
// is outside the Go heap where the system allows (see mapping), and is
// given back when the table is resized or no longer reachable.
func newIndex(capacity int) *index {
	capacity = max(capacity, minIndexSlots)
	m := allocate(capacity * slotBytes)
	x := &index{
		tags:  unsafe.Slice((*uint64)(unsafe.Pointer(&m.b[0])), capacity),
		slots: unsafe.Slice((*slot)(unsafe.Pointer(&m.b[capacity*8])), capacity),
		mem:   m,
	}
	runtime.AddCleanup(x, (*mapping).free, m)
	return x
}

// Sizing. A table is swept when an insert would fill it past 85 %; it is
// then resized, to 70 % full, if what it still holds fills more than 75 %
// or less than a sixteenth of it. Fuller tables probe longer: at 85 %, a
// new ID scans about 23 tags (three cache lines) before it finds an empty
// one. A partition whose traffic fell for good gives its memory back, but
// a sweep after a burst does not shrink a table that must grow again:
// shrinking below a quarter made BenchmarkWindowObserve, whose event
// time leaps an hour every 65,536 records, 1,908 ns a record; below a
// sixteenth, 1,042.

// full tells whether one more ID would take x past 85 %.
func (x *index) full() bool { return (x.n+1)*20 > len(x.tags)*17 }

// misfit tells whether a swept x should be resized.
func (x *index) misfit() bool {
	size := len(x.tags)
	return x.n*4 > size*3 || (x.n*16 < size && size > minIndexSlots)
}

// slotsFor is the size of a table that n IDs fill to 70 %.
func slotsFor(n int) int { return n * 10 / 7 }

// split is a fingerprint's tag and its second half. A tag of 0 would read
// as empty, so it becomes 1: two IDs confused by that alone differ only in
// a first half of 0 or 1, a 2^-127 chance.
func split(fp fingerprint) (tag, hi uint64) {
	tag, hi = binary.LittleEndian.Uint64(fp[:8]), binary.LittleEndian.Uint64(fp[8:])
	return max(tag, 1), hi
}

// home is where a tag's probe run starts: the tag scaled onto the table,
// which works for any size, not only powers of two.
func (x *index) home(tag uint64) int {
	h, _ := bits.Mul64(tag, uint64(len(x.tags)))
	return int(h)
}

// find returns the slot holding the fingerprint, or the empty slot where it
// would go.
func (x *index) find(tag, hi uint64) (i int, found bool) {
	i = x.home(tag)
	for {
		switch t := x.tags[i]; {
		case t == 0:
			return i, false
		case t == tag && x.slots[i].fpHi == hi:
			return i, true
		}
		if i++; i == len(x.tags) {
			i = 0
		}
	}
}

// put fills the empty slot i that find returned. The caller keeps the
// table below full (see Window.makeRoom).
func (x *index) put(i int, tag uint64, s slot) {
	x.tags[i], x.slots[i] = tag, s
	x.n++
}

// remove empties slot i and moves back any later slot of the same run
// whose home is not between the hole and it, so every held ID stays
// reachable from its home without crossing an empty slot.
func (x *index) remove(i int) {
	size := len(x.tags)
	hole := i
	for j := next(hole, size); x.tags[j] != 0; j = next(j, size) {
		h := x.home(x.tags[j])
		// j may move into the hole unless its home lies cyclically in
		// (hole, j]: it would then sit before its home.
		if (hole < j && (h <= hole || h > j)) || (hole > j && h <= hole && h > j) {
			x.tags[hole], x.slots[hole] = x.tags[j], x.slots[j]
			hole = j
		}
	}
	x.tags[hole], x.slots[hole] = 0, slot{}
	x.n--
}

func next(i, size int) int {
	if i++; i == size {
		return 0
	}
	return i
}

// removeIf removes every slot for which drop is true, in place, and
// returns the smallest origOffset among those kept (and whether any is).
func (x *index) removeIf(drop func(*slot) bool) (minOffset int64, any bool) {
	size := len(x.tags)
	// Start just after an empty slot: no probe run crosses one, so a
	// slot moved back by remove never leaves the part not yet scanned
	// for the part already scanned, and each one is looked at.
	empty := 0
	for x.tags[empty] != 0 {
		empty++ // the table is never full, so this ends
	}
	for k, i := 0, next(empty, size); k < size; {
		switch {
		case x.tags[i] == 0:
		case drop(&x.slots[i]):
			x.remove(i)
			continue // i now holds the next slot of its run, or is empty
		case !any || x.slots[i].origOffset < minOffset:
			minOffset, any = x.slots[i].origOffset, true
		}
		k++
		i = next(i, size)
	}
	return minOffset, any
}

// resize moves x's slots to a table of the given size, in place, and
// gives back the old table's memory.
func (x *index) resize(capacity int) {
	y := newIndex(capacity)
	for i, tag := range x.tags {
		if tag != 0 {
			j, _ := y.find(tag, x.slots[i].fpHi)
			y.put(j, tag, x.slots[i])
		}
	}
	x.mem.free()
	x.tags, x.slots, x.n = y.tags, y.slots, y.n
	x.mem.b, y.mem.b = y.mem.b, nil // y's cleanup now frees nothing
}

// bytes is the memory the table takes.
func (x *index) bytes() int { return len(x.tags) * slotBytes }
