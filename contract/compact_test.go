package contract

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// largestBatch is a batch of 200,000 records (the most set-batch allows)
// of which dupShare are duplicates, each repeating a record up to three
// million offsets back (a full 10-minute window at 5,000 events/s), and
// the rest loaded with scores and reasons: what Load's input records.
func largestBatch(dupShare float64) (Decisions, Enrichment) {
	rng := rand.New(rand.NewPCG(1, 2))
	const records, start = 200_000, int64(40_000_000)
	var d Decisions
	var enr Enrichment
	for i := range int64(records) {
		off := start + i
		if rng.Float64() < dupShare {
			d.DuplicateOffsets = append(d.DuplicateOffsets, off)
			d.DuplicateOf = append(d.DuplicateOf, off-1-rng.Int64N(3_000_000))
			d.DuplicateIdentical = append(d.DuplicateIdentical, rng.IntN(2) == 0)
			continue
		}
		d.Loaded++
		enr.Scores = append(enr.Scores, uint8(rng.IntN(101)))
		enr.Reasons = append(enr.Reasons, uint16(rng.IntN(1<<9)))
	}
	d.Records = records
	return d, enr
}

// TestLargestBatchFitsBelowThePayloadLimit: the decisions and scores of
// the largest batch, at 40 % duplicates and at 100 %, leave at least a
// quarter of Temporal's 2 MB payload limit free even with every duplicate
// far from its original and every score and reason set (real batches
// record less: most reasons are 0, most repeats are near), and read back
// as written.
func TestLargestBatchFitsBelowThePayloadLimit(t *testing.T) {
	for _, share := range []float64{0.4, 1} {
		d, enr := largestBatch(share)
		b, err := json.Marshal(struct {
			Decisions  Decisions
			Enrichment Enrichment
		}{d, enr})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%.0f %% duplicates: %d bytes", share*100, len(b))
		if len(b) > 3*(2<<20)/4 {
			t.Errorf("%.0f %% duplicates: Load's input takes %d bytes, more than three quarters of the 2 MB limit", share*100, len(b))
		}
		var back struct {
			Decisions  Decisions
			Enrichment Enrichment
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Decisions.DuplicateOf, d.DuplicateOf) || !reflect.DeepEqual(back.Decisions.DuplicateOffsets, d.DuplicateOffsets) ||
			!reflect.DeepEqual(back.Decisions.DuplicateIdentical, d.DuplicateIdentical) || !reflect.DeepEqual(back.Enrichment.Reasons, enr.Reasons) ||
			!reflect.DeepEqual(back.Enrichment.Scores, enr.Scores) {
			t.Errorf("%.0f %% duplicates: decisions changed on the way through JSON", share*100)
		}
	}
}

// TestListsRecordedAsArraysStillRead: histories recorded before the
// compact form hold plain arrays; they decode to the same lists.
func TestListsRecordedAsArraysStillRead(t *testing.T) {
	var d Decisions
	if err := json.Unmarshal([]byte(`{"DuplicateOffsets":[5,9],"DuplicateOf":[3,1],"DuplicateIdentical":[true,false],"LateOffsets":null}`), &d); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.DuplicateOffsets, Offsets{5, 9}) || !reflect.DeepEqual(d.DuplicateOf, Offsets{3, 1}) ||
		!reflect.DeepEqual(d.DuplicateIdentical, Flags{true, false}) || d.LateOffsets != nil {
		t.Errorf("decoded %+v", d)
	}
	var e Enrichment
	if err := json.Unmarshal([]byte(`{"Scores":"AAo=","Reasons":[0,3]}`), &e); err != nil || !reflect.DeepEqual(e.Reasons, Codes{0, 3}) {
		t.Errorf("decoded %+v (%v)", e, err)
	}
}

// TestCorruptListsFailToDecode: a recorded list whose count or bytes are
// corrupt is an error, never a panic or a list of the wrong length.
func TestCorruptListsFailToDecode(t *testing.T) {
	quote := func(b []byte) []byte { j, _ := json.Marshal(b); return j }
	huge := binary.AppendUvarint(nil, math.MaxUint64-3) // count+7 wraps to 3
	for name, raw := range map[string][]byte{
		"a count that wraps":         quote(huge),
		"a count past the bits":      quote(append(binary.AppendUvarint(nil, 17), 0xff, 0xff)),
		"a count short of the bits":  quote(append(binary.AppendUvarint(nil, 3), 0xff, 0xff)),
		"a count that is not a uint": quote([]byte{0xff}),
	} {
		var f Flags
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return json.Unmarshal(raw, &f)
		}()
		if err == nil || strings.HasPrefix(err.Error(), "panic") {
			t.Errorf("%s: decoded %d flags, error %v; want an error", name, len(f), err)
		}
	}
}
