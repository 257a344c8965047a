package engine

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/rows"
)

// DefaultSnapshotEvery is how often Dedup writes a partition's window to
// the state directory: a restarted worker replays at most that much of the
// log on top of the snapshot instead of the whole lateness window.
const DefaultSnapshotEvery = 30 * time.Second

// windowSnapshots keeps the latest dedup window of each partition in a
// local directory (a pod's emptyDir), so a worker restarted in place loads
// it instead of replaying up to 750,000 records a partition from Kafka.
//
// A snapshot is taken at the start of a batch, before any of its records
// is decided: it is then the window a retry of that batch needs, and every
// later batch replays forward from it. It is tied to its log by an anchor,
// the hash of the record at its Next offset, which the loader checks
// against Kafka before trusting it; a snapshot that is torn, from another
// log, at another lateness, outside the batch's window bounds, not what
// those bounds allow (CheckRecorded), larger than the partition's ID bound
// allows, not a regular file, or, with keys, not signed with one of them,
// is not used, and the window is rebuilt from the log as without one.
// Workers may share the directory: any snapshot of a partition's log is as
// good as another, since the window is a function of the log alone. What
// can write the directory can change the decisions of a snapshot it
// writes unless keys are set (docs/guarantees.md, "Dedup snapshots").
type windowSnapshots struct {
	dir   string
	every time.Duration
	// keys sign and check snapshots (dedup.SnapshotAuth); none: a CRC.
	keys [][]byte
	// maxIDs bounds what a snapshot may hold before its partition's spec
	// is known: the worker's --max-window-ids.
	maxIDs int
	mu     sync.Mutex
	saved  map[string]time.Time // partition key → when last written
	// early holds the snapshots read at start (Preload), by partition
	// key, until the partition's first rebuild takes its own.
	early map[string]func() readSnapshot
}

// readSnapshot is what reading a snapshot file gave.
type readSnapshot struct {
	w      *dedup.Window
	anchor uint64
	err    error
}

// newWindowSnapshots is the store of cfg.SnapshotDir.
func newWindowSnapshots(cfg Config) *windowSnapshots {
	return &windowSnapshots{dir: cfg.SnapshotDir, every: cmp.Or(cfg.SnapshotEvery, DefaultSnapshotEvery),
		keys: cfg.SnapshotKeys, maxIDs: cmp.Or(cfg.MaxWindowIDs, dedup.DefaultMaxIDs)}
}

// A partition's snapshot is named for it: the escaped topic, a dash, the
// partition, then snapshotSuffix (SnapshotPartitions reads names back).
const snapshotSuffix = ".window"

func (s *windowSnapshots) path(topic string, partition int) string {
	return filepath.Join(s.dir, url.PathEscape(topic)+"-"+strconv.Itoa(partition)+snapshotSuffix)
}

// auth is how the partition's snapshot is signed and checked: the
// signature covers the partition, so a snapshot copied to another
// partition's name is refused.
func (s *windowSnapshots) auth(topic string, partition int) dedup.SnapshotAuth {
	return dedup.SnapshotAuth{Keys: s.keys, Subject: windowKey(topic, partition)}
}

// SnapshotPartitions lists the partitions, by topic, that have a dedup
// snapshot in dir: the partitions a worker that used dir was running.
// A dir that does not exist has none.
func SnapshotPartitions(dir string) (map[string][]int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list dedup snapshots: %w", err)
	}
	out := map[string][]int{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // a symlink or a FIFO is never read as a snapshot
		}
		name, ok := strings.CutSuffix(e.Name(), snapshotSuffix)
		cut := strings.LastIndexByte(name, '-')
		if !ok || cut < 0 {
			continue
		}
		topic, err1 := url.PathUnescape(name[:cut])
		partition, err2 := strconv.Atoi(name[cut+1:])
		if err1 != nil || err2 != nil || partition < 0 {
			continue
		}
		out[topic] = append(out[topic], partition)
	}
	return out, nil
}

// due tells whether the partition's window is due to be written again.
func (s *windowSnapshots) due(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Sub(s.saved[key]) >= s.every
}

