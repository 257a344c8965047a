package dedup

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"
)

// A snapshot is a Window written out so a restarted worker can load it
// instead of replaying the whole lateness window from Kafka (750,000
// records a partition at 5,000 events/s). Its layout, little-endian, in
// 8-byte words unless said:
//
//	magic, lateness, next, has newest, newest (sec, nsec), anchor, base, checkpoints, held IDs, floors
//	per checkpoint: offset, has newest, newest (sec, nsec)
//	per floor (all in effect): offset, 1, time (sec, nsec)
//	per held ID: tag, fingerprint's second half, offset, newest (ns after base), content and raw hashes (4 bytes each)
//	the seal of all of the above
//
// The seal is an HMAC-SHA256 under the worker's snapshot key, taken over
// the snapshot's subject (its topic and partition) and the bytes above,
// with magic "PSDW4\n"; without a key it is a CRC-32C, magic "PSDW3\n",
// which catches a torn or flipped file but not one written on purpose.
//
// The anchor is the caller's: something that ties the snapshot to the log it
// came from (the activities hash the record at Next). Only IDs still inside
// the window are written.
const (
	snapshotMagic       = "PSDW3\n"
	signedSnapshotMagic = "PSDW4\n"
)

const (
	snapshotHeadWords  = 10
	snapshotHeadSize   = len(snapshotMagic) + snapshotHeadWords*8
	snapshotCheckpoint = 4 * 8
	snapshotEntrySize  = 4*8 + 2*4
	// snapshotSpareMarks is how many checkpoints and floors a snapshot
	// may hold beyond one per ID: a checkpoint is taken every 1,024
	// offsets, so this lets a window span 1,024 times its ID bound in
	// offsets (invalid records, duplicates) before a snapshot of it is
	// refused as too large, and rebuilt from the log instead.
	snapshotSpareMarks = 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadSnapshot is returned for a snapshot that is torn, corrupt, too
// large, not one, or not signed with a configured key: the caller replays
// the log instead.
var ErrBadSnapshot = errors.New("not a whole dedup snapshot")

// ErrSnapshotSignature is the ErrBadSnapshot of a snapshot whose seal is
// not an HMAC under any configured key: written without the key, with a
// retired one, for another partition, or changed since.
var ErrSnapshotSignature = fmt.Errorf("%w: not signed with a configured snapshot key", ErrBadSnapshot)

// SnapshotAuth is how snapshots are sealed and checked.
type SnapshotAuth struct {
	// Keys are HMAC-SHA256 keys, the newest first: a snapshot is signed
	// with Keys[0] and accepted under any of them, so a key can be
	// rotated in (first) while snapshots signed with the old one (kept
	// second) are still read. None: a CRC-32C only (the local stack).
	Keys [][]byte
	// Subject names what the snapshot is of (its topic and partition).
	// It is signed, so a signed snapshot copied to another partition's
	// name is refused.
	Subject string
}

func (a SnapshotAuth) magic() string {
	if len(a.Keys) > 0 {
		return signedSnapshotMagic
	}
	return snapshotMagic
}

// sealSize is the size of the seal at the snapshot's end.
func (a SnapshotAuth) sealSize() int {
	if len(a.Keys) > 0 {
		return sha256.Size
	}
	return 4
}

// sealer returns a hash that seals a snapshot with key i (ignored
// without keys), its subject already written to it.
func (a SnapshotAuth) sealer(i int) hash.Hash {
	if len(a.Keys) == 0 {
		return crc32.New(castagnoli)
	}
	h := hmac.New(sha256.New, a.Keys[i])
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(a.Subject)))
	h.Write(n[:])
	h.Write([]byte(a.Subject))
	return h
}

// sealOf is the seal a sealer's hash makes: the CRC little-endian, as
// the unsigned format always had it, or the HMAC.
func sealOf(h hash.Hash) []byte {
	if c, ok := h.(hash.Hash32); ok {
		return binary.LittleEndian.AppendUint32(nil, c.Sum32())
	}
	return h.Sum(nil)
}

