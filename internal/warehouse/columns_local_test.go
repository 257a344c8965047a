package warehouse_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/internal/warehouse"
)

// typedRow is a row of the typed-columns test table: an ID and the typed
// values of a record's new fields, each as a load job's JSON string
// carries it.
type typedRow struct {
	id     string
	values map[string]string
}

func (r typedRow) Columns(c warehouse.Columns) {
	c.String("id", r.id)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.values {
			if !yield(k) {
				return
			}
		}
	}) {
		if name == "obj" {
			c.JSON(name, r.values[name])
		} else {
			c.String(name, r.values[name])
		}
	}
}

// TestLocalTypedColumnsAddedOnTheFly holds the local stack to what typed
// columns rest on in BigQuery: EnsureColumns adds NULLABLE columns in
// place, keeping the rows (NULL there), two writers adding columns at once
// both get theirs, and the new columns take their values from a load job
// and from a Storage Write stream opened before they existed, typed
// values given as strings; a column that exists is reported with its
// type, never changed.
func TestLocalTypedColumnsAddedOnTheFly(t *testing.T) {
	ctx := context.Background()
	cfg, bq := localBigQuery(t)
	table := bq.Dataset(cfg.BigQueryDataset).Table("typed_columns")
	if err := table.Create(ctx, &bigquery.TableMetadata{Schema: bigquery.Schema{{Name: "id", Type: bigquery.StringFieldType, Required: true}}}); err != nil {
		t.Fatal(err)
	}
	w, err := warehouse.NewStorageWriter(ctx, bq, cfg.BigQueryDataset, cfg.BigQueryStorageEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stream, err := w.CreateStream(ctx, table.TableID)
	if err != nil {
		t.Fatal(err)
	}
	streams := warehouse.Streams{Writer: w, At: map[string]warehouse.StreamAt{table.TableID: {Stream: stream}}}
	jobs := warehouse.Jobs{Loader: warehouse.Loader{Client: bq, Dataset: cfg.BigQueryDataset}, JobID: func(id, table string, attempt int) string {
		return fmt.Sprintf("typed_%s_%d", id, attempt)
	}}
	// A row before any new column, on the stream: its connection then has
	// the old schema.
	if _, err := streams.WriteTable(ctx, "v1", table.TableID, []warehouse.Row{typedRow{id: "v1"}}); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{"tier": "STRING", "tip": "NUMERIC", "n": "INT64", "flag": "BOOL", "big": "BIGNUMERIC", "obj": "JSON", "rate": "FLOAT64", "paid_at": "TIMESTAMP"}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	halves := [2]map[string]string{{}, {}}
	i := 0
	for name, typ := range want {
		halves[i%2][name] = typ
		i++
	}
	for i := range halves {
		wg.Go(func() {
			got, err := warehouse.EnsureColumns(ctx, table, halves[i])
			if err == nil && !mapsEqual(got, halves[i]) {
				err = fmt.Errorf("reported %v, want %v", got, halves[i])
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	md, err := table.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, typ := range want {
		i := slices.IndexFunc(md.Schema, func(f *bigquery.FieldSchema) bool { return f.Name == name })
		if i < 0 || warehouse.ColumnType(md.Schema[i]) != typ || md.Schema[i].Required {
			t.Errorf("column %s after two writers added columns at once: %+v, want a NULLABLE %s", name, md.Schema, typ)
		}
	}
	// A column that exists keeps its type, whatever is asked.
	got, err := warehouse.EnsureColumns(ctx, table, map[string]string{"tip": "BIGNUMERIC"})
	if err != nil || got["tip"] != "NUMERIC" {
		t.Errorf("asking for tip as BIGNUMERIC: %v, %v; want it reported as the NUMERIC it is", got, err)
	}

	// BigQuery takes names without case: a field differing from a column
	// only in case, or from another field, gets no column of its own.
	got, err = warehouse.EnsureColumns(ctx, table, map[string]string{"TIER": "STRING", "Twin": "INT64", "twin": "INT64"})
	if err != nil || len(got) != 1 || got["Twin"] != "INT64" {
		t.Errorf("names differing in case only: %v, %v; want Twin alone", got, err)
	}
	if md, err := table.Metadata(ctx); err != nil || len(md.Schema) != 1+len(want)+1 {
		t.Errorf("after names differing in case only, the table has %d columns, want %d", len(md.Schema), 1+len(want)+1)
	}

	values := map[string]string{"tier": "gold", "tip": "1.25", "n": "42", "flag": "true", "big": "12345678901234567890.123456789012", "obj": `{"a":[1,2]}`, "rate": "0.1",
		"paid_at": "2026-12-06T10:00:00.123456Z"}
	if _, err := jobs.WriteTable(ctx, "load", table.TableID, []warehouse.Row{typedRow{id: "load", values: values}}); err != nil {
		t.Fatalf("load job with the new columns: %v", err)
	}
	streams.At[table.TableID] = warehouse.StreamAt{Stream: stream, Offset: 1}
	if _, err := streams.WriteTable(ctx, "v2", table.TableID, []warehouse.Row{typedRow{id: "stream", values: values}}); err != nil {
		t.Fatalf("append with the new columns on a stream opened before them: %v", err)
	}

	it, err := bq.Query(fmt.Sprintf("SELECT id, tier, CAST(tip AS STRING), n, flag, CAST(big AS STRING), rate, UNIX_MICROS(paid_at), JSON_VALUE(obj, '$.a[1]') FROM `%s.%s.typed_columns` ORDER BY id",
		cfg.BigQueryProject, cfg.BigQueryDataset)).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for {
		var row []bigquery.Value
		if err := it.Next(&row); err != nil {
			break
		}
		rows = append(rows, fmt.Sprint(row))
	}
	// BigQuery's widening in place (ALTER COLUMN SET DATA TYPE) keeps the
	// column's values; a change it cannot coerce fails.
	ddl := func(sql string) error {
		return warehouse.Exec(ctx, bq, fmt.Sprintf(sql, cfg.BigQueryProject, cfg.BigQueryDataset))
	}
	if err := ddl("ALTER TABLE `%s.%s.typed_columns` ALTER COLUMN tip SET DATA TYPE BIGNUMERIC"); err != nil {
		t.Fatalf("widen tip to BIGNUMERIC: %v", err)
	}
	if err := ddl("ALTER TABLE `%s.%s.typed_columns` ALTER COLUMN tier SET DATA TYPE INT64"); err == nil {
		t.Error("STRING to INT64 was taken; BigQuery refuses it")
	}
	if got, err := warehouse.EnsureColumns(ctx, table, map[string]string{"tip": "NUMERIC", "tier": "STRING"}); err != nil || got["tip"] != "BIGNUMERIC" || got["tier"] != "STRING" {
		t.Errorf("after ALTER COLUMN: %v, %v; want tip BIGNUMERIC, tier STRING", got, err)
	}

	typed := fmt.Sprintf("[gold 1.25 42 true 12345678901234567890.123456789012 0.1 %d 2]", time.Date(2026, 12, 6, 10, 0, 0, 123456000, time.UTC).UnixMicro())
	wantRows := []string{"[load " + typed[1:], "[stream " + typed[1:], "[v1 <nil> <nil> <nil> <nil> <nil> <nil> <nil> <nil>]"}
	if !slices.Equal(rows, wantRows) {
		t.Errorf("rows:\n%s\nwant:\n%s", rows, wantRows)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
