package engine

import (
	"bytes"
	"sync"
)

// bufferPool keeps the row buffers of finished batches for the next ones,
// up to a bound in bytes: a batch's rows run to tens of megabytes, and a
// fresh buffer is zeroed when allocated. Not a sync.Pool, which every
// garbage collection empties, several times a batch.
type bufferPool struct {
	mu    sync.Mutex
	free  []*bytes.Buffer
	bytes int // capacity of the buffers in free
}

// get returns an empty buffer, preferring the smallest kept one that
// holds want bytes without growing, else the largest kept one.
func (p *bufferPool) get(want int) *bytes.Buffer {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, b := range p.free {
		switch {
		case best < 0:
			best = i
		case b.Cap() >= want && (p.free[best].Cap() < want || b.Cap() < p.free[best].Cap()):
			best = i // fits, and is the smallest that does so far
		case p.free[best].Cap() < want && b.Cap() > p.free[best].Cap():
			best = i // nothing fits yet: the largest
		}
	}
	if best < 0 {
		b := new(bytes.Buffer)
		b.Grow(want)
		return b
	}
	b := p.free[best]
	p.free = append(p.free[:best], p.free[best+1:]...)
	p.bytes -= b.Cap()
	b.Reset()
	b.Grow(want)
	return b
}

// put keeps b for a later get if the kept buffers stay within limit bytes.
// b must no longer be read.
func (p *bufferPool) put(b *bytes.Buffer, limit int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+b.Cap() > limit {
		return
	}
	p.free = append(p.free, b)
	p.bytes += b.Cap()
}
