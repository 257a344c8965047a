package engine

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/simulation"
)

// TestFrozenEventTimeKeepsTheWindowBounded runs Dedup over a partition
// whose producers' clock all but stands still (a billion events a second
// of event time: the whole log within a microsecond, so nothing would ever
// leave the lateness window). The window stays within MaxWindowIDs plus a
// batch; each time it passes the bound, the oldest IDs go and the records
// behind them are decided late, to ingest_errors, so every record is still
// accounted for; and a worker that rebuilds the window for every batch, and one that
// restarts from a snapshot, decide every batch exactly as the warm one.
func TestFrozenEventTimeKeepsTheWindowBounded(t *testing.T) {
	const n, size, bound = 12000, 1000, 3000
	opts := simulation.DefaultOptions()
	opts.Seed, opts.EventRate = 21, 1e9
	kafka, _ := simulatedLog(t, "frozen", opts, n)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond})
	cold := New(Config{Kafka: kafka, RebuildEveryBatch: true})
	var specs []contract.Spec
	var decided []contract.Decisions
	window := contract.Window{}
	decidedRecords, late := 0, 0
	for start := int64(0); start < n; start += size {
		spec := contract.Spec{Range: contract.Range{Topic: "frozen", Start: start, End: start + size}, Window: window, AllowedLateness: time.Minute, MaxWindowIDs: bound}
		d, err := warm.Decide(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if w := warm.windows.take(windowKey("frozen", 0)); w == nil || w.Len() > bound+size {
			t.Fatalf("after batch %s the warm window holds %v IDs, over %d", spec.ID(), w.Len(), bound+size)
		} else {
			warm.windows.put(windowKey("frozen", 0), w)
		}
		c, err := cold.Decide(context.Background(), spec)
		if err != nil || !reflect.DeepEqual(c, d) {
			t.Fatalf("batch %s: a cold worker decided %+v, %v; the warm one %+v", spec.ID(), c, err, d)
		}
		decidedRecords += d.Loaded + d.Invalid + len(d.DuplicateOffsets) + len(d.ConflictOffsets) + len(d.LateOffsets)
		late += len(d.LateOffsets)
		specs, decided, window = append(specs, spec), append(decided, d), d.Next
	}
	if decidedRecords != n || late == 0 {
		t.Fatalf("%d of %d records decided, %d of them late: want all, and some late behind a floor", decidedRecords, n, late)
	}
	if len(window.Floors) == 0 {
		t.Fatalf("the window's bounds carry no floor: %+v", window)
	}
	// A worker restarted on the last snapshot decides the last batch again.
	again := New(Config{Kafka: kafka, SnapshotDir: dir})
	last := len(specs) - 1
	if d, err := again.Decide(context.Background(), specs[last]); err != nil || !reflect.DeepEqual(d, decided[last]) {
		t.Fatalf("from the snapshot: %+v, %v; the warm worker %+v", d, err, decided[last])
	}
	t.Logf("%d late, floors %v", late, window.Floors)
}
