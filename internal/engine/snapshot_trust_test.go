//go:build unix

// FIFOs and O_NONBLOCK are Unix's: the worker runs on Linux.

package engine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/rows"
)

// logRecords reads [0, end) of the snapshot test's partition.
func logRecords(t *testing.T, kafka kafkalog.Cluster, end int64) []kafkalog.Record {
	t.Helper()
	a := New(Config{Kafka: kafka})
	defer a.Close()
	var out []kafkalog.Record
	if _, err := a.readRange(context.Background(), "snap", 0, 0, end, func(r kafkalog.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// forgeSnapshot is what anything that can write the snapshot volume
// but holds no configured key can make: the window of a log changed by
// change, at offset at, tied to the real log by the real anchor, sealed
// as auth says (a valid CRC, or an HMAC under a key of its own).
func forgeSnapshot(t *testing.T, log []kafkalog.Record, at int64, auth dedup.SnapshotAuth, change func(r kafkalog.Record) kafkalog.Record) []byte {
	t.Helper()
	w := dedup.New(snapLateness, 0, time.Time{})
	for _, r := range log[:at] {
		rec := parse(change(r), snapLateness)
		if _, err := rows.Observe(w, &rec); err != nil {
			t.Fatal(err)
		}
	}
	w.AdvanceTo(at)
	var buf bytes.Buffer
	if err := w.WriteSnapshot(&buf, anchorOf(log[at]), auth); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testKeys are a worker's snapshot keys after a rotation: snapshots are
// signed with the first.
var testKeys = [][]byte{[]byte("paystream snapshot key 2 of the test"), []byte("paystream snapshot key 1 of the test")}

// keyed is restarted with the snapshot keys and metrics.
func keyed(kafka kafkalog.Cluster, dir string) (*Engine, *observer.ObservedLogs) {
	return restartedWith(Config{Kafka: kafka, SnapshotDir: dir, SnapshotKeys: testKeys, Metrics: metrics.New()})
}

// refusals reads a worker's paystream_dedup_snapshots_refused_total by
// reason.
func refusals(t *testing.T, m *metrics.Pipeline) map[string]float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != metrics.SnapshotsRefused {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] += s.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestTamperedSnapshotIsNotUsed: a snapshot on the shared volume changed
// by something without the key (held IDs removed, IDs added, newest moved
// far ahead), under a valid CRC or signed with a key of its own and with
// the real anchor, is not used by a worker with keys: the batch decides
// exactly as from the log, and the refusal is logged and counted. Without
// keys, a forged snapshot that holds IDs from before the window its
// partition recorded is refused too.
func TestTamperedSnapshotIsNotUsed(t *testing.T) {
	const n, size = 8000, 1000
	kafka := snapshotLog(t, n, 11)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond, SnapshotKeys: testKeys[1:]})
	specs, want := warmChain(t, warm, n, size) // the last snapshot at 7000
	if len(want[7].DuplicateOffsets) == 0 || len(want[7].LateOffsets) == 0 {
		t.Fatalf("the last batch has no duplicates or no late records (%+v): the test proves little", want[7])
	}
	signed, err := os.ReadFile(warm.snapshots.path("snap", 0))
	if err != nil {
		t.Fatal(err)
	}
	log := logRecords(t, kafka, n)
	ahead := func(r kafkalog.Record) kafkalog.Record {
		if r.Offset != 6999 {
			return r
		}
		e, err := payment.Parse(r.Value)
		if err != nil {
			t.Fatalf("offset 6999 is not a payment: %v", err)
		}
		e.EventTime = e.EventTime.Add(24 * time.Hour)
		r.Value, r.Time = payment.Encode(e), r.Time.Add(24*time.Hour)
		return r
	}
	unsigned, ownKey := dedup.SnapshotAuth{}, dedup.SnapshotAuth{Keys: [][]byte{[]byte("a key the workers do not have....")}, Subject: windowKey("snap", 0)}
	for name, c := range map[string]struct {
		auth   dedup.SnapshotAuth
		keys   bool
		change func(kafkalog.Record) kafkalog.Record
	}{
		// The IDs loaded in [6000, 7000) are not held: their repeats in
		// the batch would load twice.
		"held IDs removed": {unsigned, true, func(r kafkalog.Record) kafkalog.Record {
			if r.Offset >= 6000 {
				r.Value = []byte("x")
			}
			return r
		}},
		// The IDs of [7000, 7100) are held as if loaded at [6900, 7000):
		// those payments would be filed as duplicates.
		"IDs added": {ownKey, true, func(r kafkalog.Record) kafkalog.Record {
			if r.Offset >= 6900 {
				later := log[r.Offset+100]
				r.Key, r.Value, r.Time = later.Key, later.Value, later.Time
			}
			return r
		}},
		// Newest a day ahead: every record of the batch would be late.
		"newest moved ahead": {unsigned, true, ahead},
		// Without keys: the IDs of [7000, 7100) held as if loaded at
		// [100, 200), long before the window the partition recorded.
		"IDs added before the recorded window, no key": {unsigned, false, func(r kafkalog.Record) kafkalog.Record {
			if r.Offset >= 100 && r.Offset < 200 {
				later := log[r.Offset+6900]
				r.Key, r.Value, r.Time = later.Key, later.Value, later.Time
			}
			return r
		}},
	} {
		forged := forgeSnapshot(t, log, 7000, c.auth, c.change)
		if err := os.WriteFile(warm.snapshots.path("snap", 0), forged, 0o600); err != nil {
			t.Fatal(err)
		}
		a, logs := keyed(kafka, dir)
		if !c.keys {
			a, logs = restartedWith(Config{Kafka: kafka, SnapshotDir: dir, Metrics: metrics.New()})
		}
		got, err := a.Decide(context.Background(), specs[7])
		if err != nil || !reflect.DeepEqual(got, want[7]) {
			t.Errorf("%s: decided loaded %d, duplicates %d, late %d, conflicts %d (%v); from the log: loaded %d, duplicates %d, late %d, conflicts %d",
				name, got.Loaded, len(got.DuplicateOffsets), len(got.LateOffsets), len(got.ConflictOffsets), err,
				want[7].Loaded, len(want[7].DuplicateOffsets), len(want[7].LateOffsets), len(want[7].ConflictOffsets))
		}
		if logs.FilterMessage("dedup window loaded from its snapshot").Len() != 0 || logs.FilterMessage("dedup window rebuilt from the log").Len() != 1 ||
			logs.FilterMessage("dedup snapshot not used; replaying the window from the log").FilterLevelExact(zap.WarnLevel).Len() != 1 {
			t.Errorf("%s: want the snapshot refused with a warning and the window replayed from the log; logs %v", name, logs.All())
		}
		want := map[string]float64{metrics.SnapshotUnsigned: 1}
		if !c.keys {
			want = map[string]float64{metrics.SnapshotInvalid: 1}
		}
		if got := refusals(t, a.Metrics); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: refusals counted %v, want %v", name, got, want)
		}
	}

	// The same snapshot as the warm worker wrote, signed with the key
	// now rotated to second place, is used.
	if err := os.WriteFile(warm.snapshots.path("snap", 0), signed, 0o600); err != nil {
		t.Fatal(err)
	}
	a, logs := keyed(kafka, dir)
	if got, err := a.Decide(context.Background(), specs[7]); err != nil || !reflect.DeepEqual(got, want[7]) {
		t.Errorf("the signed snapshot: decided %+v, %v; from the log %+v", got, err, want[7])
	}
	if logs.FilterMessage("dedup window loaded from its snapshot").Len() != 1 {
		t.Errorf("the signed snapshot was not used; logs %v", logs.All())
	}
}

// TestSnapshotFilesThatAreNotSnapshots: a FIFO, a symlink and a huge file
// under a partition's snapshot name neither hang nor crash a worker that
// preloads them at start: the batch is decided from the log within
// seconds.
func TestSnapshotFilesThatAreNotSnapshots(t *testing.T) {
	const n, size = 2000, 1000
	kafka := snapshotLog(t, n, 19)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond})
	specs, want := warmChain(t, warm, n, size) // the last snapshot at 1000
	file := warm.snapshots.path("snap", 0)
	valid, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(t.TempDir(), "elsewhere.window")
	if err := os.WriteFile(elsewhere, valid, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader left blocked on the FIFO is let go at the end.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	for _, c := range []struct {
		name  string
		plant func() error
	}{
		{"a FIFO", func() error { return syscall.Mkfifo(file, 0o600) }},
		{"a symlink to a FIFO", func() error { return os.Symlink(fifo, file) }},
		// A valid snapshot of this very partition: still not followed.
		{"a symlink to a snapshot", func() error { return os.Symlink(elsewhere, file) }},
		{"a 1 TiB file", func() error {
			f, err := os.Create(file)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(1 << 40)
		}},
	} {
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		if err := c.plant(); err != nil {
			t.Fatal(err)
		}
		a, logs := restarted(kafka, dir)
		type result struct {
			d   contract.Decisions
			err error
		}
		done := make(chan result, 1)
		began := time.Now()
		go func() {
			a.PreloadSnapshots("snap", []int{0}, time.Minute)
			d, err := a.Decide(context.Background(), specs[1])
			done <- result{d, err}
		}()
		select {
		case r := <-done:
			if r.err != nil || !reflect.DeepEqual(r.d, want[1]) {
				t.Errorf("%s: decided %+v, %v; from the log %+v", c.name, r.d, r.err, want[1])
			}
			if logs.FilterMessage("dedup window rebuilt from the log").Len() != 1 {
				t.Errorf("%s: want the window replayed from the log; logs %v", c.name, logs.All())
			}
			t.Logf("%s: decided in %v", c.name, time.Since(began).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Dedup did not return within 10 s", c.name)
		}
	}
}

// TestPreloadOnlyThisWorkersPartitions: of the snapshots on a shared
// volume, a worker preloads only those of the partitions its pool
// assigned it.
func TestPreloadOnlyThisWorkersPartitions(t *testing.T) {
	dir := t.TempDir()
	store := &windowSnapshots{dir: dir}
	for p := range 4 {
		if err := store.write(store.path("snap", p), dedup.New(snapLateness, 0, time.Time{}), 0, store.auth("snap", p)); err != nil {
			t.Fatal(err)
		}
	}
	a := New(Config{SnapshotDir: dir})
	a.PreloadSnapshots("snap", []int{2}, time.Minute)
	a.snapshots.mu.Lock()
	var preloaded []string
	for key := range a.snapshots.early {
		preloaded = append(preloaded, key)
	}
	a.snapshots.mu.Unlock()
	if want := []string{windowKey("snap", 2)}; !reflect.DeepEqual(preloaded, want) {
		t.Errorf("preloaded %v, want this worker's %v alone", preloaded, want)
	}
}

// TestSnapshotDecidesLikeAColdRebuild: on one log, every batch decided
// from a signed snapshot taken at its start, and from one taken a batch
// earlier (1,000 records replayed), decides exactly as a cold worker that
// replays the whole window from the log, and as the warm worker.
func TestSnapshotDecidesLikeAColdRebuild(t *testing.T) {
	const n, size = 6000, 1000
	kafka := snapshotLog(t, n, 23)
	dir := t.TempDir()
	warm := New(Config{Kafka: kafka, SnapshotDir: dir, SnapshotEvery: time.Nanosecond, SnapshotKeys: testKeys})
	cold := New(Config{Kafka: kafka, RebuildEveryBatch: true})
	var snapshots [][]byte // snapshots[k]: the one at batch k's start
	window := contract.Window{}
	totals := map[string]int{}
	for k, start := 0, int64(0); start < n; k, start = k+1, start+size {
		spec := contract.Spec{Range: contract.Range{Topic: "snap", Start: start, End: start + size}, Window: window, AllowedLateness: snapLateness}
		want, err := warm.Decide(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.ReadFile(warm.snapshots.path("snap", 0))
		if err != nil {
			t.Fatal(err)
		}
		snapshots = append(snapshots, file)
		got, err := cold.Decide(context.Background(), spec)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("batch %d: the cold rebuild decided %+v, %v; the warm worker %+v", k, got, err, want)
		}
		for from := max(0, k-1); from <= k && k > 0; from++ {
			if err := os.WriteFile(filepath.Join(dir, "snap-0.window"), snapshots[from], 0o600); err != nil {
				t.Fatal(err)
			}
			a, logs := keyed(kafka, dir)
			got, err := a.Decide(context.Background(), spec)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("batch %d from the snapshot of batch %d: decided %+v, %v; the cold rebuild %+v", k, from, got, err, want)
			}
			if logs.FilterMessage("dedup window loaded from its snapshot").Len() != 1 {
				t.Fatalf("batch %d: the snapshot of batch %d was not used; logs %v", k, from, logs.All())
			}
		}
		totals["loaded"] += want.Loaded
		totals["duplicates"] += len(want.DuplicateOffsets)
		totals["late"] += len(want.LateOffsets)
		window = want.Next
	}
	if totals["duplicates"] == 0 || totals["late"] == 0 {
		t.Errorf("the log has no duplicates or no late records (%v): the test proves little", totals)
	}
	t.Logf("decided alike on every path: %v", totals)
}
