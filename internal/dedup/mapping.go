package dedup

import "sync/atomic"

// A Window's table is the bulk of a worker's memory: three million held
// IDs, 170 MB, for a 10-minute window at 5,000 events/s. On the Go heap it
// would count towards the garbage collector's pacing, which lets the heap
// grow to twice what is live before it collects, so the worker would need
// twice the table's memory for no work: the table holds no pointers and
// costs the collector nothing to mark. Outside the heap it costs what it
// holds. Large caches in Go do the same, for the same reason (VictoriaMetrics'
// fastcache, for one).
//
// mapping is that memory. It is given back explicitly when a table is
// resized, and by a runtime cleanup when a Window is dropped.
type mapping struct {
	b       []byte
	offHeap bool // from the system, not the Go heap
}

// offHeapBytes is the memory all mappings outside the Go heap hold in this
// process. It is process-wide because the memory it counts is: the worker
// lowers the collector's memory limit by it (see OffHeapBytes).
var offHeapBytes atomic.Int64

// OffHeapBytes is the memory dedup windows hold outside the Go heap. The
// Go runtime's memory limit does not see it, so a process that sets one
// should lower it by this much.
func OffHeapBytes() int64 { return offHeapBytes.Load() }

func (m *mapping) free() {
	if m.b == nil {
		return
	}
	if m.offHeap {
		offHeapBytes.Add(-int64(len(m.b)))
		unmap(m.b)
	}
	m.b = nil
}
