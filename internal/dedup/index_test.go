package dedup

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/payment"
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
		case !x.full():
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
			x.resize(slotsFor(x.n) + rng.IntN(300))
		}
		if step%25 == 0 || step%97 == 0 {
			check(step)
		}
	}
}

// TestTablesGiveTheirMemoryBack: a table's memory is outside the Go heap,
// so nothing but the table gives it back. Resizing must free the old one,
// and a dropped Window must free its own once collected.
func TestTablesGiveTheirMemoryBack(t *testing.T) {
	before := settledOffHeapBytes()
	func() {
		w := New(time.Hour, 0, time.Time{})
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range 100_000 { // grows the table a dozen times
			e := payment.Event{TransactionID: fmt.Sprint("tx-", i), EventTime: t0.Add(time.Duration(i) * time.Millisecond), Currency: "EUR"}
			if _, err := w.Observe(int64(i), &e, nil, e.EventTime); err != nil {
				t.Fatal(err)
			}
		}
		if held := OffHeapBytes() - before; offHeapSupported && held != int64(w.Bytes()) {
			t.Errorf("windows hold %d bytes off the heap; the one live window's table is %d", held, w.Bytes())
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for OffHeapBytes() != before && time.Now().Before(deadline) {
		runtime.GC() // cleanups run after the collection that finds the Window gone
		time.Sleep(10 * time.Millisecond)
	}
	if got := OffHeapBytes(); got != before {
		t.Errorf("%d bytes still held off the heap after the window was dropped", got-before)
	}
}

// settledOffHeapBytes is OffHeapBytes once earlier tests' dropped windows
// have given theirs back.
func settledOffHeapBytes() int64 {
	last := int64(-1)
	for n := OffHeapBytes(); n != last; n = OffHeapBytes() {
		last = n
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	return last
}
