package schema_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

// contractColumns are the names docs/design.md §5 says tools and tests rely on.
var contractColumns = map[string][]string{
	"transactions": {"transaction_id", "event_time", "amount", "currency", "customer_id", "merchant_id", "card_id", "status", "batch_id", "kafka_partition", "kafka_offset", "loaded_at"},
	"transactions_enriched": {"transaction_id", "event_time", "amount", "currency", "customer_id", "merchant_id", "card_id", "status", "batch_id",
		"kafka_partition", "kafka_offset", "loaded_at", "fraud_score", "fraud_reasons", "risk_level"},
	"metrics_minute": {"minute", "currency", "region", "event_count", "amount_sum", "fraud_count", "duplicate_count", "batch_id", "kafka_partition", "kafka_offset"},
	"dedup_audit":    {"transaction_id", "kafka_partition", "kafka_offset", "duplicate_of_offset", "batch_id"},
	"ingest_errors":  {"kafka_partition", "kafka_offset", "reason", "raw", "batch_id"},
	"batch_ledger":   {"batch_id", "kafka_partition", "start_offset", "end_offset", "loaded", "duplicates", "errors", "late"},
}

// TestEveryTableIsPartitionedAndClustered reads the DDL as written for real
// BigQuery: partitioned by a date, clustered on natural keys.
func TestEveryTableIsPartitionedAndClustered(t *testing.T) {
	stmts, err := schema.Statements("p", "d")
	if err != nil {
		t.Fatal(err)
	}
	partition := regexp.MustCompile(`(?m)^PARTITION BY DATE\((\w+)\)$`)
	cluster := regexp.MustCompile(`(?m)^CLUSTER BY \w+(, \w+)*;$`)
	seen := 0
	for _, s := range stmts {
		if !strings.HasPrefix(strings.TrimSpace(s.SQL[strings.Index(s.SQL, "CREATE"):]), "CREATE TABLE") {
			continue
		}
		seen++
		m := partition.FindStringSubmatch(s.SQL)
		if m == nil || !strings.Contains(s.SQL, "  "+m[1]+" ") {
			t.Errorf("%s: no PARTITION BY DATE(column) on one of its columns", s.Name)
		}
		if !cluster.MatchString(s.SQL) {
			t.Errorf("%s: no CLUSTER BY", s.Name)
		}
		if !strings.Contains(s.SQL, "`p.d."+s.Object+"`") {
			t.Errorf("%s: does not create p.d.%s", s.Name, s.Object)
		}
	}
	if seen != len(schema.Tables) {
		t.Errorf("%d CREATE TABLE statements, want %d", seen, len(schema.Tables))
	}
}

// TestApplyIsIdempotentAndKeepsData applies the schema to the emulator
// again after a row was written: the row stays, the contract columns exist.
func TestApplyIsIdempotentAndKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := devstacktest.Config(t, 1)
	s := devstacktest.Start(t, cfg) // applies the schema once
	bq, err := warehouse.Open(ctx, cfg.Project, s.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	insert := fmt.Sprintf("INSERT INTO `%s.%s.dedup_audit` (transaction_id, event_time, kafka_partition, kafka_offset, duplicate_of_offset, identical_bytes, batch_id, loaded_at) "+
		"VALUES ('tx-1', CURRENT_TIMESTAMP(), 0, 7, 3, TRUE, 'b', CURRENT_TIMESTAMP())", cfg.Project, cfg.Dataset)
	job, err := bq.Query(insert).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := job.Wait(ctx); err != nil || st.Err() != nil {
		t.Fatalf("insert: %v %v", err, st.Err())
	}
	for range 2 {
		if err := schema.Apply(ctx, bq, cfg.Dataset, schema.Options{Emulator: true}); err != nil {
			t.Fatalf("second apply: %v", err)
		}
	}
	it, err := bq.Query(fmt.Sprintf("SELECT duplicate_of_offset FROM `%s.%s.dedup_audit`", cfg.Project, cfg.Dataset)).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows []int64
	for {
		var row []bigquery.Value
		if err := it.Next(&row); errors.Is(err, iterator.Done) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row[0].(int64))
	}
	if len(rows) != 1 || rows[0] != 3 {
		t.Errorf("after re-applying, dedup_audit holds %v, want the one row pointing at offset 3", rows)
	}
	for table, cols := range contractColumns {
		md, err := bq.Dataset(cfg.Dataset).Table(table).Metadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, f := range md.Schema {
			have[f.Name] = true
		}
		for _, c := range cols {
			if !have[c] {
				t.Errorf("%s lacks column %s", table, c)
			}
		}
	}
}

