package fraud_test

import (
	"testing"

	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// BenchmarkScore scores 5,000-payment batches, the default batch size, so
// the batch-local velocity and device maps grow as they do in production.
func BenchmarkScore(b *testing.B) {
	const batchSize = 5000
	opts := simulation.DefaultOptions()
	opts.DuplicateRatio, opts.MalformedRatio, opts.LateRatio = 0, 0, 0
	g, err := simulation.NewGenerator(opts)
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]payment.Event, batchSize)
	for i := range evs {
		if evs[i], err = payment.Parse(g.Next().Value); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var s *fraud.Scorer
	for i := 0; b.Loop(); i++ {
		if i%batchSize == 0 {
			s = fraud.NewScorer()
		}
		s.Score(&evs[i%batchSize])
	}
}
