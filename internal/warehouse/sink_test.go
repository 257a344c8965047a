package warehouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recordingSink records the tables written, in order, and fails those in
// fail.
type recordingSink struct {
	mu      sync.Mutex
	written []string
	fail    map[string]bool
}

func (r *recordingSink) WriteTable(ctx context.Context, id, table string, rows []Row) (int, error) {
	if r.fail[table] {
		return 0, errors.New("refused")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.written = append(r.written, table)
	return len(rows), nil
}

func TestWriteAllWritesTheLedgerLast(t *testing.T) {
	order := []string{"a", "b", "c", "ledger"}
	row := jsonRow{}
	rows := map[string][]Row{"a": {row, row}, "b": nil, "c": {row}, "ledger": {row}}
	for _, c := range []struct {
		name        string
		fail        string
		discard     bool
		wantWritten []string // the ledger last, or not at all
		wantCounts  map[string]int
	}{
		{name: "all", wantWritten: []string{"a", "b", "c", "ledger"}, wantCounts: map[string]int{"a": 2, "b": 0, "c": 1, "ledger": 1}},
		{name: "a data table fails", fail: "b", wantWritten: []string{"a", "c"}},
		{name: "the ledger fails", fail: "ledger", wantWritten: []string{"a", "b", "c"}},
		{name: "discard", discard: true, wantWritten: []string{"ledger"}, wantCounts: map[string]int{"a": 0, "b": 0, "c": 0, "ledger": 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recordingSink{fail: map[string]bool{c.fail: true}}
			var sink Sink = rec
			if c.discard {
				sink = Discard{Sink: rec, Ledger: "ledger"}
			}
			counts, err := WriteAll(context.Background(), sink, "batch/x/0/0-3", order, rows)
			if (err != nil) != (c.fail != "") {
				t.Fatalf("err %v", err)
			}
			data := slices.Clone(rec.written)
			if i := slices.Index(data, "ledger"); i >= 0 && i != len(data)-1 {
				t.Errorf("ledger written before %v", data[i+1:])
			}
			slices.Sort(data)
			want := slices.Sorted(slices.Values(c.wantWritten))
			if !slices.Equal(data, want) {
				t.Errorf("written %v, want %v", rec.written, c.wantWritten)
			}
			for table, n := range c.wantCounts {
				if counts[table] != n {
					t.Errorf("%s: %d rows, want %d", table, counts[table], n)
				}
			}
		})
	}
}

// TestIdleStreamsAreClosed: stream connections unused for longer than the
// idle time are picked to close; one in use stays.
func TestIdleStreamsAreClosed(t *testing.T) {
	var s idleSet
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	s.use("run1/transactions", t0)
	s.use("run1/batch_ledger", t0)
	s.use("run2/transactions", t0.Add(4*time.Minute))
	if got := s.idle(t0.Add(5*time.Minute), streamIdle); len(got) != 0 {
		t.Errorf("closed %v within the idle time", got)
	}
	got := s.idle(t0.Add(6*time.Minute), streamIdle)
	slices.Sort(got)
	if fmt.Sprint(got) != "[run1/batch_ledger run1/transactions]" {
		t.Errorf("closed %v, want the first run's streams", got)
	}
	if again := s.idle(t0.Add(7*time.Minute), streamIdle); len(again) != 0 {
		t.Errorf("closed %v twice", again)
	}
	if last := s.idle(t0.Add(10*time.Minute), streamIdle); fmt.Sprint(last) != "[run2/transactions]" {
		t.Errorf("then closed %v, want the second run's", last)
	}
}
