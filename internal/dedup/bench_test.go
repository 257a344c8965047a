package dedup_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

func events(b *testing.B, n int) ([]payment.Event, [][]byte) {
	b.Helper()
	opts := simulation.DefaultOptions()
	opts.DuplicateRatio, opts.MalformedRatio, opts.LateRatio = 0.03, 0, 0
	g, err := simulation.NewGenerator(opts)
	if err != nil {
		b.Fatal(err)
	}
	evs, raws := make([]payment.Event, n), make([][]byte, n)
	for i := range evs {
		r := g.Next()
		if evs[i], err = payment.Parse(r.Value); err != nil {
			b.Fatal(err)
		}
		raws[i] = r.Value
	}
	return evs, raws
}

// BenchmarkWindowObserve is the dedup decision per record, on a window
// that keeps growing as a long stream's would (old IDs are swept once they
// fall behind the watermark).
func BenchmarkWindowObserve(b *testing.B) {
	evs, raws := events(b, 1<<16)
	w := dedup.New(10*time.Minute, 0, time.Time{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e := evs[i%len(evs)]
		// Shift event time forward each lap so the window sweeps and
		// stays bounded instead of seeing only duplicates.
		e.EventTime = e.EventTime.Add(time.Duration(i/len(evs)) * time.Hour)
		e.TransactionID += string(rune('a' + (i/len(evs))%26))
		if _, err := w.Observe(int64(i), &e, raws[i%len(raws)], e.EventTime); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(w.Len()), "ids-held")
}

// BenchmarkWindowBytesPerEntry reports the memory one held transaction ID
// costs, on the Go heap and off it, the figure that sizes a worker's memory for a lateness window.
// Each event gets an ID string of its own, as a parsed batch's do, so an
// index that kept the strings would pay for them here too.
func BenchmarkWindowBytesPerEntry(b *testing.B) {
	const n = 100_000
	evs, raws := events(b, n)
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		w := dedup.New(24*time.Hour, 0, time.Time{})
		for i := range evs {
			e := evs[i]
			e.TransactionID = strings.Clone(e.TransactionID)
			if _, err := w.Observe(int64(i), &e, raws[i], e.EventTime); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		// The table itself is outside the Go heap (see mapping.go).
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)+int64(w.Bytes()))/float64(w.Len()), "bytes/entry")
		runtime.KeepAlive(w)
		b.StartTimer()
	}
}
