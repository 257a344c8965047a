package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
)

// snapshotLog is a one-partition topic "snap" of n simulated records whose
// event time runs slowly enough that a one-minute window fills and moves.
func snapshotLog(t *testing.T, n int, seed uint64) kafkalog.Cluster {
	t.Helper()
	opts := simulation.DefaultOptions()
	opts.Seed, opts.EventRate = seed, 20
	kafka, _ := simulatedLog(t, "snap", opts, n)
	return kafka
}

const snapLateness = time.Minute

// warmChain dedups [0, n) in batches of size on one warm worker and
// returns each batch's spec and decisions.
func warmChain(t *testing.T, a *Engine, n, size int64) ([]contract.Spec, []contract.Decisions) {
	t.Helper()
	var specs []contract.Spec
	var decided []contract.Decisions
	window := contract.Window{}
	for start := int64(0); start < n; start += size {
		spec := contract.Spec{Range: contract.Range{Topic: "snap", Start: start, End: min(start+size, n)}, Window: window, AllowedLateness: snapLateness}
		d, err := a.Decide(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		specs, decided, window = append(specs, spec), append(decided, d), d.Next
	}
	return specs, decided
}

// restarted is a worker with nothing in memory, sharing dir, whose logs
// the test reads.
func restarted(kafka kafkalog.Cluster, dir string) (*Engine, *observer.ObservedLogs) {
	return restartedWith(Config{Kafka: kafka, SnapshotDir: dir})
}

// restartedWith is restarted, configured as cfg.
func restartedWith(cfg Config) (*Engine, *observer.ObservedLogs) {
	core, logs := observer.New(zap.InfoLevel)
	cfg.Log = zap.New(core)
	return New(cfg), logs
}

// TestRestartLoadsTheWindowSnapshot: a worker restarted in place decides
// a batch from its partition's snapshot exactly as the lost warm worker
// did, whether it retries the batch the snapshot was taken at or goes on
// to the next one, and replays only the records after the snapshot.
func TestRestartLoadsTheWindowSnapshot(t *testing.T) {
	const n, size = 8000, 1000
	kafka := snapshotLog(t, n, 11)
	dir := t.TempDir()
	// Writes a snapshot at the start of every batch, the last at 7000.
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond})
	specs, want := warmChain(t, warm, n, size)
	if len(want[7].DuplicateOffsets) == 0 || len(want[7].LateOffsets) == 0 {
		t.Fatalf("the last batch has no duplicates or no late records (%+v): the test proves little", want[7])
	}

	// The retry of the last batch: the snapshot is its window.
	a, logs := restarted(kafka, dir)
	if got, err := a.Decide(context.Background(), specs[7]); err != nil || !reflect.DeepEqual(got, want[7]) {
		t.Fatalf("retry from the snapshot decided %+v, %v; the warm worker %+v", got, err, want[7])
	}
	if loaded := logs.FilterMessage("dedup window loaded from its snapshot").All(); len(loaded) != 1 || loaded[0].ContextMap()["replayed"] != int64(0) {
		t.Errorf("retry: want the snapshot loaded with nothing replayed; logs %v", logs.All())
	}

	// The batch after a snapshot taken one batch earlier: replays 1,000.
	earlier, _ := os.ReadFile(warm.snapshots.path("snap", 0))
	warm2 := New(Config{Kafka: kafka, SnapshotDir: t.TempDir(), SnapshotEvery: time.Nanosecond})
	warmChain(t, warm2, 6000, size) // last snapshot at 5000
	moved, _ := os.ReadFile(warm2.snapshots.path("snap", 0))
	if err := os.WriteFile(warm.snapshots.path("snap", 0), moved, 0o600); err != nil {
		t.Fatal(err)
	}
	a, logs = restarted(kafka, dir)
	if got, err := a.Decide(context.Background(), specs[6]); err != nil || !reflect.DeepEqual(got, want[6]) {
		t.Fatalf("next batch from the snapshot decided %+v, %v; the warm worker %+v", got, err, want[6])
	}
	if loaded := logs.FilterMessage("dedup window loaded from its snapshot").All(); len(loaded) != 1 || loaded[0].ContextMap()["replayed"] != int64(size) {
		t.Errorf("next batch: want the snapshot loaded with %d records replayed; logs %v", size, logs.All())
	}

	// A torn snapshot, one from another log under the same topic name,
	// and one past the batch are not used: the window is replayed from
	// the log, and the decisions are still the warm worker's.
	other := New(Config{Kafka: snapshotLog(t, 7000, 12), SnapshotDir: t.TempDir(), SnapshotEvery: time.Nanosecond})
	warmChain(t, other, 6000, size) // last snapshot at 5000, where specs[5] starts
	foreign, _ := os.ReadFile(other.snapshots.path("snap", 0))
	for name, file := range map[string][]byte{"torn": earlier[:len(earlier)/2], "another log's": foreign, "later than the batch": earlier} {
		if err := os.WriteFile(warm.snapshots.path("snap", 0), file, 0o600); err != nil {
			t.Fatal(err)
		}
		a, logs := restarted(kafka, dir)
		if got, err := a.Decide(context.Background(), specs[5]); err != nil || !reflect.DeepEqual(got, want[5]) {
			t.Fatalf("%s snapshot: decided %+v, %v; the warm worker %+v", name, got, err, want[5])
		}
		if logs.FilterMessage("dedup window loaded from its snapshot").Len() != 0 || logs.FilterMessage("dedup window rebuilt from the log").Len() != 1 {
			t.Errorf("%s snapshot: want it refused and the window replayed from the log; logs %v", name, logs.All())
		}
	}
}

