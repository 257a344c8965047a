package contract

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// The lists a batch records in history are written compactly, so that a
// batch of the largest size set-batch allows, with any share of
// duplicates, stays well below Temporal's 2 MB payload limit: as JSON
// numbers a 200,000-record batch with 40 % duplicates recorded 2.5 MB, and
// could never finish (TestLargestBatchFitsBelowThePayloadLimit has
// today's figures). Each list
// is one base64 string of varints; a plain JSON array, as runs recorded
// before this wrote them, decodes too.

// Offsets is a list of offsets, written as the zigzag varints of each
// one's difference from the one before: ascending offsets cost a byte or
// two each, the originals a duplicate repeats three or four.
type Offsets []int64

func (o Offsets) MarshalJSON() ([]byte, error) {
	buf := make([]byte, 0, 2*len(o))
	prev := int64(0)
	for _, v := range o {
		buf = binary.AppendVarint(buf, v-prev)
		prev = v
	}
	return json.Marshal(buf)
}

func (o *Offsets) UnmarshalJSON(b []byte) error {
	buf, plain, err := compactOrPlain[int64](b)
	if err != nil || plain != nil || buf == nil {
		*o = plain
		return err
	}
	out := make(Offsets, 0, len(buf))
	prev := int64(0)
	for len(buf) > 0 {
		d, n := binary.Varint(buf)
		if n <= 0 {
			return errors.New("batch: bad offset list")
		}
		prev += d
		out = append(out, prev)
		buf = buf[n:]
	}
	*o = out
	return nil
}

// Flags is a list of booleans, written as their count and a bit each.
type Flags []bool

func (f Flags) MarshalJSON() ([]byte, error) {
	if len(f) == 0 {
		return []byte(`""`), nil
	}
	buf := binary.AppendUvarint(make([]byte, 0, 10+len(f)/8), uint64(len(f)))
	bits := make([]byte, (len(f)+7)/8)
	for i, v := range f {
		if v {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	return json.Marshal(append(buf, bits...))
}

func (f *Flags) UnmarshalJSON(b []byte) error {
	buf, plain, err := compactOrPlain[bool](b)
	if err != nil || plain != nil || buf == nil {
		*f = plain
		return err
	}
	count, n := binary.Uvarint(buf)
	// Compared as bytes, not as count+7, which a corrupt count can wrap.
	if n <= 0 || count/8+min(count%8, 1) != uint64(len(buf)-n) {
		return errors.New("batch: bad flag list")
	}
	bits := buf[n:]
	out := make(Flags, count)
	for i := range out {
		out[i] = bits[i/8]&(1<<(i%8)) != 0
	}
	*f = out
	return nil
}

// Codes is a list of small numbers (fraud reason bits), a uvarint each.
type Codes []uint16

func (c Codes) MarshalJSON() ([]byte, error) {
	buf := make([]byte, 0, len(c))
	for _, v := range c {
		buf = binary.AppendUvarint(buf, uint64(v))
	}
	return json.Marshal(buf)
}

func (c *Codes) UnmarshalJSON(b []byte) error {
	buf, plain, err := compactOrPlain[uint16](b)
	if err != nil || plain != nil || buf == nil {
		*c = plain
		return err
	}
	out := make(Codes, 0, len(buf))
	for len(buf) > 0 {
		v, n := binary.Uvarint(buf)
		if n <= 0 || v > 0xffff {
			return errors.New("batch: bad code list")
		}
		out = append(out, uint16(v))
		buf = buf[n:]
	}
	*c = out
	return nil
}

// compactOrPlain reads a list as recorded: a base64 string (buf), or a
// JSON array of older runs (plain), or null (neither).
func compactOrPlain[T any](b []byte) (buf []byte, plain []T, err error) {
	if len(b) > 0 && b[0] == '[' {
		plain = []T{}
		if err := json.Unmarshal(b, &plain); err != nil {
			return nil, nil, fmt.Errorf("batch: recorded list: %w", err)
		}
		return nil, plain, nil
	}
	if err := json.Unmarshal(b, &buf); err != nil {
		return nil, nil, fmt.Errorf("batch: recorded list: %w", err)
	}
	if len(buf) == 0 {
		return nil, nil, nil // an empty list reads back as none, as it was
	}
	return buf, nil, nil
}