// TestApplyBringsOlderTablesUpToDate: tables made by an earlier release
// (ingest_errors with a required kafka_timestamp and no
// kafka_timestamp_ms, a ledger without schemas) are patched in place, as
// BigQuery allows, with their rows: the emulator is patched to change a
// table's schema, where upstream kept the old one and answered as if it
// had not.
func TestApplyBringsOlderTablesUpToDate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := devstacktest.Config(t, 1)
	s := devstacktest.Start(t, cfg)
	bq, err := warehouse.Open(ctx, cfg.Project, s.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	ds := bq.Dataset(cfg.Dataset)
	older := func(table string, drop string) bigquery.Schema {
		md, err := ds.Table(table).Metadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var old bigquery.Schema
		for _, f := range md.Schema {
			if f.Name == drop {
				continue
			}
			if f.Name == "kafka_timestamp" {
				required := *f
				required.Required = true
				f = &required
			}
			old = append(old, f)
		}
		if err := ds.Table(table).Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ds.Table(table).Create(ctx, &bigquery.TableMetadata{Schema: old}); err != nil {
			t.Fatal(err)
		}
		return old
	}
	old := older("ingest_errors", "kafka_timestamp_ms")
	older("batch_ledger", "schemas")
	insert := "INSERT INTO `%s.%s.ingest_errors` (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, reason, raw, raw_encoding, batch_id, loaded_at) " +
		"VALUES ('payments', 0, 7, CURRENT_TIMESTAMP(), 'late', '{}', 'utf8', 'b', CURRENT_TIMESTAMP())"
	if err := warehouse.Exec(ctx, bq, fmt.Sprintf(insert, cfg.Project, cfg.Dataset)); err != nil {
		t.Fatal(err)
	}
	if err := schema.Apply(ctx, bq, cfg.Dataset, schema.Options{Emulator: true}); err != nil {
		t.Fatalf("apply over older tables: %v", err)
	}
	md, err := ds.Table("ingest_errors").Metadata(ctx)
	if err != nil || len(md.Schema) != len(old)+1 || md.Schema[len(md.Schema)-1].Name != "kafka_timestamp_ms" {
		t.Fatalf("ingest_errors after apply: %v, %v", md, err)
	}
	for _, f := range md.Schema {
		if f.Name == "kafka_timestamp" && f.Required {
			t.Error("kafka_timestamp is still required")
		}
	}
	// The stored table has the column, not only its metadata: the old
	// row reads NULL there, and a new row fills it.
	if err := warehouse.Exec(ctx, bq, fmt.Sprintf("INSERT INTO `%s.%s.ingest_errors` (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp_ms, reason, raw, raw_encoding, batch_id, loaded_at) "+
		"VALUES ('payments', 0, 8, 42, 'late', '{}', 'utf8', 'b', CURRENT_TIMESTAMP())", cfg.Project, cfg.Dataset)); err != nil {
		t.Fatal(err)
	}
	got := queryRows(ctx, t, bq, fmt.Sprintf("SELECT kafka_offset, kafka_timestamp_ms FROM `%s.%s.ingest_errors` ORDER BY kafka_offset", cfg.Project, cfg.Dataset))
	if len(got) != 2 || got[0][0] != int64(7) || got[0][1] != nil || got[1][1] != int64(42) {
		t.Errorf("rows after apply: %v, want offset 7 kept with NULL and offset 8 with 42", got)
	}
	if md, err := ds.Table("batch_ledger").Metadata(ctx); err != nil || md.Schema[len(md.Schema)-1].Name != "schemas" {
		t.Errorf("batch_ledger after apply: %v", err)
	}
	// What BigQuery refuses, the emulator now refuses too: a column
	// dropped.
	md, _ = ds.Table("ingest_errors").Metadata(ctx)
	if _, err := ds.Table("ingest_errors").Update(ctx, bigquery.TableMetadataToUpdate{Schema: md.Schema[1:]}, md.ETag); err == nil {
		t.Error("a patch dropping a column succeeded")
	}
}

func queryRows(ctx context.Context, t *testing.T, bq *bigquery.Client, sql string) [][]bigquery.Value {
	t.Helper()
	rows, err := warehouse.Rows(ctx, bq, sql)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestDDLColumnsAreTheTypedTablesColumns holds contract.DDLColumns, the
// names a schema's new field never gets a typed column under, to the
// columns the DDL gives the typed tables.
func TestDDLColumnsAreTheTypedTablesColumns(t *testing.T) {
	stmts, err := schema.Statements("p", "d")
	if err != nil {
		t.Fatal(err)
	}
	column := regexp.MustCompile(`(?m)^  (\w+) +[A-Z]`)
	for _, s := range stmts {
		if !slices.Contains(contract.TypedTables, s.Object) {
			continue
		}
		for _, m := range column.FindAllStringSubmatch(s.SQL, -1) {
			if !slices.Contains(contract.DDLColumns, m[1]) {
				t.Errorf("%s has column %s, which contract.DDLColumns lacks: a field of that name would get a second column", s.Object, m[1])
			}
		}
		if s.Object == contract.TableEnriched {
			if n := len(column.FindAllStringSubmatch(s.SQL, -1)); n != len(contract.DDLColumns) {
				t.Errorf("%s has %d columns, contract.DDLColumns %d", s.Object, n, len(contract.DDLColumns))
			}
		}
	}
}
