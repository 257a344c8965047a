package operator

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"text/tabwriter"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/progress"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// Check is one line of the reconciliation report.
type Check struct {
	Name string
	Got  string
	Want string
	OK   bool
}

// Report is the reconciliation's outcome.
type Report struct {
	Checks []Check
}

// OK is true when every check passed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Failed counts the checks that did not pass.
func (r Report) Failed() int {
	n := 0
	for _, c := range r.Checks {
		if !c.OK {
			n++
		}
	}
	return n
}

// Write prints the report as a table.
func (r Report) Write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tGOT\tWANT\t")
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "MISMATCH"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Got, c.Want, mark)
	}
	tw.Flush()
}

func (r *Report) add(name string, got, want any) {
	g, w := fmt.Sprint(got), fmt.Sprint(want)
	r.Checks = append(r.Checks, Check{Name: name, Got: g, Want: w, OK: g == w})
}

// Reconcile compares Kafka, the batch ledger and the tables: the three
// recon views, each partition's ledger ranges (contiguous, reaching the high
// watermark and the committed offset), and — with a manifest — the loaded,
// duplicate and rejected figures and the amounts per currency, to the cent.
func (o *Operator) Reconcile(ctx context.Context, manifest *simulation.Manifest) (Report, error) {
	var r Report
	ds := fmt.Sprintf("`%s.%s", o.BigQuery.Project(), o.Config.BigQueryDataset)
	// The bar counts queries: three for Kafka and the ledger, three views,
	// and the manifest's one (discard sink) or five.
	queries := int64(3)
	if o.Config.Sink != config.SinkDiscard {
		queries += 5
	}
	if manifest != nil {
		queries += map[bool]int64{true: 1, false: 5}[o.Config.Sink == config.SinkDiscard]
	}
	bar := progress.New(o.Progress, "queries", queries)
	var asked int64
	defer func() { bar.Done(asked) }()
	// ask runs one query and moves the bar.
	ask := func(sql string) ([][]bigquery.Value, error) {
		defer func() { asked++; bar.Set(asked) }()
		return warehouse.Rows(ctx, o.BigQuery, sql)
	}
	one := func(sql string) (int64, error) {
		rows, err := ask(sql)
		if err != nil {
			return 0, err
		}
		if len(rows) != 1 || rows[0][0] == nil {
			return 0, nil
		}
		return rows[0][0].(int64), nil
	}

	// With the discard sink only batch_ledger holds rows; the views that
	// compare it with the tables would all disagree.
	if o.Config.Sink != config.SinkDiscard {
		dups, err := one("SELECT COUNT(*) FROM " + ds + ".recon_duplicates`")
		if err != nil {
			return r, err
		}
		r.add("recon_duplicates: transaction_ids loaded twice", dups, 0)
		unbalanced, err := one("SELECT COUNTIF(NOT balanced) FROM " + ds + ".recon_batch_totals`")
		if err != nil {
			return r, err
		}
		r.add("recon_batch_totals: unbalanced batches", unbalanced, 0)
		badDays, err := one("SELECT COUNTIF(NOT balanced) FROM " + ds + ".recon_daily`")
		if err != nil {
			return r, err
		}
		r.add("recon_daily: unbalanced days", badDays, 0)
		badReplays, err := one("SELECT COUNTIF(NOT balanced) FROM " + ds + ".recon_replays`")
		if err != nil {
			return r, err
		}
		r.add("recon_replays: unbalanced quarantine replays", badReplays, 0)
	}

	// Every column the typed tables have beyond their DDL is one
	// paystream added for a schema's field, recorded in schema_changes
	// with the type it has now (or widened to since).
	if o.Config.Sink != config.SinkDiscard {
		typed, err := o.TypedColumns(ctx)
		if err != nil {
			return r, err
		}
		changes, err := ask("SELECT DISTINCT table_name, column_name, column_type FROM " + ds + ".schema_changes`")
		if err != nil {
			return r, err
		}
		recorded := map[[3]string]bool{}
		names := map[[2]string]bool{}
		for _, row := range changes {
			table, column, typ := row[0].(string), row[1].(string), row[2].(string)
			recorded[[3]string{table, column, typ}], names[[2]string{table, column}] = true, true
		}
		for _, table := range contract.TypedTables {
			unrecorded, missing := []string{}, []string{}
			have := map[string]bool{}
			for _, c := range typed[table] {
				have[c.Name] = true
				if !recorded[[3]string{table, c.Name, c.Type}] {
					unrecorded = append(unrecorded, c.Name+" "+c.Type)
				}
			}
			for k := range names {
				if k[0] == table && !have[k[1]] {
					missing = append(missing, k[1])
				}
			}
			slices.Sort(missing)
			r.add(table+": columns neither in the DDL nor in schema_changes with their type", unrecorded, []string{})
			r.add(table+": schema_changes columns the table lacks", missing, []string{})
		}
	}

	// Per partition: ranges contiguous from the log's start to its last
	// stable offset (a read_committed consumer's end: an open transaction
	// is not ingested yet).
	bounds, err := kafkalog.AllBounds(ctx, o.Config.Kafka(), o.Config.Topic)
	if err != nil {
		return r, err
	}
	hws := make([]int64, len(bounds))
	for p, b := range bounds {
		hws[p] = b.Stable
	}
	committed, err := kafkalog.CommittedOffsets(ctx, o.Config.Kafka(), o.Config.ConsumerGroup, o.Config.Topic, len(hws))
	if err != nil {
		return r, err
	}
	asked += 2
	bar.Set(asked)
	ranges, err := ask("SELECT kafka_partition, start_offset, end_offset FROM " + ds + ".batch_ledger` ORDER BY kafka_partition, start_offset")
	if err != nil {
		return r, err
	}
	byPart := map[int64][][2]int64{}
	for _, row := range ranges {
		p := row[0].(int64)
		byPart[p] = append(byPart[p], [2]int64{row[1].(int64), row[2].(int64)})
	}
	gaps, maxEnd := 0, make([]int64, len(hws))
	for p := range hws {
		next := bounds[p].First
		for _, rg := range byPart[int64(p)] {
			if rg[0] != next {
				gaps++
			}
			next = rg[1]
		}
		maxEnd[p] = next
	}
	r.add("batch_ledger: gaps or overlaps between ranges", gaps, 0)
	r.add("batch_ledger: highest end_offset per partition (last stable offset)", maxEnd, hws)
	r.add("consumer group: committed offset per partition (last stable offset)", committed, hws)

	if manifest == nil {
		return r, nil
	}
	m := manifest
	if o.Config.Sink == config.SinkDiscard {
		// Only batch_ledger was written: check its totals.
		var errorsSent int
		for _, n := range m.ErrorsByReason {
			errorsSent += n
		}
		totals, err := ask("SELECT SUM(loaded), SUM(duplicates), SUM(errors) + SUM(late) FROM " + ds + ".batch_ledger`")
		if err != nil {
			return r, err
		}
		if len(totals) != 1 {
			return r, fmt.Errorf("batch_ledger totals: %d rows", len(totals))
		}
		r.add("batch_ledger: loaded = unique valid on-time IDs", totals[0][0], m.UniqueIDs)
		r.add("batch_ledger: duplicates = duplicates sent", totals[0][1], m.Duplicates)
		r.add("batch_ledger: errors + late = rejects sent", totals[0][2], errorsSent)
		return r, nil
	}
	// The manifest knows what the pipeline should load; rows of quarantine
	// replays, which balance in recon_replays, are left out.
	pipelineRows := ds + ".transactions` WHERE NOT STARTS_WITH(batch_id, 'replay/')"
	loaded, err := one("SELECT COUNT(*) FROM " + pipelineRows)
	if err != nil {
		return r, err
	}
	r.add("transactions: rows = unique valid on-time IDs", loaded, m.UniqueIDs)
	distinct, err := one("SELECT COUNT(DISTINCT transaction_id) FROM " + pipelineRows)
	if err != nil {
		return r, err
	}
	r.add("transactions: distinct transaction_ids", distinct, m.UniqueIDs)
	sums, err := ask("SELECT currency, CAST(SUM(amount) AS STRING), COUNT(*) FROM " + pipelineRows + " GROUP BY currency")
	if err != nil {
		return r, err
	}
	gotSums := map[string]string{}
	for _, row := range sums {
		cur := row[0].(string)
		gotSums[cur] = normalizeAmount(row[1].(string), cur)
	}
	for _, cur := range slices.Sorted(maps.Keys(m.AmountByCurrency)) {
		r.add("transactions: amount "+cur, gotSums[cur], m.AmountByCurrency[cur])
	}
	if extra := len(gotSums) - len(m.AmountByCurrency); extra != 0 {
		r.add("transactions: currencies", len(gotSums), len(m.AmountByCurrency))
	}
	dedupRows, err := one("SELECT COUNT(*) FROM " + ds + ".dedup_audit`")
	if err != nil {
		return r, err
	}
	r.add("dedup_audit: rows = duplicates sent", dedupRows, m.Duplicates)
	reasons, err := ask("SELECT reason, COUNT(*) FROM " + ds + ".ingest_errors` GROUP BY reason")
	if err != nil {
		return r, err
	}
	gotReasons := map[string]int64{}
	for _, row := range reasons {
		gotReasons[row[0].(string)] = row[1].(int64)
	}
	for _, reason := range slices.Sorted(maps.Keys(m.ErrorsByReason)) {
		r.add("ingest_errors: "+reason, gotReasons[reason], m.ErrorsByReason[reason])
	}
	return r, nil
}

// TypedColumns are the columns each typed table has beyond its DDL: the
// typed columns paystream added for schemas' new fields (docs/formats.md),
// with their types as they are now.
func (o *Operator) TypedColumns(ctx context.Context) (map[string][]contract.Column, error) {
	out := map[string][]contract.Column{}
	for _, table := range contract.TypedTables {
		md, err := o.BigQuery.Dataset(o.Config.BigQueryDataset).Table(table).Metadata(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the schema of %s: %w", table, err)
		}
		for _, f := range md.Schema {
			if !slices.Contains(contract.DDLColumns, f.Name) {
				out[table] = append(out[table], contract.Column{Name: f.Name, Type: warehouse.ColumnType(f)})
			}
		}
	}
	return out, nil
}

// normalizeAmount writes a NUMERIC as the currency's minor digits, the
// manifest's form ("12.5" USD -> "12.50").
func normalizeAmount(s, currency string) string {
	scale, _ := payment.MinorUnits(currency)
	rat, ok := new(big.Rat).SetString(s)
	if !ok {
		return s
	}
	return rat.FloatString(scale)
}
