package contract

import "testing"

// TestSchemaVerdictsAreBoundedAndPositional: verdicts cover offsets, an
// unknown range wins inside itself, a full list records further ranges
// as Unasked (every ID with no verdict there is unknown), and ranges
// behind the window are dropped.
func TestSchemaVerdictsAreBoundedAndPositional(t *testing.T) {
	var s Schemas
	s.AddUnknown(7, 100, 200)
	s.AddKnown(7, 200)
	for _, c := range []struct {
		id     int
		offset int64
		want   Verdict
	}{{7, 99, VerdictNone}, {7, 150, VerdictUnknown}, {7, 200, VerdictKnown}, {7, 900, VerdictKnown}, {8, 150, VerdictNone}} {
		if got := s.Verdict(c.id, c.offset); got != c.want {
			t.Errorf("ID %d at %d: %d, want %d", c.id, c.offset, got, c.want)
		}
	}
	for id := range MaxUnknownSchemas {
		s.AddUnknown(1000+id, 300, 400)
	}
	if !s.Full() || len(s.Unknown) != MaxUnknownSchemas {
		t.Fatalf("%d unknown ranges, full %v", len(s.Unknown), s.Full())
	}
	s.AddUnknown(5000, 400, 500)
	if len(s.Unknown) != MaxUnknownSchemas || s.Verdict(6000, 450) != VerdictUnknown || s.Verdict(7, 450) != VerdictKnown {
		t.Errorf("past the bound: %d ranges; ID 6000 at 450 %d (want unknown), ID 7 %d (want known)", len(s.Unknown), s.Verdict(6000, 450), s.Verdict(7, 450))
	}
	s.Prune(400)
	if len(s.Unknown) != 0 || len(s.Unasked) != 1 || s.Full() {
		t.Errorf("after Prune(400): %d unknown ranges, %d unasked", len(s.Unknown), len(s.Unasked))
	}
}

// TestUnaskedSpansStayBounded: spans that never touch, while the window
// does not move, are joined across their nearest gap past the bound.
func TestUnaskedSpansStayBounded(t *testing.T) {
	var s Schemas
	for i := range 1000 {
		s.AddUnasked(int64(i*100), int64(i*100+10))
	}
	if len(s.Unasked) != MaxUnaskedSpans {
		t.Fatalf("%d spans, want %d", len(s.Unasked), MaxUnaskedSpans)
	}
	for i := range 1000 {
		if s.Verdict(1, int64(i*100+5)) != VerdictUnknown {
			t.Fatalf("offset %d left its span", i*100+5)
		}
	}
}
