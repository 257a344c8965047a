package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/warehouse"
)

// localBigQuery starts a one-partition local stack and opens its BigQuery.
func localBigQuery(t *testing.T) (config.Config, *bigquery.Client) {
	t.Helper()
	s := devstacktest.Start(t, devstacktest.Config(t, 1))
	cfg := s.ClientConfig()
	bq, err := warehouse.Open(context.Background(), cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bq.Close() })
	return cfg, bq
}

// TestLocalStorageWriteKeepsTheDocumentedOffsets holds the local stack's
// Storage Write API (the emulator, patched in tools/) to what BigQuery
// documents for COMMITTED streams, on which storagewrite mode's exactly
// once rests: an append at the stream's end is written; at an offset
// already written it is refused with ALREADY_EXISTS, past the end with
// OUT_OF_RANGE, and the stream goes on; TIMESTAMPs read back exactly.
func TestLocalStorageWriteKeepsTheDocumentedOffsets(t *testing.T) {
	ctx := context.Background()
	cfg, bq := localBigQuery(t)
	w, err := warehouse.NewStorageWriter(ctx, bq, cfg.BigQueryDataset, cfg.BigQueryStorageEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	table := contract.TableBatchLedger
	stream, err := w.CreateStream(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 1, 2, 3, 456789000, time.UTC)
	row := func(id string) string {
		return fmt.Sprintf(`{"batch_id":%q,"kafka_topic":"payments","kafka_partition":0,"start_offset":0,"end_offset":1,"records":1,"loaded":1,`+
			`"duplicates":0,"errors":0,"late":0,"skipped":0,"next_window_start":0,"loaded_at":%q}`+"\n", id, at.Format(time.RFC3339Nano))
	}
	encode := func(ids ...string) [][]byte {
		var ndjson []byte
		for _, id := range ids {
			ndjson = append(ndjson, row(id)...)
		}
		rows, err := w.Encode(ctx, table, warehouse.JSONRows(t, string(ndjson)))
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	if err := w.Append(ctx, stream, table, 0, encode("a", "b")); err != nil {
		t.Fatalf("append at the end: %v", err)
	}
	if err := w.Append(ctx, stream, table, 0, encode("a", "b")); status.Code(err) != codes.AlreadyExists {
		t.Errorf("append at a written offset: %v, want ALREADY_EXISTS", err)
	}
	if err := w.Append(ctx, stream, table, 5, encode("x")); status.Code(err) != codes.OutOfRange {
		t.Errorf("append past the end: %v, want OUT_OF_RANGE", err)
	}
	if err := w.Append(ctx, stream, table, 2, encode("c")); err != nil {
		t.Errorf("append at the end after refusals: %v", err)
	}
	// What the pipeline calls: a retried batch is written once, a batch
	// after a missing one is refused for good.
	if err := warehouse.AppendOnce(ctx, w, stream, table, 2, encode("c")); err != nil {
		t.Errorf("AppendOnce of rows already there: %v", err)
	}
	if err := warehouse.AppendOnce(ctx, w, stream, table, 9, encode("y")); !errors.Is(err, warehouse.ErrOffsetAhead) {
		t.Errorf("AppendOnce past the end: %v, want ErrOffsetAhead", err)
	}

	it, err := bq.Query(fmt.Sprintf("SELECT batch_id, loaded_at FROM `%s.%s.%s` ORDER BY batch_id", cfg.BigQueryProject, cfg.BigQueryDataset, table)).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		var r []bigquery.Value
		err := it.Next(&r)
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ts, _ := r[1].(time.Time)
		if !ts.Equal(at) {
			t.Errorf("row %v: loaded_at %v, wrote %v", r[0], ts, at)
		}
		got = append(got, r[0].(string))
	}
	if fmt.Sprint(got) != "[a b c]" {
		t.Errorf("the table holds %v, want each row once: [a b c]", got)
	}
}

// TestAColumnAddedWhileTheWorkerRunsIsWritten: a worker that read a
// table's schema before a column was added (the schema applied after the
// workers were rolled out) writes rows carrying that column once it
// exists, instead of refusing them until it restarts.
func TestAColumnAddedWhileTheWorkerRunsIsWritten(t *testing.T) {
	ctx := context.Background()
	cfg, bq := localBigQuery(t)
	w, err := warehouse.NewStorageWriter(ctx, bq, cfg.BigQueryDataset, cfg.BigQueryStorageEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const table = "grows"
	ref := bq.Dataset(cfg.BigQueryDataset).Table(table)
	if err := ref.Create(ctx, &bigquery.TableMetadata{Schema: bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}}}); err != nil {
		t.Fatal(err)
	}
	stream, err := w.CreateStream(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := w.Encode(ctx, table, warehouse.JSONRows(t, `{"id":"a"}`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, stream, table, 0, rows); err != nil {
		t.Fatal(err)
	}
	// BigQuery adds the column in place (tables.patch); the emulator
	// cannot, so the table is made again with it, which the worker sees
	// alike: a schema with a column its encoder lacks.
	if err := ref.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ref.Create(ctx, &bigquery.TableMetadata{Schema: bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType}, {Name: "note", Type: bigquery.StringFieldType}}}); err != nil {
		t.Fatal(err)
	}
	if stream, err = w.CreateStream(ctx, table); err != nil {
		t.Fatal(err)
	}
	rows, err = w.Encode(ctx, table, warehouse.JSONRows(t, `{"id":"b","note":"added"}`+"\n"))
	if err != nil {
		t.Fatalf("a row with the added column: %v", err)
	}
	if err := w.Append(ctx, stream, table, 0, rows); err != nil {
		t.Fatalf("append with the added column: %v", err)
	}
	it, err := bq.Query(fmt.Sprintf("SELECT id, IFNULL(note, '') FROM `%s.%s.%s` ORDER BY id", cfg.BigQueryProject, cfg.BigQueryDataset, table)).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		var r []bigquery.Value
		err := it.Next(&r)
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(r[0], "=", r[1]))
	}
	if want := "[b=added]"; fmt.Sprint(got) != want {
		t.Errorf("the table holds %v, want %s", got, want)
	}
}
