package progress

import (
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	got := Line(5000, 0, 10000, 1000, 4*time.Second, "records ingested")
	// 4,000 records in 4 s is 1,000/s; 5,000 left take 5 s.
	want := "[##########----------] 5,000/10,000 records ingested  50%  1,000/s  5s left  4s elapsed"
	if got != want {
		t.Errorf("Line:\n got %q\nwant %q", got, want)
	}
	if got := Line(12, 0, 10, 0, 0, "batches"); !strings.HasPrefix(got, "[####################] 12/10 batches 100%") {
		t.Errorf("past the total: %q", got)
	}
	if got := Line(3, 0, 10, 0, 2*time.Second, "batches"); !strings.Contains(got, "  1.5/s  5s left") {
		t.Errorf("a slow rate keeps a decimal: %q", got)
	}
	// Records in running batches move the bar before any batch ends.
	got = Line(3000, 2000, 10000, 0, 2*time.Second, "records ingested")
	if want := "[######====----------] 3,000/10,000 records ingested  30%, 2,000 in batches  1,500/s  5s left  2s elapsed"; got != want {
		t.Errorf("under way:\n got %q\nwant %q", got, want)
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBarWritesLinesOffTerminal(t *testing.T) {
	var out strings.Builder
	b := New(&out, "batches", 3)
	b.Set(1) // first draw
	b.Set(2) // too soon: skipped
	b.Set(3) // the end: drawn
	b.Done(3)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "1/3 batches") || !strings.Contains(lines[1], "3/3 batches 100%") {
		t.Errorf("lines %q", lines)
	}
	var nilBar *Bar
	nilBar.Set(1) // callers without a writer pass nil
	nilBar.Done(1)
}
