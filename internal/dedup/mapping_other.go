//go:build !linux

package dedup

const offHeapSupported = false

// allocate takes size bytes from the Go heap: paystream runs on Linux, and
// elsewhere (a developer's machine) the GC's pacing matters less.
func allocate(size int) *mapping { return &mapping{b: make([]byte, size)} }

func unmap([]byte) {}
