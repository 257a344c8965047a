package engine

import (
	"sync"
	"time"

	"github.com/paystream/paystream/contract"
)

// pace remembers how long each partition's last batches took on this
// worker, from the plan's cut to the end of their Load, so that a plan
// leaves them that share of the linger: a record's latency is its wait
// in the plan plus its batch's write, and a sink that writes slowly
// (the emulator's Storage Write) then gets smaller batches, one that
// writes fast larger ones. Only when a range is cut depends on it, and
// the range is recorded in the partition's history, so no decision a
// retry repeats does.
type pace struct {
	mu   sync.Mutex
	cuts map[string]time.Time       // batch ID → when its plan cut it
	took map[string][]time.Duration // partition → its last paceSamples batches
}

// paceSamples is how many recent batches a partition's write time is
// taken over: the longest of them counts, for the tail's sake.
const paceSamples = 4

// cut notes when the plan of r cut it. Cuts whose batch never loaded
// here (a plan called off, a batch moved) are dropped after a while.
func (p *pace) cut(r contract.Range, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cuts == nil {
		p.cuts = map[string]time.Time{}
	}
	for id, t := range p.cuts {
		if at.Sub(t) > 10*time.Minute {
			delete(p.cuts, id)
		}
	}
	p.cuts[r.ID()] = at
}

// loaded notes that r's Load ended at at; nothing when it was not cut
// on this worker.
func (p *pace) loaded(r contract.Range, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutAt, ok := p.cuts[r.ID()]
	if !ok {
		return
	}
	delete(p.cuts, r.ID())
	if p.took == nil {
		p.took = map[string][]time.Duration{}
	}
	key := windowKey(r.Topic, r.Partition)
	s := append(p.took[key], at.Sub(cutAt))
	if len(s) > paceSamples {
		s = s[len(s)-paceSamples:]
	}
	p.took[key] = s
}

// linger is how long a short batch of the partition waits to fill, from
// its first record's produce time: the linger less the longest write of
// its recent batches, and at least a quarter of the linger, so that a
// sink slower than the linger still gets batches of some size. A
// partition this worker has written no batch of yet (it just started, or
// took the partition over from a worker that died) waits that floor: its
// records may have waited through the outage already, and its first
// batch measures the write. (Not less: a worker that plans on a shared
// queue may never load the batches it cuts, and so never learn.)
func (p *pace) linger(topic string, partition int, linger time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	took := p.took[windowKey(topic, partition)]
	if len(took) == 0 {
		return linger / 4
	}
	var longest time.Duration
	for _, d := range took {
		longest = max(longest, d)
	}
	return max(linger-longest, linger/4)
}
