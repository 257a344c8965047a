package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// stackWithPayments starts a devstack with one partition holding n
// simulated records and returns activities wired to it.
func stackWithPayments(t *testing.T, n int) (*devstack.Stack, *Engine, simulation.Manifest) {
	t.Helper()
	ctx := context.Background()
	cfg := devstacktest.Config(t, 1)
	s := devstacktest.Start(t, cfg)
	m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: s.ClientConfig().Kafka(), Topic: cfg.Topic, Events: n})
	if err != nil {
		t.Fatal(err)
	}
	bq, err := warehouse.Open(ctx, cfg.Project, s.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bq.Close() })
	return s, New(Config{Kafka: s.ClientConfig().Kafka(), ConsumerGroup: "paystream", BigQuery: bq, Dataset: cfg.Dataset, Emulator: true}), m
}

func decide(t *testing.T, a *Engine, spec contract.Spec) contract.LoadInput {
	t.Helper()
	ctx := context.Background()
	d, err := a.Decide(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	enr, err := a.Score(ctx, spec, d)
	if err != nil {
		t.Fatal(err)
	}
	return contract.LoadInput{Spec: spec, Decisions: d, Enrichment: enr}
}

type tableCounts map[string]int64

func countRows(t *testing.T, a *Engine) tableCounts {
	t.Helper()
	out := tableCounts{}
	for _, table := range contract.LoadOrder {
		q := fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.%s`", a.BigQuery.Project(), a.Dataset, table)
		it, err := a.BigQuery.Query(q).Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var row []bigquery.Value
		if err := it.Next(&row); err != nil && !errors.Is(err, iterator.Done) {
			t.Fatal(err)
		}
		out[table] = row[0].(int64)
	}
	return out
}

// TestLoadAppendsOnce runs Load for one batch once, then again, then twice
// at the same time: every table holds the batch's rows once (invariant 4).
func TestLoadAppendsOnce(t *testing.T) {
	_, a, m := stackWithPayments(t, 3000)
	spec := contract.Spec{Range: contract.Range{Topic: m.Topic, Partition: 0, Start: 0, End: m.EndOffsets[0]}, AllowedLateness: 10 * time.Minute}
	in := decide(t, a, spec)
	ctx := context.Background()

	totals, err := a.Write(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if totals.Loaded != m.UniqueIDs || totals.Duplicates != m.Duplicates || totals.Late != m.RecordsByKind[simulation.KindLate] {
		t.Fatalf("totals %+v disagree with the manifest (unique %d, duplicates %d)", totals, m.UniqueIDs, m.Duplicates)
	}
	once := countRows(t, a)
	if once["transactions"] != int64(m.UniqueIDs) || once["dedup_audit"] != int64(m.Duplicates) || once["batch_ledger"] != 1 {
		t.Fatalf("after one load: %v; want %d transactions, %d dedup_audit, 1 ledger row", once, m.UniqueIDs, m.Duplicates)
	}

	if _, err := a.Write(ctx, in); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = a.Write(ctx, in)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent load: %v", err)
		}
	}
	if again := countRows(t, a); fmt.Sprint(again) != fmt.Sprint(once) {
		t.Fatalf("after loading the same batch 4 times: %v, after once: %v", again, once)
	}
}

// TestLoadCommitsTheOffsetLast: the consumer group's offset moves to the
// batch's end only once every table is loaded (invariant 5). A Load whose
// tables cannot be written commits nothing; the same batch loaded after
// that commits its end.
func TestLoadCommitsTheOffsetLast(t *testing.T) {
	_, a, m := stackWithPayments(t, 500)
	spec := contract.Spec{Range: contract.Range{Topic: m.Topic, Partition: 0, Start: 0, End: m.EndOffsets[0]}, AllowedLateness: 10 * time.Minute}
	in := decide(t, a, spec)
	ctx := context.Background()

	broken := New(Config{Kafka: a.Kafka, ConsumerGroup: a.ConsumerGroup, BigQuery: a.BigQuery, Dataset: "no_such_dataset", Emulator: true})
	defer broken.Close()
	if _, err := broken.Write(ctx, in); err == nil {
		t.Fatal("a load into a missing dataset succeeded")
	}
	if got := committedOffset(t, a, m.Topic); got != -1 {
		t.Fatalf("after a failed load the group's offset is %d, want none (-1)", got)
	}
	if _, err := a.Write(ctx, in); err != nil {
		t.Fatal(err)
	}
	if got := committedOffset(t, a, m.Topic); got != spec.End {
		t.Fatalf("after the load the group's offset is %d, want the batch's end %d", got, spec.End)
	}
}

// committedOffset is the group's committed offset of partition 0, -1 when
// it has none.
func committedOffset(t *testing.T, a *Engine, topic string) int64 {
	t.Helper()
	offsets, err := kafkalog.CommittedOffsets(context.Background(), a.Kafka, a.ConsumerGroup, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	return offsets[0]
}
