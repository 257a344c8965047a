package main

import (
	"testing"
	"time"
)

// TestClassifySortsSamplesByPart: a sample counts for the activity on its
// stack before the SDK frames that called it; the rest by GC, SDK or
// other.
func TestClassifySortsSamplesByPart(t *testing.T) {
	traces := `File: worker
Type: cpu
-----------+-------------------------------------------------------
      30ms   runtime.mallocgc (inline)
             github.com/paystream/paystream/internal/payment.Parse
             github.com/paystream/paystream/activities.(*Activities).PlanBatch
             go.temporal.io/sdk/internal.executeFunction
-----------+-------------------------------------------------------
     1.20s   runtime.scanObject
             runtime.gcBgMarkWorker
-----------+-------------------------------------------------------
      20ms   compress/flate.(*compressor).deflate
             google.golang.org/grpc.compress
-----------+-------------------------------------------------------
      10ms   syscall.Syscall6
-----------+-------------------------------------------------------
      40ms   runtime.memmove
             github.com/paystream/paystream/activities.appendLoaded (inline)
             github.com/paystream/paystream/activities.(*Activities).Load
             go.temporal.io/sdk/internal.executeFunction
-----------+-------------------------------------------------------
`
	byPart, total, err := classify([]byte(traces))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		cpuParts[0].part: 30 * time.Millisecond,
		cpuParts[3].part: 40 * time.Millisecond,
		cpuParts[4].part: 1200 * time.Millisecond,
		cpuParts[5].part: 20 * time.Millisecond,
		otherPart:        10 * time.Millisecond,
	}
	if total != 1300*time.Millisecond || len(byPart) != len(want) {
		t.Fatalf("total %v, parts %v; want 1.3s in %v", total, byPart, want)
	}
	for part, d := range want {
		if byPart[part] != d {
			t.Errorf("%s: %v, want %v", part, byPart[part], d)
		}
	}
}
