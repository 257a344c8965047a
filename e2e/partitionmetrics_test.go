package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestStuckPartitionsKeepTheirOffsetMetrics: a partition that is paused
// and one whose workflow was terminated plan nothing, so the per-plan lag
// says nothing of them; records then wait on both. Each of two workers
// still exports, for both partitions, the log end offset Kafka reports,
// the group's committed offset, which is the end of the last batch in
// batch_ledger, and the time of that batch's load; the two workers export
// the same values.
func TestStuckPartitionsKeepTheirOffsetMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := Start(t, Options{Partitions: 2, NoWorker: true})
	cfg := s.ClientConfig()
	tc, err := pipeline.DialTemporal(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	var servers []*httptest.Server
	for range 2 {
		m := metrics.New()
		w, err := pipeline.NewWorker(ctx, cfg, tc, pipeline.WorkerOptions{Metrics: m, PartitionMetricsEvery: 300 * time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		srv := httptest.NewServer(w.HTTPHandler(tc, m))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	op := &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: tuning}
	if _, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := op.WaitCaughtUp(ctx, nil); err != nil {
		t.Fatal(err)
	}
	caughtUp := time.Now()

	// Partition 0 paused, partition 1's workflow terminated; then more
	// records arrive that neither loads.
	if _, err := op.Control(ctx, contract.PauseUpdate, []int{0}); err != nil {
		t.Fatal(err)
	}
	if err := tc.TerminateWorkflow(ctx, contract.IngestID(cfg.Topic, 1), "", "test: a dead partition"); err != nil {
		t.Fatal(err)
	}
	opts := simulation.DefaultOptions()
	opts.Seed++
	if _, err := simulation.Produce(ctx, opts, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 600}); err != nil {
		t.Fatal(err)
	}
	ends, err := kafkalog.HighWatermarks(ctx, cfg.Kafka(), cfg.Topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := kafkalog.CommittedOffsets(ctx, cfg.Kafka(), cfg.ConsumerGroup, cfg.Topic, 2)
	if err != nil {
		t.Fatal(err)
	}
	it, err := bq.Query(fmt.Sprintf("SELECT kafka_partition, MAX(end_offset), UNIX_MICROS(MAX(loaded_at)) FROM `%s.%s.batch_ledger` GROUP BY kafka_partition ORDER BY kafka_partition",
		cfg.BigQueryProject, cfg.BigQueryDataset)).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ledger [2]struct {
		End      int64
		LoadedAt time.Time
	}
	for p := range ledger {
		var row []bigquery.Value
		if err := it.Next(&row); err != nil {
			t.Fatalf("batch_ledger, partition %d: %v", p, err)
		}
		ledger[row[0].(int64)].End, ledger[row[0].(int64)].LoadedAt = row[1].(int64), time.UnixMicro(row[2].(int64))
	}
	for p := range 2 {
		if committed[p] != ledger[p].End || ends[p] <= committed[p] {
			t.Fatalf("partition %d: committed %d, last batch ends at %d, log end %d: want the commit at the batch's end and records waiting", p, committed[p], ledger[p].End, ends[p])
		}
	}

	type series struct{ committed, end, loaded float64 }
	read := func(srv *httptest.Server) (map[int]series, string) {
		resp, err := http.Get(srv.URL + pipeline.MetricsPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		text := string(b)
		out := map[int]series{}
		for p := range 2 {
			match := fmt.Sprintf(`partition="%d",topic="%s"`, p, cfg.Topic)
			if strings.Contains(text, metrics.PartitionCommitted+"{"+match) {
				out[p] = series{sum(text, metrics.PartitionCommitted, match), sum(text, metrics.PartitionLogEnd, match), sum(text, metrics.PartitionLastLoaded, match)}
			}
		}
		return out, text
	}
	// The exporters read Kafka every 300 ms: a second is plenty for the
	// records just produced, and a few more show the series stay.
	time.Sleep(3 * time.Second)
	var first map[int]series
	for i, srv := range servers {
		got, text := read(srv)
		for p := range 2 {
			g, ok := got[p]
			loadedAt := time.Unix(0, int64(g.loaded*1e9))
			switch {
			case !ok:
				t.Fatalf("worker %d exports nothing for stuck partition %d:\n%s", i, p, grep(text, "paystream_partition_"))
			case g.committed != float64(committed[p]) || g.end != float64(ends[p]):
				t.Errorf("worker %d, partition %d: committed %v, log end %v; Kafka has %d and %d", i, p, g.committed, g.end, committed[p], ends[p])
			case loadedAt.Before(ledger[p].LoadedAt) || loadedAt.After(caughtUp):
				t.Errorf("worker %d, partition %d: last loaded %s; the last batch loaded at %s, all were loaded by %s", i, p, loadedAt, ledger[p].LoadedAt, caughtUp)
			}
		}
		if i == 0 {
			first = got
		} else if fmt.Sprint(got) != fmt.Sprint(first) {
			t.Errorf("the workers export different values: %v and %v", first, got)
		}
	}
}
