package engine

import (
	"math"
	"testing"

	"github.com/paystream/paystream/internal/rows"
)

func TestBatchCacheFollowsTheMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		gcLimit int64
		want    int
	}{
		{math.MaxInt64, DefaultBatchCacheBytes}, // no limit
		{4 << 30, DefaultBatchCacheBytes},       // plenty
		{270 << 20, 270 << 20 / 4},              // 90 % of a 300 MiB container
	} {
		if got := BatchCacheBytesFor(c.gcLimit); got != c.want {
			t.Errorf("BatchCacheBytesFor(%d) = %d, want %d", c.gcLimit, got, c.want)
		}
	}
}

// TestBatchCacheEvictsOldestPastItsLimit: the cache never holds more than
// its limit, drops the oldest batch first, and refuses a batch larger
// than the whole limit.
func TestBatchCacheEvictsOldestPastItsLimit(t *testing.T) {
	var c batchCache
	const limit = 100
	c.put("a", cachedBatch{recs: make([]rows.Record, 1), size: 40}, limit)
	c.put("b", cachedBatch{recs: make([]rows.Record, 2), size: 40}, limit)
	c.put("c", cachedBatch{recs: make([]rows.Record, 3), size: 40}, limit) // a goes
	c.put("huge", cachedBatch{recs: make([]rows.Record, 4), size: 101}, limit)
	for id, want := range map[string]bool{"a": false, "b": true, "c": true, "huge": false} {
		if _, ok := c.get(id); ok != want {
			t.Errorf("batch %s cached: %v, want %v", id, ok, want)
		}
	}
	if c.size != 80 {
		t.Errorf("cache holds %d bytes, want 80", c.size)
	}
	c.drop("b")
	if c.size != 40 || len(c.order) != 1 {
		t.Errorf("after drop: %d bytes in %d batches, want 40 in 1", c.size, len(c.order))
	}
}
