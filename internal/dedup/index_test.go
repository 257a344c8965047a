package dedup

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestIndexAgreesWithAMap inserts, overwrites and removes fingerprints at
// random, in a table small enough that probe runs wrap around its end,
// and checks every few steps, and after each sweep, that it holds exactly what a Go map holds.
func TestIndexAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	x := newIndex(0)
	want := map[fingerprint]int64{}
	fpOf := func(n uint64) fingerprint {
		var fp fingerprint
		// Small tags crowd the table's first slots, large ones its last:
		// both ends of a wrapping run get exercised.
		binary.LittleEndian.PutUint64(fp[:8], []uint64{0, 1, n << 54, ^uint64(0) - n, rng.Uint64()}[n%5])
		binary.LittleEndian.PutUint64(fp[8:], n)
		return fp
	}
	check := func(step int) {
		t.Helper()
		if x.n != len(want) {
			t.Fatalf("step %d: index holds %d, map %d", step, x.n, len(want))
		}
		for fp, off := range want {
			tag, hi := split(fp)
			i, ok := x.find(tag, hi)
			if !ok || x.slots[i].origOffset != off {
				t.Fatalf("step %d: fingerprint %x: found %v at offset %d, want %d", step, fp, ok, x.slots[i].origOffset, off)
			}
		}
	}
	for step := range 20000 {
		fp := fpOf(uint64(rng.IntN(800)))
		tag, hi := split(fp)
		i, ok := x.find(tag, hi)
		switch {
		case ok && rng.IntN(2) == 0:
			x.remove(i)
			delete(want, fp)
		case ok:
			x.slots[i].origOffset = int64(step)
			want[fp] = int64(step)
		case x.n+1 <= len(x.tags)*4/5:
			x.put(i, tag, slot{fpHi: hi, origOffset: int64(step)})
			want[fp] = int64(step)
		}
		if step%97 == 0 {
			// Sweep a random third in place, as Window.makeRoom does.
			cut := int64(rng.IntN(step + 1))
			oldest, any := x.removeIf(func(s *slot) bool { return s.origOffset < cut && s.origOffset%3 == 0 })
			wantOldest, wantAny := int64(0), false
			for fp, off := range want {
				if off < cut && off%3 == 0 {
					delete(want, fp)
				} else if !wantAny || off < wantOldest {
					wantOldest, wantAny = off, true
				}
			}
			if any != wantAny || oldest != wantOldest {
				t.Fatalf("step %d: sweep says oldest kept %d (%v), want %d (%v)", step, oldest, any, wantOldest, wantAny)
			}
		}
		if step%1000 == 0 {
			x = x.resized(x.n*5/3 + rng.IntN(300))
		}
		if step%25 == 0 || step%97 == 0 {
			check(step)
		}
	}
}
