package memlimit

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"300MiB": 300 << 20, "1GiB": 1 << 30, "512MB": 512e6, "768Mi": 768 << 20, "268435456": 268435456, "64KiB": 64 << 10,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1MiB", "1.5GiB", "99999999999GiB"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	for in, want := range map[string]int64{"max\n": 0, "805306368\n": 805306368, "9223372036854771712\n": 0} {
		got, err := parseCgroup(in)
		if err != nil || got != want {
			t.Errorf("parseCgroup(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseCgroup("junk"); err == nil {
		t.Error("parseCgroup(junk): no error")
	}
}

func TestApply(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	set, err := Apply(300 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(float64(300<<20) * Share); set != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("Apply(300 MiB) set %d, the runtime has %d; want %d", set, debug.SetMemoryLimit(-1), want)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if set, _ := Apply(300 << 20); set != 0 {
		t.Errorf("with GOMEMLIMIT in the environment Apply set %d; it should leave the runtime's", set)
	}
}

// TestFollowLeavesRoomForMemoryOutsideTheHeap: as the dedup windows grow
// outside the Go heap, the GC limit comes down by as much, and never below
// a quarter of the container's share.
func TestFollowLeavesRoomForMemoryOutsideTheHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const limit = 600 << 20
	var outside atomic.Int64
	outside.Store(100 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Follow(ctx, limit, outside.Load, time.Millisecond); close(done) }()
	waitFor := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for debug.SetMemoryLimit(-1) != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := debug.SetMemoryLimit(-1); got != want {
			t.Fatalf("GC limit %d MiB, want %d MiB", got>>20, want>>20)
		}
	}
	waitFor(500 << 20)
	outside.Store(550 << 20)
	waitFor(limit / 4)
	outside.Store(0)
	waitFor(limit)
	cancel()
	<-done
}
