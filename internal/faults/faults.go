// Package faults lets fault tests kill a worker process at a named point
// of its work, as a crash or `kill -9` at that moment would. It does
// nothing unless the environment asks for it:
//
//	PAYSTREAM_FAULT_KILL_AT=load:transactions     first time that point is reached
//	PAYSTREAM_FAULT_KILL_AT=commit:3              third time
//
// Points: read (a batch's records being read), columns (a plan added
// typed columns to the tables, before it returns), dedup, enrich,
// load:<table> (after that table's load job, before the next), commit
// (after the loads, before the offset commit).
//
// PAYSTREAM_FAULT_STALL_AT=<point>[:n] with PAYSTREAM_FAULT_STALL_FOR=30s
// instead freezes the goroutine there, without heartbeats, and then lets it
// go on: a zombie attempt that wakes after its retry ran elsewhere.
package faults

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Variables that arm a fault.
const (
	EnvKillAt    = "PAYSTREAM_FAULT_KILL_AT"
	EnvStallAt   = "PAYSTREAM_FAULT_STALL_AT"
	EnvStallFor  = "PAYSTREAM_FAULT_STALL_FOR"
	defaultStall = 30 * time.Second
)

// armed is one fault: where, on which pass, and whether it kills or stalls.
type armed struct {
	point  string
	after  int
	stall  time.Duration // 0: kill
	passed int
}

var (
	once  sync.Once
	mu    sync.Mutex
	fault *armed
)

func load() {
	spec, stall := os.Getenv(EnvKillAt), time.Duration(0)
	if spec == "" {
		if spec = os.Getenv(EnvStallAt); spec == "" {
			return
		}
		stall = defaultStall
		if d, err := time.ParseDuration(os.Getenv(EnvStallFor)); err == nil {
			stall = d
		}
	}
	fault = &armed{point: spec, after: 1, stall: stall}
	if i := strings.LastIndexByte(spec, ':'); i > 0 {
		if n, err := strconv.Atoi(spec[i+1:]); err == nil {
			fault.point, fault.after = spec[:i], n
		}
	}
}

// At kills this process with SIGKILL, or stalls the calling goroutine,
// when name is the armed point reached the armed number of times.
func At(name string) {
	once.Do(load)
	if fault == nil || name != fault.point {
		return
	}
	mu.Lock()
	fault.passed++
	hit := fault.passed == fault.after
	mu.Unlock()
	if !hit {
		return
	}
	if fault.stall > 0 {
		time.Sleep(fault.stall)
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
