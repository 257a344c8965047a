package dedup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// A snapshot is a Window written out so a restarted worker can load it
// instead of replaying the whole lateness window from Kafka (750,000
// records a partition at 5,000 events/s). Its layout, little-endian, in
// 8-byte words unless said:
//
//	magic "PSDW3\n", lateness, next, has newest, newest (sec, nsec), anchor, base, checkpoints, held IDs, floors
//	per checkpoint: offset, has newest, newest (sec, nsec)
//	per floor (all in effect): offset, 1, time (sec, nsec)
//	per held ID: tag, fingerprint's second half, offset, newest (ns after base), content and raw hashes (4 bytes each)
//	CRC-32C of all of the above
//
// The anchor is the caller's: something that ties the snapshot to the log it
// came from (the activities hash the record at Next). Only IDs still inside
// the window are written.
const snapshotMagic = "PSDW3\n"

const (
	snapshotHeadWords  = 10
	snapshotCheckpoint = 4 * 8
	snapshotEntrySize  = 4*8 + 2*4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadSnapshot is returned for a snapshot that is torn, corrupt or not
// one: the caller replays the log instead.
var ErrBadSnapshot = errors.New("not a whole dedup snapshot")

// WriteSnapshot writes w with anchor to out.
func (w *Window) WriteSnapshot(out io.Writer, anchor uint64) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(out, crc), 1<<20)
	cut := w.ns(w.Watermark())
	held := w.Live()
	var head [len(snapshotMagic) + snapshotHeadWords*8]byte
	copy(head[:], snapshotMagic)
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
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := out.Write(sum[:]); err != nil {
		return fmt.Errorf("write dedup snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot reads a Window written by WriteSnapshot and its anchor.
// Nothing in the file is trusted before its checksum matches and its
// header's counts add up to its size: a flipped bit in a count once made
// the reader size a table of 2^40 IDs, and the worker ran out of memory
// on every start.
func ReadSnapshot(in io.ReadSeeker) (*Window, uint64, error) {
	size, err := checkSnapshot(in)
	if err != nil {
		return nil, 0, err
	}
	crc := crc32.New(castagnoli)
	br := bufio.NewReaderSize(in, 1<<20)
	body := io.TeeReader(br, crc)
	var head [len(snapshotMagic) + snapshotHeadWords*8]byte
	if _, err := io.ReadFull(body, head[:]); err != nil || string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, 0, fmt.Errorf("%w: no header", ErrBadSnapshot)
	}
	h := head[len(snapshotMagic):]
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(h[8*i:]) }
	newest, newestOK := getTime(h[16:])
	lateness, next, anchor, base, checkpoints, held, floors := time.Duration(u(0)), int64(u(1)), u(5), int64(u(6)), u(7), u(8), u(9)
	if lateness <= 0 || lateness > MaxLateness || next < 0 || !newestOK || checkpoints == 0 || checkpoints > 1<<32 || held > 1<<40 || floors > 1<<32 {
		return nil, 0, fmt.Errorf("%w: header out of range", ErrBadSnapshot)
	}
	if int64(len(head))+int64(checkpoints+floors)*snapshotCheckpoint+int64(held)*snapshotEntrySize+4 != size {
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
	want := crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil || binary.LittleEndian.Uint32(sum[:]) != want {
		return nil, 0, fmt.Errorf("%w: checksum", ErrBadSnapshot)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, 0, fmt.Errorf("%w: bytes after the checksum", ErrBadSnapshot)
	}
	return w, anchor, nil
}

// checkSnapshot checksums the whole of in and rewinds it; it returns the
// size of the snapshot.
func checkSnapshot(in io.ReadSeeker) (int64, error) {
	size, err := in.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	if size < int64(len(snapshotMagic))+4 {
		return 0, fmt.Errorf("%w: %d bytes", ErrBadSnapshot, size)
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	crc := crc32.New(castagnoli)
	if _, err := io.CopyN(crc, in, size-4); err != nil {
		return 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	var sum [4]byte
	if _, err := io.ReadFull(in, sum[:]); err != nil || binary.LittleEndian.Uint32(sum[:]) != crc.Sum32() {
		return 0, fmt.Errorf("%w: checksum", ErrBadSnapshot)
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("read dedup snapshot: %w", err)
	}
	return size, nil
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
