package dedup

import "syscall"

const offHeapSupported = true

// allocate maps size bytes of zeroed memory from the system, or falls back
// to the Go heap when it will not.
func allocate(size int) *mapping {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return &mapping{b: make([]byte, size)}
	}
	// Huge pages, where the system gives them on request: a table is
	// probed at random, and with 4 KiB pages most probes of a large one
	// also miss the TLB. Advice only: its failure changes nothing.
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
	offHeapBytes.Add(int64(size))
	return &mapping{b: b, offHeap: true}
}

func unmap(b []byte) {
	// Munmap fails only for a range that is not a mapping; these are.
	_ = syscall.Munmap(b)
}