// MaxSnapshotSize is the largest snapshot of a window of at most maxIDs
// IDs: a file larger than that is refused before it is read.
func MaxSnapshotSize(maxIDs int) int64 {
	return int64(snapshotHeadSize) + int64(maxIDs+snapshotSpareMarks)*snapshotCheckpoint + int64(maxIDs)*snapshotEntrySize + sha256.Size
}

// WriteSnapshot writes w with anchor to out, sealed as auth says.
func (w *Window) WriteSnapshot(out io.Writer, anchor uint64, auth SnapshotAuth) error {
	seal := auth.sealer(0)
	bw := bufio.NewWriterSize(io.MultiWriter(out, seal), 1<<20)
	cut := w.ns(w.Watermark())
	held := w.Live()
	var head [snapshotHeadSize]byte
	copy(head[:], auth.magic())
	putWords(head[len(snapshotMagic):], uint64(w.lateness), uint64(w.next))
	putTime(head[len(snapshotMagic)+16:], w.newest)
	floors := w.floors[:w.applied]
	putWords(head[len(snapshotMagic)+40:], anchor, uint64(w.base), uint64(len(w.checkpoints)), uint64(held), uint64(len(floors)))
	bw.Write(head[:])
	for _, c := range w.checkpoints {
		var rec [snapshotCheckpoint]byte
		putWords(rec[:], uint64(c.offset))
		putTime(rec[8:], c.newest)
		bw.Write(rec[:])
	}
	for _, f := range floors {
		var rec [snapshotCheckpoint]byte
		putWords(rec[:], uint64(f.Offset))
		putTime(rec[8:], f.Time)
		bw.Write(rec[:])
	}
	var rec [snapshotEntrySize]byte
	for i, tag := range w.ids.tags {
		if !w.live(i, cut) {
			continue // forgotten at the next sweep anyway
		}
		s := &w.ids.slots[i]
		putWords(rec[:], tag, s.fpHi, uint64(s.origOffset), uint64(s.newest))
		binary.LittleEndian.PutUint32(rec[32:], s.content)
		binary.LittleEndian.PutUint32(rec[36:], s.rawHash)
		bw.Write(rec[:])
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write dedup snapshot: %w", err)
	}
	if _, err := out.Write(sealOf(seal)); err != nil {
		return fmt.Errorf("write dedup snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot reads a Window written by WriteSnapshot and its anchor.
// Nothing in the file is trusted before its seal matches under auth and
// its header's counts add up to its size: a flipped bit in a count once
// made the reader size a table of 2^40 IDs, and the worker ran out of
// memory on every start. maxIDs (0: no bound) is the most IDs the
// snapshot's window may hold, its partition's --max-window-ids: a file
// larger than such a window's snapshot is refused unread.
func ReadSnapshot(in io.ReadSeeker, auth SnapshotAuth, maxIDs int) (*Window, uint64, error) {
	size, key, err := checkSnapshot(in, auth, maxIDs)
	if err != nil {
		return nil, 0, err
	}
	seal := auth.sealer(key)
	br := bufio.NewReaderSize(in, 1<<20)
	body := io.TeeReader(br, seal)
	var head [snapshotHeadSize]byte
	if _, err := io.ReadFull(body, head[:]); err != nil || string(head[:len(snapshotMagic)]) != auth.magic() {
		return nil, 0, fmt.Errorf("%w: no header", ErrBadSnapshot)
	}
	h := head[len(snapshotMagic):]
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(h[8*i:]) }
	newest, newestOK := getTime(h[16:])
	lateness, next, anchor, base, checkpoints, held, floors := time.Duration(u(0)), int64(u(1)), u(5), int64(u(6)), u(7), u(8), u(9)
	if lateness <= 0 || lateness > MaxLateness || next < 0 || !newestOK || checkpoints == 0 || checkpoints > 1<<32 || held > 1<<40 || floors > 1<<32 {
		return nil, 0, fmt.Errorf("%w: header out of range", ErrBadSnapshot)
	}
	if maxIDs > 0 && (held > uint64(maxIDs) || checkpoints+floors > uint64(maxIDs+snapshotSpareMarks)) {
		return nil, 0, fmt.Errorf("%w: %d IDs, %d checkpoints and %d floors, over the window's bound of %d IDs", ErrBadSnapshot, held, checkpoints, floors, maxIDs)
	}
	if int64(len(head))+int64(checkpoints+floors)*snapshotCheckpoint+int64(held)*snapshotEntrySize+int64(auth.sealSize()) != size {
		return nil, 0, fmt.Errorf("%w: its counts do not add up to its %d bytes", ErrBadSnapshot, size)
	}
	w := &Window{lateness: lateness, next: next, newest: newest, base: base, ids: newIndex(slotsFor(int(held)))}
	var cp [snapshotCheckpoint]byte
	for range checkpoints {
		if _, err := io.ReadFull(body, cp[:]); err != nil {
			return nil, 0, fmt.Errorf("%w: cut short", ErrBadSnapshot)
		}
		c := checkpoint{offset: int64(binary.LittleEndian.Uint64(cp[:]))}
		var ok bool
		if c.newest, ok = getTime(cp[8:]); !ok || c.offset > next || len(w.checkpoints) > 0 && c.offset <= w.checkpoints[len(w.checkpoints)-1].offset {
			return nil, 0, fmt.Errorf("%w: checkpoints out of order", ErrBadSnapshot)
		}
		w.checkpoints = append(w.checkpoints, c)
	}
	for range floors {
		if _, err := io.ReadFull(body, cp[:]); err != nil {
			return nil, 0, fmt.Errorf("%w: cut short", ErrBadSnapshot)
		}
		f := Floor{Offset: int64(binary.LittleEndian.Uint64(cp[:]))}
		var ok bool
		if f.Time, ok = getTime(cp[8:]); !ok || f.Time.IsZero() || f.Offset > next || len(w.floors) > 0 && f.Offset <= w.floors[len(w.floors)-1].Offset {
			return nil, 0, fmt.Errorf("%w: floors out of order", ErrBadSnapshot)
		}
		w.floors = append(w.floors, f)
	}
	w.applied = len(w.floors)
	// Entries are read a block at a time: one read and one checksum
	// update per entry cost more than putting it in the table.
	block := make([]byte, 1638*snapshotEntrySize)
	for left := held; left > 0; {
		n := min(left, uint64(len(block)/snapshotEntrySize))
		left -= n
		recs := block[:n*snapshotEntrySize]
		if _, err := io.ReadFull(body, recs); err != nil {
			return nil, 0, fmt.Errorf("%w: cut short", ErrBadSnapshot)
		}
		for ; len(recs) > 0; recs = recs[snapshotEntrySize:] {
			v := func(i int) uint64 { return binary.LittleEndian.Uint64(recs[8*i:]) }
			tag := v(0)
			s := slot{fpHi: v(1), origOffset: int64(v(2)), newest: int64(v(3)),
				content: binary.LittleEndian.Uint32(recs[32:]), rawHash: binary.LittleEndian.Uint32(recs[36:])}
			i, dup := w.ids.find(tag, s.fpHi)
			if tag == 0 || dup || s.origOffset < w.checkpoints[0].offset || s.origOffset >= next {
				return nil, 0, fmt.Errorf("%w: an ID out of place", ErrBadSnapshot)
			}
			w.ids.put(i, tag, s)
		}
	}
	// Checked again: the file may have changed since checkSnapshot read it.
	want := sealOf(seal)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || !hmac.Equal(got, want) {
		return nil, 0, fmt.Errorf("%w: changed while read", sealError(auth))
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, 0, fmt.Errorf("%w: bytes after the seal", ErrBadSnapshot)
	}
	return w, anchor, nil
}

// sealError is the error of a seal that does not match.
func sealError(auth SnapshotAuth) error {
	if len(auth.Keys) > 0 {
		return ErrSnapshotSignature
	}
	return fmt.Errorf("%w: checksum", ErrBadSnapshot)
}

// checkSnapshot checks the size of in against maxIDs, then its seal over
// the whole of in under each of auth's keys, and rewinds it; it returns
// the snapshot's size and the key that sealed it.
func checkSnapshot(in io.ReadSeeker, auth SnapshotAuth, maxIDs int) (int64, int, error) {
	size, err := in.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	if size < int64(snapshotHeadSize+auth.sealSize()) {
		return 0, 0, fmt.Errorf("%w: %d bytes", ErrBadSnapshot, size)
	}
	if maxIDs > 0 && size > MaxSnapshotSize(maxIDs) {
		return 0, 0, fmt.Errorf("%w: %d bytes, more than a window of %d IDs takes", ErrBadSnapshot, size, maxIDs)
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return 0, 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(in, magic); err != nil {
		return 0, 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	switch string(magic) {
	case auth.magic():
	case snapshotMagic, signedSnapshotMagic:
		// Unsigned where a key is configured (written by anything that can
		// write the volume), or signed where none is (not checkable here).
		return 0, 0, fmt.Errorf("%w: magic %q", ErrSnapshotSignature, magic)
	default:
		return 0, 0, fmt.Errorf("%w: no header", ErrBadSnapshot)
	}
	seals := make([]hash.Hash, max(1, len(auth.Keys)))
	ws := make([]io.Writer, len(seals))
	for i := range seals {
		seals[i] = auth.sealer(i)
		seals[i].Write(magic)
		ws[i] = seals[i]
	}
	if _, err := io.CopyN(io.MultiWriter(ws...), in, size-int64(len(magic)+auth.sealSize())); err != nil {
		return 0, 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	got := make([]byte, auth.sealSize())
	if _, err := io.ReadFull(in, got); err != nil {
		return 0, 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	key := -1
	for i, s := range seals {
		if hmac.Equal(got, sealOf(s)) {
			key = i
		}
	}
	if key < 0 {
		return 0, 0, sealError(auth)
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return 0, 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	return size, key, nil
}

// CheckRecorded tells whether w, read from a snapshot and brought to a
// batch's start, can be the window its partition recorded there: a
// window whose bounds are (start, newest) holds only IDs loaded at or
// after start, has seen an event time at least newest, and, bounded by
// maxIDs (0: no bound), holds no more IDs than that. A snapshot that
// fails it came from another history and is not used.
func (w *Window) CheckRecorded(start int64, newest time.Time, maxIDs int) error {
	if w.newest.Before(newest) {
		return fmt.Errorf("%w: its newest event time %v is before the recorded %v", ErrBadSnapshot, w.newest, newest)
	}
	cut := w.ns(w.Watermark())
	live := 0
	for i := range w.ids.tags {
		if !w.live(i, cut) {
			continue
		}
		live++
		if o := w.ids.slots[i].origOffset; o < start {
			return fmt.Errorf("%w: it holds an ID loaded at offset %d, before the recorded window's start %d", ErrBadSnapshot, o, start)
		}
	}
	if maxIDs > 0 && live > maxIDs {
		return fmt.Errorf("%w: it holds %d IDs, over the partition's bound of %d", ErrBadSnapshot, live, maxIDs)
	}
	return nil
}

// putWords writes each value as a little-endian 8-byte word.
func putWords(b []byte, vs ...uint64) {
	for i, v := range vs {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
}

// putTime writes t in three words: whether it is set, seconds, nanoseconds.
func putTime(b []byte, t time.Time) {
	if t.IsZero() {
		putWords(b, 0, 0, 0)
		return
	}
	putWords(b, 1, uint64(t.Unix()), uint64(t.Nanosecond()))
}

func getTime(b []byte) (time.Time, bool) {
	set, sec, nsec := binary.LittleEndian.Uint64(b), int64(binary.LittleEndian.Uint64(b[8:])), binary.LittleEndian.Uint64(b[16:])
	switch {
	case set == 0 && sec == 0 && nsec == 0:
		return time.Time{}, true
	case set != 1 || nsec >= 1e9:
		return time.Time{}, false
	}
	return time.Unix(sec, int64(nsec)).UTC(), true
}
