// Package memlimit gives the Go garbage collector a memory limit below the
// container's, so a worker holding a full dedup window stays under it.
//
// Without a limit Go lets the heap grow to twice what is live before it
// collects: a worker with 190 MB live (a 10-minute window at 5,000 events/s)
// would reach about 600 MB and be OOM-killed in a smaller container. With
// one, the collector runs earlier as the heap nears it.
package memlimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Share is the part of the container's limit given to the Go heap; the
// rest covers what the runtime does not count (stacks of cgo, the binary).
const Share = 0.9

// cgroupFiles hold the container's memory limit, cgroup v2 then v1.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// Container reads the container's memory limit in bytes from its cgroup;
// 0 when there is none (not in a container, or unlimited).
func Container() (int64, error) {
	for _, f := range cgroupFiles {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read memory limit: %w", err)
		}
		return parseCgroup(string(b))
	}
	return 0, nil
}

func parseCgroup(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory limit %q: %w", s, err)
	}
	// cgroup v1 says "no limit" with a page-rounded MaxInt64.
	if n >= math.MaxInt64/2 {
		return 0, nil
	}
	return n, nil
}

// Parse reads a size such as 300MiB, 1GiB, 512MB or 268435456 (bytes).
func Parse(s string) (int64, error) {
	units := []struct {
		suffix string
		scale  int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"B", 1}}
	num, scale := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, scale = strings.TrimSuffix(num, u.suffix), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/scale {
		return 0, fmt.Errorf("memory size %q: want a number of bytes, or one with KiB, MiB, GiB, KB, MB or GB", s)
	}
	return n * scale, nil
}

// Apply sets the GC's limit to Share of limit (the container's, when
// limit is 0) and returns what it set; 0 when there is nothing to set, or
// when GOMEMLIMIT is in the environment, which the runtime has already
// applied and which wins.
func Apply(limit int64) (int64, error) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	if limit == 0 {
		var err error
		if limit, err = Container(); err != nil || limit == 0 {
			return 0, err
		}
	}
	soft := int64(float64(limit) * Share)
	debug.SetMemoryLimit(soft)
	return soft, nil
}

// Lowered is the GC limit that leaves room for outside bytes the process
// holds outside the Go heap under limit, the limit for all of it. It
// keeps at least a quarter of limit, so a worker whose windows outgrow its
// container still runs, collecting often, instead of thrashing on a limit
// of nothing; the container's own limit is then the one that stops it.
func Lowered(limit, outside int64) int64 { return max(limit-outside, limit/4) }

// Follow keeps the GC limit at Lowered(limit, outside()) until ctx ends,
// checking every interval: the runtime counts only the Go heap against its
// limit, and the dedup windows live outside it (dedup.OffHeapBytes).
func Follow(ctx context.Context, limit int64, outside func() int64, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		debug.SetMemoryLimit(Lowered(limit, outside()))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
