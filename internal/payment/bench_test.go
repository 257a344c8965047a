package payment_test

import (
	"testing"

	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// validValues returns n valid simulated payment records, as the parser
// meets them on the topic.
func validValues(b *testing.B, n int) [][]byte {
	b.Helper()
	opts := simulation.DefaultOptions()
	opts.DuplicateRatio, opts.MalformedRatio, opts.LateRatio = 0, 0, 0
	g, err := simulation.NewGenerator(opts)
	if err != nil {
		b.Fatal(err)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = g.Next().Value
	}
	return out
}

// BenchmarkParse is the per-record cost every activity that reads a batch
// pays once per record.
func BenchmarkParse(b *testing.B) {
	values := validValues(b, 1024)
	var bytes int64
	for _, v := range values {
		bytes += int64(len(v))
	}
	b.SetBytes(bytes / int64(len(values)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := payment.Parse(values[i%len(values)]); err != nil {
			b.Fatal(err)
		}
	}
}