// TestSnapshotPartitionsNamesWhatWasWritten: a restarted worker learns
// from its state directory which partitions its predecessor ran, topic
// names with dashes and slashes included.
func TestSnapshotPartitionsNamesWhatWasWritten(t *testing.T) {
	dir := t.TempDir()
	s := &windowSnapshots{dir: dir}
	w := dedup.New(time.Minute, 0, time.Time{})
	for _, tp := range []struct {
		topic     string
		partition int
	}{{"pay-ments", 0}, {"pay-ments", 11}, {"a/b", 3}} {
		if err := s.write(s.path(tp.topic, tp.partition), w, 0, s.auth(tp.topic, tp.partition)); err != nil {
			t.Fatal(err)
		}
	}
	// Neither a half-written snapshot nor a stray file is a partition,
	// nor is a symlink under a partition's name.
	for _, stray := range []string{"pay-ments-4.window.123.tmp", "notes.txt", "x.window"} {
		if err := os.WriteFile(filepath.Join(dir, stray), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(s.path("pay-ments", 0), s.path("pay-ments", 5)); err != nil {
		t.Fatal(err)
	}
	got, err := SnapshotPartitions(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range got {
		slices.Sort(ps)
	}
	if want := map[string][]int{"pay-ments": {0, 11}, "a/b": {3}}; !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot partitions %v, want %v", got, want)
	}
	if got, err := SnapshotPartitions(filepath.Join(dir, "none")); err != nil || len(got) != 0 {
		t.Errorf("a missing directory: %v, %v; want none", got, err)
	}
}

// TestPreloadReadsSnapshotsAtStart: a worker restarted in place reads the
// snapshots of the partitions its pool assigned it; the first rebuild of a partition uses
// the one read then (here the file is gone by the time the batch comes)
// and decides as the warm worker did; a later rebuild reads the file
// again, and a preload nobody asked for is dropped.
func TestPreloadReadsSnapshotsAtStart(t *testing.T) {
	const n, size = 4000, 1000
	kafka := snapshotLog(t, n, 13)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond})
	specs, want := warmChain(t, warm, n, size) // the last snapshot at 3000

	// Another topic's snapshot in the directory is none of this worker's.
	other := &windowSnapshots{dir: dir}
	if err := other.write(other.path("other", 0), dedup.New(snapLateness, 0, time.Time{}), 0, other.auth("other", 0)); err != nil {
		t.Fatal(err)
	}

	a, logs := restarted(kafka, dir)
	a.PreloadSnapshots("snap", []int{0}, time.Minute)
	store := a.snapshots
	store.mu.Lock()
	read, preloaded := store.early[windowKey("snap", 0)], len(store.early)
	store.mu.Unlock()
	if read == nil || preloaded != 1 {
		t.Fatalf("preloaded %d snapshots, want snap/0's alone", preloaded)
	}
	if r := read(); r.err != nil || r.w == nil {
		t.Fatalf("preload: %+v", r)
	}
	file := store.path("snap", 0)
	saved, _ := os.ReadFile(file)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Decide(context.Background(), specs[3]); err != nil || !reflect.DeepEqual(got, want[3]) {
		t.Fatalf("from the preloaded snapshot: decided %+v, %v; the warm worker %+v", got, err, want[3])
	}
	if loaded := logs.FilterMessage("dedup window loaded from its snapshot").All(); len(loaded) != 1 || loaded[0].ContextMap()["replayed"] != int64(0) {
		t.Fatalf("want the preloaded snapshot used with nothing replayed; logs %v", logs.All())
	}

	// The preload served once: a rebuild on a worker that lost its window
	// reads the file (the one this worker wrote since, removed again) and
	// replays the log.
	a.windows.take(windowKey("snap", 0))
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Decide(context.Background(), specs[3]); err != nil || !reflect.DeepEqual(got, want[3]) {
		t.Fatalf("second rebuild: decided %+v, %v; the warm worker %+v", got, err, want[3])
	}
	if logs.FilterMessage("dedup window rebuilt from the log").Len() != 1 {
		t.Errorf("second rebuild: want the window replayed from the log; logs %v", logs.All())
	}

	// Unclaimed preloads are dropped after keep.
	if err := os.WriteFile(file, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := restarted(kafka, dir)
	b.PreloadSnapshots("snap", []int{0}, time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.snapshots.mu.Lock()
		left := len(b.snapshots.early)
		b.snapshots.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d preloaded snapshots still held after their keep", left)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCorruptSnapshotAtStartIsRebuilt: a worker whose state directory
// holds a snapshot with one flipped bit in its header's count of IDs (its
// checksum recomputed, as a bad write before the checksum would leave it)
// starts, preloads it without allocating for the count, refuses it, and
// decides the batch from a replay of the log exactly as the warm worker.
func TestCorruptSnapshotAtStartIsRebuilt(t *testing.T) {
	const n, size = 3000, 1000
	kafka := snapshotLog(t, n, 17)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond})
	specs, want := warmChain(t, warm, n, size) // the last snapshot at 2000
	file := warm.snapshots.path("snap", 0)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	held := len("PSDW3\n") + 8*8 // the header's count of held IDs
	b[held+4] |= 0x80            // 2^39 more IDs than written
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}

	a, logs := restarted(kafka, dir)
	a.PreloadSnapshots("snap", []int{0}, time.Minute)
	if got, err := a.Decide(context.Background(), specs[2]); err != nil || !reflect.DeepEqual(got, want[2]) {
		t.Fatalf("after a corrupt snapshot: decided %+v, %v; the warm worker %+v", got, err, want[2])
	}
	refused := logs.FilterMessage("dedup snapshot not used; replaying the window from the log").All()
	if len(refused) != 1 || !strings.Contains(fmt.Sprint(refused[0].ContextMap()["error"]), dedup.ErrBadSnapshot.Error()) {
		t.Errorf("want the snapshot refused as bad; logs %v", logs.All())
	}
	if logs.FilterMessage("dedup window rebuilt from the log").Len() != 1 {
		t.Errorf("want the window replayed from the log; logs %v", logs.All())
	}
}
