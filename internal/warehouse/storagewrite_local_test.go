package warehouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// queryInts runs sql and returns its one row's integers.
func queryInts(t *testing.T, bq *bigquery.Client, sql string) []int64 {
	t.Helper()
	it, err := bq.Query(sql).Read(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var row []bigquery.Value
	if err := it.Next(&row); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out := make([]int64, len(row))
	for i, v := range row {
		out[i], _ = v.(int64)
	}
	return out
}

// TestLocalStorageWriteRefusesRequestsOver10MB holds the local Storage
// Write API to BigQuery's limit on one AppendRows request: 11 rows of
// 1 MB in one request are refused with INVALID_ARGUMENT and write
// nothing; 8 of them (8 MB, what one append of AppendOnce may carry) are
// taken; AppendOnce writes the 11 in appends under the limit. (The
// unpatched emulator took no request over gRPC's default 4 MiB, answering
// RESOURCE_EXHAUSTED, so the local stack refused appends BigQuery takes
// and never answered as BigQuery does.)
func TestLocalStorageWriteRefusesRequestsOver10MB(t *testing.T) {
	ctx := context.Background()
	cfg, bq := localBigQuery(t)
	// Straight to the emulator, and through the proxy the fault tests
	// put in front of it, which must pass what BigQuery takes.
	proxy := devstacktest.NewStorageProxy(t, cfg.BigQueryStorageEndpoint)
	for _, via := range []struct{ name, endpoint string }{{"emulator", cfg.BigQueryStorageEndpoint}, {"proxy", proxy.Addr}} {
		t.Run(via.name, func(t *testing.T) {
			refusesOver10MB(ctx, t, cfg, bq, via.endpoint, "big-"+via.name)
		})
	}
}

func refusesOver10MB(ctx context.Context, t *testing.T, cfg config.Config, bq *bigquery.Client, endpoint, batch string) {
	w, err := warehouse.NewStorageWriter(ctx, bq, cfg.BigQueryDataset, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	table := contract.TableIngestErrors
	stream, err := w.CreateStream(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1_000_000
	pad := strings.Repeat("x", size)
	encode := func(first, n int) [][]byte {
		var ndjson []byte
		for i := first; i < first+n; i++ {
			ndjson = fmt.Appendf(ndjson, `{"kafka_topic":"payments","kafka_partition":0,"kafka_offset":%d,"reason":"oversized",`+
				`"raw":%q,"raw_encoding":"utf8","batch_id":%q,"loaded_at":"2026-12-03T01:02:03Z"}`+"\n", i, pad, batch)
		}
		rows, err := w.Encode(ctx, table, warehouse.JSONRows(t, string(ndjson)))
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	wire := func(rows [][]byte) int {
		n := 0
		for _, r := range rows {
			n += len(r) + 4 // a row's tag and length: 1 + 3 bytes at this size
		}
		return n
	}
	count := fmt.Sprintf("SELECT COUNT(*), COALESCE(SUM(LENGTH(raw)), 0), COUNT(DISTINCT kafka_offset) FROM `%s.%s.%s` WHERE batch_id = '%s'",
		cfg.BigQueryProject, cfg.BigQueryDataset, table, batch)

	over := encode(0, 11)
	if n := wire(over); n <= warehouse.AppendRequestLimit {
		t.Fatalf("the request's rows are %d bytes, want over %d", n, warehouse.AppendRequestLimit)
	}
	if err := w.Append(ctx, stream, table, 0, over); status.Code(err) != codes.InvalidArgument {
		t.Errorf("one append of %d bytes: %v, want INVALID_ARGUMENT", wire(over), err)
	}
	if got := queryInts(t, bq, count); got[0] != 0 {
		t.Fatalf("a refused append wrote %d rows", got[0])
	}

	under := encode(0, 8)
	if n := wire(under); n > warehouse.MaxAppendBytes {
		t.Fatalf("the request's rows are %d bytes, want at most %d", n, warehouse.MaxAppendBytes)
	}
	if err := w.Append(ctx, stream, table, 0, under); err != nil {
		t.Errorf("one append of %d bytes at the stream's start: %v", wire(under), err)
	}
	if err := warehouse.AppendOnce(ctx, w, stream, table, 8, encode(8, 11)); err != nil {
		t.Errorf("AppendOnce of 11 rows of 1 MB: %v", err)
	}
	if got, want := queryInts(t, bq, count), []int64{19, 19 * size, 19}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the table holds (rows, raw bytes, offsets) %v, want %v", got, want)
	}
}

// TestLocalStorageWriteLoadsABatchOver10MB runs the pipeline in
// storagewrite mode on the local stack over a partition whose first batch
// quarantines 16 records of 900 KB (oversized, kept whole in raw) among
// 2,000 simulated payments: that batch's ingest_errors rows are over
// 14 MB, more than one AppendRows request may carry. It must load
// exactly: every figure reconciles with the simulator's manifest (counts,
// and sums to the cent), and each large record is in ingest_errors once,
// whole. (Appends split by rows only sent the 14 MB in one request: the
// batch failed, and was run again for ever.)
func TestLocalStorageWriteLoadsABatchOver10MB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := devstacktest.Start(t, devstacktest.Config(t, 1))
	cfg := s.ClientConfig()
	cfg.WriteMode = config.WriteModeStorageWrite
	tc, err := pipeline.DialTemporal(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	worker, err := pipeline.NewWorker(ctx, cfg, tc, pipeline.WorkerOptions{Metrics: metrics.New()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.Stop)
	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bq.Close() })
	tuning := operator.DefaultTuning()
	tuning.MaxBytes, tuning.PollFor = 64<<20, time.Second // the whole log in one batch
	op := &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: tuning}

	m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 2000})
	if err != nil {
		t.Fatal(err)
	}
	const large, size = 16, 900_000
	if size <= payment.MaxRecordBytes {
		t.Fatalf("records of %d bytes are not oversized (limit %d)", size, payment.MaxRecordBytes)
	}
	kw := cfg.Kafka().Producer(cfg.Topic, kafkalog.ProducerOptions{Partitioner: kafkalog.RoundRobin, BatchSize: 1, BatchBytes: 2 << 20})
	defer kw.Close()
	for i := range large {
		// Over payment.MaxRecordBytes: quarantined as oversized, with its
		// bytes.
		value := fmt.Sprintf(`{"big":%02d,"pad":"%s`, i, strings.Repeat("x", size-len(`{"big":00,"pad":"`)))
		if err := kw.Produce(ctx, kafkalog.Message{Key: fmt.Appendf(nil, "big-%d", i), Value: []byte(value)}); err != nil {
			t.Fatal(err)
		}
	}
	m.ErrorsByReason[string(payment.ReasonOversized)] += large

	if _, err := op.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 4*time.Minute)
	defer waitCancel()
	if err := op.WaitCaughtUp(waitCtx, nil); err != nil {
		sts, _ := op.Status(ctx)
		for _, st := range sts {
			t.Logf("partition %d: %s, committed %d of %d, %d batches done, last error: %s", st.Partition, st.State, st.Committed, st.HighWatermark, st.BatchesDone, st.LastError)
		}
		t.Fatalf("not caught up: %v", err)
	}
	report, err := op.Reconcile(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Fatalf("reconciliation failed:\n%s", out.String())
	}
	table := fmt.Sprintf("`%s.%s.%s`", cfg.BigQueryProject, cfg.BigQueryDataset, contract.TableIngestErrors)
	got := queryInts(t, bq, "SELECT COUNT(*), SUM(LENGTH(raw)), COUNT(DISTINCT kafka_offset) FROM "+table+` WHERE STARTS_WITH(raw, '{"big":')`)
	if want := []int64{large, large * size, large}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("large records in ingest_errors (rows, bytes, offsets): %v, want %v", got, want)
	}
	biggest := queryInts(t, bq, "SELECT SUM(LENGTH(raw)) AS n FROM "+table+" GROUP BY batch_id ORDER BY n DESC LIMIT 1")
	if biggest[0] <= warehouse.AppendRequestLimit {
		t.Errorf("the largest batch quarantined %d bytes, want over %d: the test did not cross the request limit", biggest[0], warehouse.AppendRequestLimit)
	}
}
