// Package faults lets fault tests kill a worker process at a named point
// of its work, as a crash or `kill -9` at that moment would. It does
// nothing unless the environment asks for it:
//
//	PAYSTREAM_FAULT_KILL_AT=load:transactions     first time that point is reached
//	PAYSTREAM_FAULT_KILL_AT=commit:3              third time
//
// Points: read (a batch's records being read), dedup, enrich,
// load:<table> (after that table's load job, before the next), commit
// (after the loads, before the offset commit).
package faults

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// EnvKillAt names the variable that arms a kill point.
const EnvKillAt = "PAYSTREAM_FAULT_KILL_AT"

var (
	once   sync.Once
	point  string
	after  int
	mu     sync.Mutex
	passed int
)

func load() {
	spec := os.Getenv(EnvKillAt)
	if spec == "" {
		return
	}
	point, after = spec, 1
	if i := strings.LastIndexByte(spec, ':'); i > 0 {
		if n, err := strconv.Atoi(spec[i+1:]); err == nil {
			point, after = spec[:i], n
		}
	}
}

// At kills this process with SIGKILL when name is the armed point and it
// has been reached the armed number of times.
func At(name string) {
	once.Do(load)
	if point == "" || name != point {
		return
	}
	mu.Lock()
	passed++
	hit := passed == after
	mu.Unlock()
	if hit {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
