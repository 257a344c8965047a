package dedup

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestBoundedWarmAndColdAgree is TestWarmColdAndOracleAgree with an ID
// bound that the log passes again and again: the floors raised at batch
// ends are replayed by every rebuild, so a cold worker still decides
// every record as the warm one does, and the warm one never holds more
// than the bound past a batch end.
func TestBoundedWarmAndColdAgree(t *testing.T) {
	log := simulatedLog(t, 30000, 5)
	const bound = 5000
	warm := New(lateness, 0, time.Time{})
	rng := rand.New(rand.NewPCG(3, 4))
	raises, late := 0, 0
	for start := int64(0); start < int64(len(log)); {
		end := min(start+1+rng.Int64N(1500), int64(len(log)))
		wsStart, wsNewest := warm.Bounds()
		cold := New(lateness, wsStart, wsNewest)
		cold.SetFloors(warm.Floors(wsStart))
		for _, r := range log[wsStart:start] {
			observe(t, cold, r)
		}
		cold.AdvanceTo(start)
		if !cold.Watermark().Equal(warm.Watermark()) || cold.Live() != warm.Live() {
			t.Fatalf("batch [%d,%d): rebuilt window has watermark %v and %d IDs, warm %v and %d", start, end, cold.Watermark(), cold.Live(), warm.Watermark(), warm.Live())
		}
		for _, r := range log[start:end] {
			vw, vc := observe(t, warm, r), observe(t, cold, r)
			if vw != vc {
				t.Fatalf("offset %d: warm says %v of %d, cold (rebuilt from %d) says %v of %d", r.offset, vw.Decision, vw.DuplicateOf, wsStart, vc.Decision, vc.DuplicateOf)
			}
			if vw.Decision == Late {
				late++
			}
		}
		warm.AdvanceTo(end)
		if _, raised := warm.Bound(bound); raised {
			raises++
		}
		if n := warm.Live(); n > bound {
			t.Fatalf("after batch [%d,%d) the window holds %d IDs, above its bound %d", start, end, n, bound)
		}
		start = end
	}
	if raises < 3 {
		t.Fatalf("the floor was raised %d times: the log never pressed on the bound, so the test proves nothing", raises)
	}
	t.Logf("%d floor raises, %d late records", raises, late)
}

// TestFrozenClockStaysBounded feeds a window records whose event_time
// never advances, all distinct IDs: without a bound it would hold every
// one of them. With one, it holds at most the bound plus a batch, the
// records past the floor are late (to ingest_errors, not lost), and a
// snapshot of it carries the floor.
func TestFrozenClockStaysBounded(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const bound, batchSize, batches = 2000, 500, 40
	w := New(lateness, 0, time.Time{})
	counts := map[Decision]int{}
	maxBytes := 0
	offset := int64(0)
	for range batches {
		for range batchSize {
			v := observe(t, w, rec{offset, event(fmt.Sprintf("tx-%d", offset), t0, "1.00")})
			counts[v.Decision]++
			offset++
		}
		w.AdvanceTo(offset)
		w.Bound(bound)
		if w.Live() > bound || w.Len() > bound+batchSize {
			t.Fatalf("at offset %d the window holds %d IDs (%d live), bound %d", offset, w.Len(), w.Live(), bound)
		}
		maxBytes = max(maxBytes, w.Bytes())
	}
	if counts[Loaded] > bound+batchSize || counts[Late] != batches*batchSize-counts[Loaded] {
		t.Fatalf("decisions %v: want at most %d loaded and the rest late", counts, bound+batchSize)
	}
	// The table itself stays small: a few times the bound's slots.
	if limit := 8 * (bound + batchSize) * slotBytes; maxBytes > limit {
		t.Fatalf("the window's table grew to %d bytes, over %d", maxBytes, limit)
	}
	if !w.Watermark().After(t0) {
		t.Fatalf("watermark %v: the floor should be past the frozen time %v", w.Watermark(), t0)
	}
	var buf bytes.Buffer
	if err := w.WriteSnapshot(&buf, 7, SnapshotAuth{}); err != nil {
		t.Fatal(err)
	}
	loaded, _, err := ReadSnapshot(bytes.NewReader(buf.Bytes()), SnapshotAuth{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Watermark().Equal(w.Watermark()) {
		t.Fatalf("snapshot's watermark %v, the window's %v: the floor was not kept", loaded.Watermark(), w.Watermark())
	}
	if v := observe(t, loaded, rec{offset, event("new", t0, "1.00")}); v.Decision != Late {
		t.Fatalf("a record at the frozen time after the snapshot: %v, want late", v.Decision)
	}
}
