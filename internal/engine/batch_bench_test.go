package engine

import (
	"context"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// BenchmarkBatch is one 5,000-record batch through plan, dedup, enrich and
// row building (everything Load does but upload), against an in-process
// Kafka-protocol broker: the worker's CPU per batch without any server.
func BenchmarkBatch(b *testing.B) {
	const batchSize = 5000
	ctx := context.Background()
	kc, _ := simulatedLog(b, "bench", simulation.DefaultOptions(), 4*batchSize)
	a := New(Config{Kafka: kc})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := int64(i%4) * batchSize
		plan, err := a.Plan(ctx, contract.PlanInput{Topic: "bench", Partition: 0, Next: start, MaxRecords: batchSize, MaxBytes: 8 << 20})
		if err != nil {
			b.Fatal(err)
		}
		spec := contract.Spec{Range: contract.Range{Topic: "bench", Partition: 0, Start: start, End: plan.End}, Window: contract.Window{Start: start}, AllowedLateness: 10 * time.Minute}
		a.RebuildEveryBatch = false
		d, err := a.Decide(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		enr, err := a.Score(ctx, spec, d)
		if err != nil {
			b.Fatal(err)
		}
		tables, _, err := a.BuildRows(ctx, contract.LoadInput{Spec: spec, Decisions: d, Enrichment: enr}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		a.batches.drop(spec.ID())
		for _, rows := range tables { // as the load-job sink does
			a.buffers.Put(warehouse.NDJSON(a.buffers.Get(800*len(rows)), rows))
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "records/s")
}
