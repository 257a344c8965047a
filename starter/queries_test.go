package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestMonitoringQueries runs every docs/queries/*.sql through `starter
// query --json` on a pipeline that ingested a simulated stream, and checks
// each answer against the simulator's manifest and Kafka's offsets. Then
// it breaks the books on purpose (a row loaded twice, a ledger range
// overlapping another) and checks the queries that should show it do.
func TestMonitoringQueries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Event times spread from 8 minutes ago to 2 minutes ahead (within
	// the lateness a record may run ahead of Kafka's clock), so that the
	// latency query's 5 s, 30 s and 5 minute shares each count some
	// payments and not others.
	const events = 4000
	opts := simulation.DefaultOptions()
	opts.StartTime, opts.EventRate = time.Now().Add(-8*time.Minute), events/(10*time.Minute).Seconds()
	cfg, m, _ := startOperatorStackWith(t, ctx, opts, events)
	// Each runs by name, from the binary, and its flag comes after it.
	query := func(file string) []map[string]string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, []string{"query", strings.TrimSuffix(filepath.Base(file), ".sql"), "--json"}, &out); err != nil {
			t.Fatalf("starter query %s: %v", file, err)
		}
		var rows []map[string]string
		if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
			t.Fatalf("starter query %s: %v\n%s", file, err, out.String())
		}
		return rows
	}
	if err := run(ctx, []string{"start"}, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	tc, err := pipeline.DialTemporal(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	op := &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq}
	if err := op.WaitCaughtUp(ctx, nil); err != nil {
		t.Fatal(err)
	}

	errs := 0
	for reason, n := range m.ErrorsByReason {
		if reason != "late" {
			errs += n
		}
	}
	var records int64
	for p := range m.EndOffsets {
		records += m.EndOffsets[p] - m.StartOffsets[p]
	}
	table := "`" + cfg.BigQueryProject + "." + cfg.BigQueryDataset + "."
	checks := map[string]func(t *testing.T, rows []map[string]string){
		"freshness.sql": func(t *testing.T, rows []map[string]string) {
			if len(rows) != len(m.EndOffsets) {
				t.Fatalf("%d partitions, want %d", len(rows), len(m.EndOffsets))
			}
			for p, r := range rows {
				if num(t, r["end_offset"]) != float64(m.EndOffsets[p]) || num(t, r["batches"]) < 1 {
					t.Errorf("partition %d: %v, want end_offset %d", p, r, m.EndOffsets[p])
				}
				if s := num(t, r["seconds_since"]); s < 0 || s > 600 {
					t.Errorf("partition %d: seconds_since %v", p, s)
				}
			}
		},
		"ingest_by_minute.sql": func(t *testing.T, rows []map[string]string) {
			got, want := sums(t, rows, "records", "loaded", "duplicates", "errors", "late"),
				[]float64{float64(records), float64(m.UniqueIDs), float64(m.Duplicates), float64(errs), float64(m.ErrorsByReason["late"])}
			if !equal(got, want) {
				t.Errorf("records, loaded, duplicates, errors, late: %v, want %v", got, want)
			}
		},
		"quarantine.sql": func(t *testing.T, rows []map[string]string) {
			got := map[string]int{}
			for _, r := range rows {
				got[r["reason"]] = int(num(t, r["records"]))
			}
			for reason, n := range m.ErrorsByReason {
				if got[reason] != n {
					t.Errorf("%s: %d records, want %d", reason, got[reason], n)
				}
				delete(got, reason)
			}
			if len(got) > 0 {
				t.Errorf("reasons the simulator did not send: %v", got)
			}
		},
		"duplicates_loaded.sql":  wantNoRows,
		"unbalanced_batches.sql": wantNoRows,
		"ledger_gaps.sql":        wantNoRows,
		"amounts_by_day.sql": func(t *testing.T, rows []map[string]string) {
			amount, count := map[string]*big.Rat{}, map[string]int{}
			for _, r := range rows {
				a, ok := new(big.Rat).SetString(r["amount"])
				if !ok {
					t.Fatalf("amount %q", r["amount"])
				}
				if amount[r["currency"]] == nil {
					amount[r["currency"]] = new(big.Rat)
				}
				amount[r["currency"]].Add(amount[r["currency"]], a)
				count[r["currency"]] += int(num(t, r["payments"]))
			}
			for cur, s := range m.AmountByCurrency {
				want, _ := new(big.Rat).SetString(s)
				if amount[cur] == nil || amount[cur].Cmp(want) != 0 || count[cur] != m.CountByCurrency[cur] {
					t.Errorf("%s: %v in %d payments, want %s in %d", cur, amount[cur], count[cur], s, m.CountByCurrency[cur])
				}
			}
			if len(amount) != len(m.AmountByCurrency) {
				t.Errorf("%d currencies, want %d", len(amount), len(m.AmountByCurrency))
			}
		},
		"latency.sql": func(t *testing.T, rows []map[string]string) {
			if got := sums(t, rows, "payments"); got[0] != float64(m.UniqueIDs) {
				t.Errorf("%v payments, want %d", got[0], m.UniqueIDs)
			}
			// The same figures computed here from every row's latency.
			for _, r := range rows {
				var within [3]int
				var slowest float64
				lat := queryRows(t, ctx, bq, "SELECT TIMESTAMP_DIFF(loaded_at, event_time, MILLISECOND) FROM "+table+"transactions` WHERE kafka_partition = "+r["kafka_partition"])
				for _, x := range lat {
					ms := num(t, x[0])
					for i, limit := range []float64{5000, 30000, 300000} {
						if ms <= limit {
							within[i]++
						}
					}
					slowest = max(slowest, ms/1000)
				}
				for i, col := range []string{"within_5s_percent", "within_30s_percent", "within_5m_percent"} {
					if got, want := num(t, r[col]), math.Round(10000*float64(within[i])/float64(len(lat)))/100; got != want {
						t.Errorf("partition %s %s: %v, want %v", r["kafka_partition"], col, got, want)
					}
				}
				if !(0 < within[0] && within[0] < within[1] && within[1] < within[2] && within[2] < len(lat)) {
					t.Errorf("partition %s: %v of %d payments within 5 s, 30 s, 5 min: the test's event times do not tell the thresholds apart", r["kafka_partition"], within, len(lat))
				}
				if got := num(t, r["max_seconds"]); got != slowest {
					t.Errorf("partition %s max_seconds: %v, want %v", r["kafka_partition"], got, slowest)
				}
			}
		},
		"fraud_by_risk.sql": func(t *testing.T, rows []map[string]string) {
			got := sums(t, rows, "payments", "percent")
			if got[0] != float64(m.UniqueIDs) || got[1] < 99.9 || got[1] > 100.1 {
				t.Errorf("%v payments, %v %%; want %d, 100", got[0], got[1], m.UniqueIDs)
			}
		},
	}
	files, err := filepath.Glob("../docs/queries/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no queries: %v", err)
	}
	for _, f := range files {
		check := checks[filepath.Base(f)]
		if check == nil {
			t.Errorf("%s has no check here: every monitoring query is tested", f)
			continue
		}
		delete(checks, filepath.Base(f))
		t.Run(filepath.Base(f), func(t *testing.T) { check(t, query(f)) })
	}
	for name := range checks {
		t.Errorf("docs/queries/%s is checked here but does not exist", name)
	}

	// Break the books: a payment loaded twice, a ledger range over another.
	txColumns := "transaction_id, event_time, amount, currency, customer_id, merchant_id, card_id, payment_method, status, batch_id, kafka_partition, kafka_offset, loaded_at"
	for _, sql := range []string{
		"INSERT INTO " + table + "transactions` (" + txColumns + ") SELECT " + txColumns + " FROM " + table + "transactions` WHERE kafka_partition = 0 AND kafka_offset = (SELECT MIN(kafka_offset) FROM " + table + "transactions` WHERE kafka_partition = 0)",
		"INSERT INTO " + table + "batch_ledger` (batch_id, kafka_topic, kafka_partition, start_offset, end_offset, records, loaded, duplicates, errors, late, skipped, next_window_start, loaded_at) " +
			"VALUES ('batch/" + cfg.Topic + "/1/1-3', '" + cfg.Topic + "', 1, 1, 3, 2, 2, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP())",
	} {
		if _, err := warehouse.Query(ctx, bq, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if rows := query("../docs/queries/duplicates_loaded.sql"); len(rows) != 1 || rows[0]["copies"] != "2" {
		t.Errorf("duplicates_loaded after loading one payment twice: %v", rows)
	}
	if rows := query("../docs/queries/ledger_gaps.sql"); len(rows) == 0 || rows[0]["kafka_partition"] != "1" {
		t.Errorf("ledger_gaps after an overlapping range: %v", rows)
	}
	unbalanced := map[string]bool{}
	for _, r := range query("../docs/queries/unbalanced_batches.sql") {
		unbalanced[r["batch_id"]] = true
	}
	if len(unbalanced) != 2 || !unbalanced["batch/"+cfg.Topic+"/1/1-3"] {
		t.Errorf("unbalanced_batches after both: %v, want the batch loaded twice and the fake one", unbalanced)
	}

	// A producer's record that clears the screen and retitles the
	// terminal prints as text; a statement that is not a SELECT is
	// refused before it reaches BigQuery, and the table is still there.
	if _, err := warehouse.Query(ctx, bq, "INSERT INTO "+table+"ingest_errors` (kafka_topic, kafka_partition, kafka_offset, reason, raw, raw_encoding, batch_id, loaded_at) "+
		"VALUES ('t', 0, 0, 'malformed_json', '{\"id\": \"\\x1b[2J\\x1b]0;owned\\x07\"}', 'utf8', 'escape-test', CURRENT_TIMESTAMP())"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, sql string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(sql), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"query", write("raw.sql", "SELECT raw FROM `{{project}}.{{dataset}}.ingest_errors` WHERE batch_id = 'escape-test'")}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\x07") || !strings.Contains(out.String(), `{"id": "\x1b[2J\x1b]0;owned\x07"}`) {
		t.Errorf("a raw record with escape sequences printed as:\n%q", out.String())
	}
	for _, sql := range []string{"DROP TABLE `{{project}}.{{dataset}}.transactions`", "SELECT 1; DROP TABLE `{{project}}.{{dataset}}.transactions`"} {
		err := run(ctx, []string{"query", write("drop.sql", sql)}, new(bytes.Buffer))
		if !errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), "only") {
			t.Errorf("%s: %v, want refused", sql, err)
		}
	}
	if n := queryRows(t, ctx, bq, "SELECT COUNT(*) FROM "+table+"transactions`"); n[0][0] != strconv.Itoa(m.UniqueIDs+1) {
		t.Errorf("transactions after the refused statements: %v rows, want %d", n[0][0], m.UniqueIDs+1)
	}
}

func queryRows(t *testing.T, ctx context.Context, bq *bigquery.Client, sql string) [][]string {
	t.Helper()
	res, err := warehouse.Query(ctx, bq, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res.Rows
}

func wantNoRows(t *testing.T, rows []map[string]string) {
	if len(rows) != 0 {
		t.Errorf("%d rows, want none: %v", len(rows), rows)
	}
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return f
}

// sums adds up columns over rows.
func sums(t *testing.T, rows []map[string]string, columns ...string) []float64 {
	t.Helper()
	out := make([]float64, len(columns))
	for _, r := range rows {
		for i, c := range columns {
			out[i] += num(t, r[c])
		}
	}
	return out
}

func equal(a, b []float64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}
