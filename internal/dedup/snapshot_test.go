package dedup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"runtime"
	"testing"
	"time"
)

// TestSnapshotDecidesLikeTheWarmWindow snapshots a warm Window at several
// points of a log and runs the rest of the log through the warm Window and
// through the one read back: every verdict, the bounds and the newest time
// must agree, so a restarted worker that loads a snapshot decides exactly
// what the lost one would have.
func TestSnapshotDecidesLikeTheWarmWindow(t *testing.T) {
	log := simulatedLog(t, 40000, 5)
	for _, at := range []int64{0, 1, 9000, 25000, 39999} {
		warm := New(lateness, 0, time.Time{})
		for _, r := range log[:at] {
			observe(t, warm, r)
		}
		var buf bytes.Buffer
		if err := warm.WriteSnapshot(&buf, uint64(at)*7); err != nil {
			t.Fatal(err)
		}
		loaded, anchor, err := ReadSnapshot(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("snapshot at %d: %v", at, err)
		}
		if anchor != uint64(at)*7 || loaded.Next() != warm.Next() || !loaded.Newest().Equal(warm.Newest()) || loaded.Newest().IsZero() != warm.Newest().IsZero() {
			t.Fatalf("snapshot at %d read back with anchor %d, next %d, newest %v; want %d, %d, %v",
				at, anchor, loaded.Next(), loaded.Newest(), uint64(at)*7, warm.Next(), warm.Newest())
		}
		// The rest of the log, after a client's replay of the last 500
		// records before the snapshot: duplicates of what it holds.
		var rest []rec
		for _, r := range append(append([]rec{}, log[max(0, at-500):at]...), log[at:]...) {
			rest = append(rest, rec{at + int64(len(rest)), r.value})
		}
		decided := map[Decision]int{}
		for _, r := range rest {
			want, got := observe(t, warm, r), observe(t, loaded, r)
			if got != want {
				t.Fatalf("snapshot at %d: offset %d decided %+v, the warm window %+v", at, r.offset, got, want)
			}
			decided[want.Decision]++
		}
		ws, wn := warm.Bounds()
		ls, ln := loaded.Bounds()
		if ws != ls || !wn.Equal(ln) {
			t.Errorf("snapshot at %d: bounds (%d, %v), the warm window's (%d, %v)", at, ls, ln, ws, wn)
		}
		if at == 25000 && (decided[Duplicate] < 400 || decided[Late] == 0) {
			t.Errorf("the log after %d has no duplicates or no late records (%v): the test proves little", at, decided)
		}
	}
}

func TestTornSnapshotsAreRefused(t *testing.T) {
	whole := snapshotOfALog(t)
	flipped := bytes.Clone(whole)
	flipped[len(flipped)/2] ^= 1
	for name, b := range map[string][]byte{
		"empty": nil, "cut in the header": whole[:10], "cut in the entries": whole[:len(whole)/2],
		"no checksum": whole[:len(whole)-4], "a bit flipped": flipped, "bytes after": append(bytes.Clone(whole), 0),
	} {
		if _, _, err := ReadSnapshot(bytes.NewReader(b)); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: err %v, want ErrBadSnapshot", name, err)
		}
	}
}

// TestSnapshotCountsAreNotTrusted: a snapshot whose header claims more IDs
// than its file holds, with a checksum that matches (the bit flipped
// before the checksum was taken, as a bad disk or a bug writes it), is
// refused before anything is sized from it.
func TestSnapshotCountsAreNotTrusted(t *testing.T) {
	b := snapshotOfALog(t)
	held := len(snapshotMagic) + 8*8 // the header's count of held IDs
	b[held+4] |= 0x80                // 2^39 more IDs than written
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	before := heapInUse()
	if _, _, err := ReadSnapshot(bytes.NewReader(b)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("err %v, want ErrBadSnapshot", err)
	}
	if grew := heapInUse() - before; grew > 64<<20 {
		t.Errorf("reading the bad snapshot took %d MB", grew>>20)
	}
}

func heapInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// snapshotOfALog is the snapshot of a window that observed a simulated log.
func snapshotOfALog(t *testing.T) []byte {
	t.Helper()
	w := New(lateness, 0, time.Time{})
	for _, r := range simulatedLog(t, 2000, 6) {
		observe(t, w, r)
	}
	var buf bytes.Buffer
	if err := w.WriteSnapshot(&buf, 1); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
