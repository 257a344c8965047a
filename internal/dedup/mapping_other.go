//go:build !unix

package dedup

const offHeapSupported = false

// allocate takes size bytes from the Go heap where there is no mmap.
func allocate(size int) *mapping { return &mapping{b: make([]byte, size)} }

func unmap([]byte) {}
