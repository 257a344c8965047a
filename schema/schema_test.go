package schema_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

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

// TestApplyRefusesOlderTablesOnTheEmulator: tables made by an earlier
// release (a ledger without control and aborted, ingest_errors with a
// required kafka_timestamp and no raw one) would be patched in place on
// BigQuery; the emulator cannot, so Apply says what to do and leaves the
// tables and their rows alone.
func TestApplyRefusesOlderTablesOnTheEmulator(t *testing.T) {
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
	md, err := ds.Table("ingest_errors").Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var old bigquery.Schema
	for _, f := range md.Schema {
		switch f.Name {
		case "kafka_timestamp_ms":
			continue
		case "kafka_timestamp":
			required := *f
			required.Required = true
			f = &required
		}
		old = append(old, f)
	}
	if err := ds.Table("ingest_errors").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ds.Table("ingest_errors").Create(ctx, &bigquery.TableMetadata{Schema: old}); err != nil {
		t.Fatal(err)
	}
	err = schema.Apply(ctx, bq, cfg.Dataset, schema.Options{Emulator: true})
	if err == nil || !strings.Contains(err.Error(), "add kafka_timestamp_ms, make kafka_timestamp nullable") || !strings.Contains(err.Error(), "--state-dir") {
		t.Errorf("apply over an older ingest_errors: %v, want what it needs and what to do", err)
	}
	if md, err := ds.Table("ingest_errors").Metadata(ctx); err != nil || len(md.Schema) != len(old) {
		t.Errorf("the older table changed: %v", err)
	}
}
