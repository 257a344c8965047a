package operator

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/engine"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestLedgerHandsOnWhatABatchDecidedWith: a partition whose producers'
// clock crawls (a millisecond an event) reaches a window bound of 1,000
// IDs, so its watermark's floor is raised at offsets 1500 and 2000; the
// payment at offset 500 is then sent again at offset 2000, behind the
// floor: the running partition files it late. Its batches are decided by
// a warm worker and loaded into the local BigQuery. Then, on the same
// log:
//   - `start` resumes from the ledger after offset 2000, and a cold worker
//     decides the next batch with that window: it must decide as the warm
//     one did (without the floors it loaded the resend a second time);
//   - backfill builds every batch's spec from the ledger, with an operator
//     configured otherwise: each must be the spec the batch ran with
//     (floors, lateness, window bound), and decide alike on a cold worker.
func TestLedgerHandsOnWhatABatchDecidedWith(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := devstacktest.Start(t, devstacktest.Config(t, 1))
	cfg := s.ClientConfig()
	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bq.Close() })

	const n, size, bound, lateness = 2500, 500, 1000, time.Hour
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := base.Add(10 * time.Second)
	var recs []*kgo.Record
	for i := range n {
		id, at := fmt.Sprintf("p%d", i), base.Add(time.Duration(i)*time.Millisecond)
		if i == 2000 {
			id, at = "p500", base.Add(500*time.Millisecond) // the resend
		}
		v := fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"amount":"10.00","currency":"EUR","customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`,
			id, at.Format(time.RFC3339Nano))
		recs = append(recs, &kgo.Record{Key: []byte(id), Value: []byte(v), Timestamp: ts})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.KafkaBrokers...), kgo.DefaultProduceTopic(cfg.Topic))
	if err != nil {
		t.Fatal(err)
	}
	err = cl.ProduceSync(ctx, recs...).FirstErr()
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}

	worker := func(cold bool) *engine.Engine {
		e := engine.New(engine.Config{Kafka: cfg.Kafka(), BigQuery: bq, Dataset: cfg.BigQueryDataset, ConsumerGroup: cfg.ConsumerGroup,
			Emulator: true, RebuildEveryBatch: cold})
		t.Cleanup(e.Close)
		return e
	}
	decide := func(a *engine.Engine, spec contract.Spec) contract.Decisions {
		t.Helper()
		d, err := a.Decide(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// The running partition: one warm worker, batch after batch.
	warm := worker(false)
	var specs []contract.Spec
	var decided []contract.Decisions
	window := contract.Window{}
	for start := int64(0); start < n; start += size {
		spec := contract.Spec{Range: contract.Range{Topic: cfg.Topic, Start: start, End: start + size}, Window: window,
			AllowedLateness: lateness, MaxWindowIDs: bound}
		d := decide(warm, spec)
		e, err := warm.Score(ctx, spec, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := warm.Write(ctx, contract.LoadInput{Spec: spec, Decisions: d, Enrichment: e}); err != nil {
			t.Fatal(err)
		}
		specs, decided, window = append(specs, spec), append(decided, d), d.Next
		if start == 1500 {
			// Where `start` would resume were the partition stopped here.
			o := &Operator{Config: cfg, BigQuery: bq}
			rp, err := o.resumePoints(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rp[0].next != 2000 || !reflect.DeepEqual(rp[0].window, d.Next) {
				t.Errorf("the ledger resumes partition 0 at %d with window %+v; the partition went on at 2000 with %+v", rp[0].next, rp[0].window, d.Next)
			}
			next := contract.Spec{Range: contract.Range{Topic: cfg.Topic, Start: 2000, End: 2500}, Window: rp[0].window,
				AllowedLateness: lateness, MaxWindowIDs: bound}
			fromLedger := decide(worker(true), next)
			warmNext := decide(worker(false), next) // a worker that kept nothing decides as cold
			if fromLedger.Loaded != 499 || !reflect.DeepEqual([]int64(fromLedger.LateOffsets), []int64{2000}) || !reflect.DeepEqual(fromLedger, warmNext) {
				t.Errorf("from the ledger's window a cold worker decides offsets 2000-2499: %d loaded, late %v; want 499 loaded and the resend late",
					fromLedger.Loaded, fromLedger.LateOffsets)
			}
		}
	}
	if got := decided[4]; got.Loaded != 499 || !reflect.DeepEqual([]int64(got.LateOffsets), []int64{2000}) {
		t.Fatalf("the warm worker decided offsets 2000-2499: %d loaded, late %v; want 499 and the resend late", got.Loaded, got.LateOffsets)
	}
	for _, q := range []struct {
		sql  string
		want int64
	}{
		{"SELECT COUNT(*) FROM `%s.%s.transactions` WHERE transaction_id = 'p500'", 1},
		{"SELECT COUNT(*) FROM `%s.%s.transactions`", 2499},
		{"SELECT CAST(SUM(amount) * 100 AS INT64) FROM `%s.%s.transactions`", 2499 * 1000},
		{"SELECT COUNT(*) FROM `%s.%s.ingest_errors` WHERE kafka_offset = 2000 AND reason = 'late'", 1},
	} {
		sql := fmt.Sprintf(q.sql, cfg.BigQueryProject, cfg.BigQueryDataset)
		it, err := bq.Query(sql).Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r []bigquery.Value
		if err := it.Next(&r); err != nil {
			t.Fatal(err)
		}
		if v, _ := r[0].(int64); v != q.want {
			t.Errorf("%s: %v, want %d", sql, r[0], q.want)
		}
	}

	// Backfill, by an operator whose settings changed since.
	changed := cfg
	changed.AllowedLateness, changed.MaxWindowIDs = 2*time.Hour, 0
	o := &Operator{Config: changed, BigQuery: bq}
	got, err := o.backfillSpecs(ctx, 0, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, specs) {
		t.Fatalf("backfill's specs from the ledger:\n%+v\nthe partition ran:\n%+v", got, specs)
	}
	for i, spec := range got {
		if d := decide(worker(true), spec); !reflect.DeepEqual(d, decided[i]) {
			t.Errorf("backfill of %s on a cold worker: %d loaded, late %v; the partition %d loaded, late %v", spec.ID(), d.Loaded, d.LateOffsets,
				decided[i].Loaded, decided[i].LateOffsets)
		}
	}
}