// save writes w, whose Next is the offset of first, atomically: a reader
// sees the old snapshot or the new one, never a part.
func (s *windowSnapshots) save(topic string, partition int, w *dedup.Window, first kafkalog.Record) error {
	dst := s.path(topic, partition)
	if err := s.write(dst, w, anchorOf(first), s.auth(topic, partition)); err != nil {
		return fmt.Errorf("dedup snapshot %s at offset %d: %w", dst, w.Next(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saved == nil {
		s.saved = map[string]time.Time{}
	}
	s.saved[windowKey(topic, partition)] = time.Now()
	return nil
}

func (s *windowSnapshots) write(dst string, w *dedup.Window, anchor uint64, auth dedup.SnapshotAuth) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, filepath.Base(dst)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := w.WriteSnapshot(f, anchor, auth); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

// PreloadSnapshots starts reading the snapshots of the given partitions
// of topic, those the pool assigned this worker, in the background. A
// worker restarted in place then decodes its windows while the server
// waits out the dead worker's timeouts, not on the recovery's critical
// path. Only the worker's own partitions are read: on a shared volume the
// others are other workers' windows, and reading them all would cost
// every worker's start the memory of every window. A snapshot nobody asks
// for within keep is dropped, as its partition may have gone to another
// worker. Calling it again adds partitions.
func (e *Engine) PreloadSnapshots(topic string, partitions []int, keep time.Duration) {
	store := e.snapshots
	if store == nil || len(partitions) == 0 {
		return
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.early == nil {
		store.early = map[string]func() readSnapshot{}
	}
	added := map[string]func() readSnapshot{}
	for _, p := range partitions {
		key := windowKey(topic, p)
		if store.early[key] != nil {
			continue
		}
		read := sync.OnceValue(func() readSnapshot {
			w, anchor, err := store.read(topic, p, store.maxIDs)
			return readSnapshot{w, anchor, err}
		})
		store.early[key], added[key] = read, read
		go read()
	}
	time.AfterFunc(keep, func() {
		store.mu.Lock()
		defer store.mu.Unlock()
		for key := range added {
			delete(store.early, key) // if a rebuild took it, already gone
		}
	})
}

// load returns the partition's snapshot, of at most maxIDs IDs: the one
// preloaded at start, the first time, else the file as it is now; (nil,
// 0, nil) when there is none.
func (s *windowSnapshots) load(topic string, partition int, maxIDs int) (*dedup.Window, uint64, error) {
	key := windowKey(topic, partition)
	s.mu.Lock()
	read, ok := s.early[key]
	delete(s.early, key)
	s.mu.Unlock()
	if ok {
		r := read()
		return r.w, r.anchor, r.err
	}
	return s.read(topic, partition, maxIDs)
}

// read reads the partition's snapshot file, of at most maxIDs IDs; (nil,
// 0, nil) when there is none. Only a regular file is read: a symlink is
// not followed, and a FIFO is opened without blocking and then refused,
// so nothing planted in a shared directory can hang a Dedup.
func (s *windowSnapshots) read(topic string, partition int, maxIDs int) (*dedup.Window, uint64, error) {
	path := s.path(topic, partition)
	f, err := openRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	return dedup.ReadSnapshot(f, s.auth(topic, partition), maxIDs)
}

// openRegular opens path for reading if it is a regular file, without
// following a symlink or blocking on a FIFO (openFlags).
func openRegular(path string) (*os.File, error) {
	if st, err := os.Lstat(path); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is a %s, not a regular file", dedup.ErrBadSnapshot, path, st.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		// ELOOP: replaced by a symlink since the Lstat.
		return nil, fmt.Errorf("%w: %w", dedup.ErrBadSnapshot, err)
	}
	// What was opened, not what the name held a moment ago.
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s is a %s, not a regular file", dedup.ErrBadSnapshot, path, st.Mode().Type())
	}
	return f, nil
}

// anchorOf hashes what identifies a record of a log: its offset, time, key
// and value.
func anchorOf(r kafkalog.Record) uint64 {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(r.Offset))
	binary.LittleEndian.PutUint64(b[8:], uint64(r.Time.UnixNano()))
	h.Write(b[:])
	binary.LittleEndian.PutUint64(b[:8], uint64(len(r.Key)))
	h.Write(b[:8])
	h.Write(r.Key)
	h.Write(r.Value)
	return h.Sum64()
}

// errNotThisLog stops a replay whose first record is not the snapshot's.
var errNotThisLog = errors.New("the snapshot's anchor record is not in this log")

// errNotThisWindow is a snapshot at another lateness, outside the batch's
// window, or with other floors than its partition's.
var errNotThisWindow = errors.New("the snapshot is not of the batch's window")

// Why a snapshot was not used, the values of SnapshotsRefusedTotal's
// reason label.
func refusedBecause(err error) string {
	switch {
	case errors.Is(err, dedup.ErrSnapshotSignature):
		return metrics.SnapshotUnsigned
	case errors.Is(err, dedup.ErrBadSnapshot):
		return metrics.SnapshotInvalid
	case errors.Is(err, errNotThisLog), errors.Is(err, errNotThisWindow):
		return metrics.SnapshotMismatch
	}
	return "" // Kafka or the volume failed: not the snapshot's fault
}

// windowFromSnapshot returns the window at spec.Start from the partition's
// snapshot and the records after it, the snapshot's offset and how many
// records it replayed; nil when there is no usable snapshot (why, in the
// error, when it is worth a log). A snapshot refused is counted by reason.
func (e *Engine) windowFromSnapshot(ctx context.Context, spec contract.Spec, recs []rows.Record, j *judge) (w *dedup.Window, from int64, replayed int, err error) {
	w, from, replayed, err = e.snapshotWindow(ctx, spec, recs, j)
	if reason := refusedBecause(err); reason != "" && ctx.Err() == nil {
		e.Metrics.SnapshotRefused(spec.Topic, reason)
	}
	return w, from, replayed, err
}

func (e *Engine) snapshotWindow(ctx context.Context, spec contract.Spec, recs []rows.Record, j *judge) (w *dedup.Window, from int64, replayed int, err error) {
	store := e.snapshots
	if store == nil {
		return nil, 0, 0, nil
	}
	w, anchor, err := store.load(spec.Topic, spec.Partition, max(store.maxIDs, spec.MaxWindowIDs))
	if err != nil || w == nil {
		return nil, 0, 0, err
	}
	from = w.Next()
	if err := w.FollowFloors(rows.DedupFloors(spec.Window.Floors)); err != nil {
		return nil, 0, 0, fmt.Errorf("snapshot at offset %d: %w: %w", from, errNotThisWindow, err)
	}
	switch {
	case w.Lateness() != spec.AllowedLateness:
		return nil, 0, 0, fmt.Errorf("snapshot at offset %d has lateness %s, the batch %s: %w", from, w.Lateness(), spec.AllowedLateness, errNotThisWindow)
	case from < spec.Window.Start || from > spec.Start:
		return nil, 0, 0, fmt.Errorf("snapshot at offset %d is outside the batch's window [%d, %d]: %w", from, spec.Window.Start, spec.Start, errNotThisWindow)
	case from == spec.Start:
		if len(recs) == 0 || recs[0].Offset != from || anchorOf(recs[0].Record) != anchor {
			return nil, 0, 0, fmt.Errorf("snapshot at offset %d: %w", from, errNotThisLog)
		}
	default:
		replayed, err = e.replay(ctx, spec, w, from, j, func(r kafkalog.Record) error {
			if r.Offset != from || anchorOf(r) != anchor {
				return errNotThisLog
			}
			return nil
		})
		if err == nil && replayed == 0 {
			err = errNotThisLog
		}
		if err != nil {
			return nil, 0, 0, fmt.Errorf("snapshot at offset %d: %w", from, err)
		}
		w.AdvanceTo(spec.Start)
	}
	// What the partition recorded bounds what the window may be.
	if err := w.CheckRecorded(spec.Window.Start, spec.Window.Newest, spec.MaxWindowIDs); err != nil {
		return nil, 0, 0, fmt.Errorf("snapshot at offset %d, at the batch's start: %w", from, err)
	}
	return w, from, replayed, nil
}
