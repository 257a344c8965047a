package engine

import (
	"bytes"
	"testing"
)

func TestBufferPoolKeepsBuffersWithinItsBound(t *testing.T) {
	var p bufferPool
	small, big := p.get(10), p.get(1000)
	small.WriteString("old rows")
	p.put(small, 2000)
	p.put(big, 2000)
	p.put(bytes.NewBuffer(make([]byte, 0, 5000)), 2000) // over the bound: dropped
	if len(p.free) != 2 || p.bytes != small.Cap()+big.Cap() {
		t.Fatalf("kept %d buffers of %d bytes, want the two within the bound", len(p.free), p.bytes)
	}
	// The smallest that fits, emptied.
	if got := p.get(500); got != big {
		t.Errorf("get(500) did not return the kept 1,000-byte buffer")
	}
	if got := p.get(0); got != small || got.Len() != 0 {
		t.Errorf("get(0) = %p with %d bytes, want the small buffer, empty", got, got.Len())
	}
	if p.bytes != 0 || len(p.free) != 0 {
		t.Errorf("after taking both: %d buffers of %d bytes kept", len(p.free), p.bytes)
	}
	// Nothing fits: the largest kept one, grown.
	p.put(small, 2000)
	p.put(big, 2000)
	if got := p.get(1500); got != big || got.Cap() < 1500 {
		t.Errorf("get(1500) = cap %d, want the largest kept buffer grown to 1,500", got.Cap())
	}
}
