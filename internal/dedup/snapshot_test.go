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
		if err := warm.WriteSnapshot(&buf, uint64(at)*7, SnapshotAuth{}); err != nil {
			t.Fatal(err)
		}
		loaded, anchor, err := ReadSnapshot(bytes.NewReader(buf.Bytes()), SnapshotAuth{}, 0)
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
		if _, _, err := ReadSnapshot(bytes.NewReader(b), SnapshotAuth{}, 0); !errors.Is(err, ErrBadSnapshot) {
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
	if _, _, err := ReadSnapshot(bytes.NewReader(b), SnapshotAuth{}, 0); !errors.Is(err, ErrBadSnapshot) {
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
	if err := w.WriteSnapshot(&buf, 1, SnapshotAuth{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSignedSnapshots: a snapshot signed with the newest key reads back
// under it and under a list that has rotated a newer key in front of it;
// one changed after signing, signed with a key no longer listed, signed
// for another partition, or not signed at all where a key is configured
// is refused as not authentic, and so is a signed one where none is.
func TestSignedSnapshots(t *testing.T) {
	old, newer := []byte("an old key of thirty-two bytes.."), []byte("a newer key of thirty-two bytes.")
	auth := SnapshotAuth{Keys: [][]byte{old}, Subject: "payments/3"}
	w := New(lateness, 0, time.Time{})
	for _, r := range simulatedLog(t, 2000, 6) {
		observe(t, w, r)
	}
	var signed, unsigned bytes.Buffer
	if err := w.WriteSnapshot(&signed, 9, auth); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSnapshot(&unsigned, 9, SnapshotAuth{}); err != nil {
		t.Fatal(err)
	}
	for name, keys := range map[string][][]byte{"its key": {old}, "after a rotation": {newer, old}} {
		got, anchor, err := ReadSnapshot(bytes.NewReader(signed.Bytes()), SnapshotAuth{Keys: keys, Subject: "payments/3"}, 5000)
		if err != nil || anchor != 9 || got.Live() != w.Live() || got.Next() != w.Next() || !got.Newest().Equal(w.Newest()) {
			t.Errorf("%s: read %v, anchor %d; want the window back (%d IDs, next %d)", name, err, anchor, w.Live(), w.Next())
		}
	}
	changed := bytes.Clone(signed.Bytes())
	changed[len(changed)/2] ^= 1
	for name, c := range map[string]struct {
		file []byte
		auth SnapshotAuth
	}{
		"changed after signing":        {changed, auth},
		"signed with a retired key":    {signed.Bytes(), SnapshotAuth{Keys: [][]byte{newer}, Subject: "payments/3"}},
		"signed for another partition": {signed.Bytes(), SnapshotAuth{Keys: [][]byte{old}, Subject: "payments/4"}},
		"unsigned where a key is set":  {unsigned.Bytes(), auth},
		"signed where no key is set":   {signed.Bytes(), SnapshotAuth{}},
	} {
		if _, _, err := ReadSnapshot(bytes.NewReader(c.file), c.auth, 5000); !errors.Is(err, ErrSnapshotSignature) {
			t.Errorf("%s: err %v, want ErrSnapshotSignature", name, err)
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	*bytes.Reader
	read int
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	r.read += n
	return n, err
}

// TestSnapshotBoundedByTheWindowLimit: a snapshot holding more IDs than
// its partition's bound is refused, and a file larger than a snapshot of
// that bound can be is refused without a byte of it read.
func TestSnapshotBoundedByTheWindowLimit(t *testing.T) {
	b := snapshotOfALog(t)
	w, _, err := ReadSnapshot(bytes.NewReader(b), SnapshotAuth{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	held := w.Live()
	if _, _, err := ReadSnapshot(bytes.NewReader(b), SnapshotAuth{}, held); err != nil {
		t.Errorf("a snapshot of %d IDs under a bound of %d: %v", held, held, err)
	}
	if _, _, err := ReadSnapshot(bytes.NewReader(b), SnapshotAuth{}, held-1); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("a snapshot of %d IDs under a bound of %d: err %v, want ErrBadSnapshot", held, held-1, err)
	}
	huge := &countingReader{Reader: bytes.NewReader(make([]byte, MaxSnapshotSize(1000)+1))}
	if _, _, err := ReadSnapshot(huge, SnapshotAuth{}, 1000); !errors.Is(err, ErrBadSnapshot) || huge.read != 0 {
		t.Errorf("a file of %d bytes under a bound of 1,000 IDs: err %v after reading %d bytes; want ErrBadSnapshot unread", huge.Size(), err, huge.read)
	}
}

// TestCheckRecorded: a window is checked against the bounds its partition
// recorded at the same offset: its own bounds pass; a later start (an ID
// held from before it), a later newest time, or a lower ID bound fail.
func TestCheckRecorded(t *testing.T) {
	w := New(lateness, 0, time.Time{})
	for _, r := range simulatedLog(t, 2000, 6) {
		observe(t, w, r)
	}
	start, newest := w.Bounds()
	oldest := w.Next()
	cut := w.ns(w.Watermark())
	for i := range w.ids.tags {
		if w.live(i, cut) {
			oldest = min(oldest, w.ids.slots[i].origOffset)
		}
	}
	if err := w.CheckRecorded(start, newest, w.Live()); err != nil {
		t.Fatalf("its own bounds: %v", err)
	}
	for name, err := range map[string]error{
		"a start after its oldest ID": w.CheckRecorded(oldest+1, newest, 0),
		"a later newest time":         w.CheckRecorded(start, w.Newest().Add(time.Second), 0),
		"a lower ID bound":            w.CheckRecorded(start, newest, w.Live()-1),
	} {
		if !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: err %v, want ErrBadSnapshot", name, err)
		}
	}
}
