// Package schema holds paystream's BigQuery DDL (docs/design.md §5) and applies it.
//
// The statements live in the numbered .sql files beside this one, in the
// order they must run: tables first, then the views that read them. Every
// statement is idempotent (CREATE TABLE IF NOT EXISTS, CREATE OR REPLACE
// VIEW), so Apply can run on every start.
package schema

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/warehouse"
)

//go:embed *.sql
var files embed.FS

// Tables and Views name what the DDL creates, in creation order.
var (
	Tables = append(slices.Clone(contract.LoadOrder), contract.TableQuarantineReplays, contract.TableSchemaChanges)
	Views  = []string{"recon_duplicates", "recon_batch_totals", "recon_daily", "recon_replays"}
)

// Statement is one DDL file with its project and dataset filled in.
type Statement struct {
	Name   string // file name, e.g. "01_transactions.sql"
	Object string // table or view it creates, e.g. "transactions"
	SQL    string
}

// Statements returns the DDL in the order it must run, for project and
// dataset.
func Statements(project, dataset string) ([]Statement, error) {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]Statement, 0, len(names))
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		sql := Fill(string(b), project, dataset)
		object := strings.TrimSuffix(name[strings.Index(name, "_")+1:], ".sql")
		out = append(out, Statement{Name: name, Object: object, SQL: sql})
	}
	return out, nil
}

// Fill names the project and dataset in SQL written with the {{project}}
// and {{dataset}} placeholders: the DDL here and the monitoring queries of
// docs/queries.
func Fill(sql, project, dataset string) string {
	return strings.NewReplacer("{{project}}", project, "{{dataset}}", dataset).Replace(sql)
}

// Options tune Apply to the server it talks to.
type Options struct {
	// Location of a new dataset ("" lets BigQuery choose).
	Location string
	// Emulator drops the PARTITION BY and CLUSTER BY clauses, which the
	// BigQuery emulator rejects ("CREATE TABLE with PARTITION BY is
	// unsupported"). They change cost and speed, never results.
	Emulator bool
}

// partitionClauses matches the table options the emulator cannot parse.
var partitionClauses = regexp.MustCompile(`(?m)^(PARTITION|CLUSTER) BY .*$`)

// Apply creates the dataset and every table that is missing, then
// (re)creates the views, in file order. It is idempotent: tables that exist
// are left alone — with their data — because the emulator does not honour
// CREATE TABLE IF NOT EXISTS and real BigQuery needs no second try.
func Apply(ctx context.Context, client *bigquery.Client, dataset string, opts Options) error {
	ds := client.Dataset(dataset)
	if err := ensureDataset(ctx, ds, opts.Location); err != nil {
		return err
	}
	stmts, err := Statements(client.Project(), dataset)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if slices.Contains(Tables, s.Object) {
			md, err := ds.Table(s.Object).Metadata(ctx)
			if err == nil {
				if err := migrate(ctx, ds.Table(s.Object), md); err != nil {
					return fmt.Errorf("migrate table %s.%s: %w", dataset, s.Object, err)
				}
				continue
			}
			if !warehouse.HasCode(err, http.StatusNotFound) {
				return fmt.Errorf("look up table %s.%s: %w", dataset, s.Object, err)
			}
		}
		sql := s.SQL
		if opts.Emulator {
			sql = partitionClauses.ReplaceAllString(sql, "")
			// Nor does it honour CREATE OR REPLACE VIEW; a view holds no
			// data, so dropping it first is the same.
			// (Its tables.delete refuses views, with a 500 the client
			// retries forever, hence DROP VIEW.)
			if slices.Contains(Views, s.Object) && exists(ctx, ds.Table(s.Object)) {
				drop := fmt.Sprintf("DROP VIEW IF EXISTS `%s.%s.%s`", client.Project(), dataset, s.Object)
				if err := run(ctx, client, drop); err != nil {
					return fmt.Errorf("replace view %s.%s: %w", dataset, s.Object, err)
				}
			}
		}
		if err := run(ctx, client, sql); err != nil {
			return fmt.Errorf("apply %s: %w", s.Name, err)
		}
	}
	return nil
}

// Columns added to tables after they were first created, and REQUIRED
// columns made NULLABLE since: Apply brings a table that exists up to its
// DDL with them, in place and with its data (BigQuery allows both).
var (
	addedColumns = map[string]bigquery.Schema{
		contract.TableBatchLedger: {{Name: "control", Type: bigquery.IntegerFieldType}, {Name: "aborted", Type: bigquery.IntegerFieldType},
			{Name: "next_window_floors", Type: bigquery.RecordFieldType, Repeated: true, Schema: bigquery.Schema{
				{Name: "from_offset", Type: bigquery.IntegerFieldType}, {Name: "floor", Type: bigquery.StringFieldType}}},
			{Name: "allowed_lateness_ns", Type: bigquery.IntegerFieldType}, {Name: "max_window_ids", Type: bigquery.IntegerFieldType},
			{Name: "schemas", Type: bigquery.StringFieldType}},
		contract.TableIngestErrors: {{Name: "kafka_timestamp_ms", Type: bigquery.IntegerFieldType}},
	}
	relaxedColumns = map[string][]string{contract.TableIngestErrors: {"kafka_timestamp"}}
)

// migrate adds a table's missing columns and relaxes its columns that are
// no longer required, with a tables.patch as BigQuery allows (the
// emulator is patched to do the same: tools/README.md).
func migrate(ctx context.Context, t *bigquery.Table, md *bigquery.TableMetadata) error {
	schema, changes := slices.Clone(md.Schema), []string{}
	for _, col := range addedColumns[t.TableID] {
		if !slices.ContainsFunc(schema, func(f *bigquery.FieldSchema) bool { return f.Name == col.Name }) {
			schema, changes = append(schema, col), append(changes, "add "+col.Name)
		}
	}
	for i, f := range schema {
		if f.Required && slices.Contains(relaxedColumns[t.TableID], f.Name) {
			relaxed := *f
			relaxed.Required = false
			schema[i], changes = &relaxed, append(changes, "make "+f.Name+" nullable")
		}
	}
	if len(changes) == 0 {
		return nil
	}
	if _, err := t.Update(ctx, bigquery.TableMetadataToUpdate{Schema: schema}, md.ETag); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(changes, ", "), err)
	}
	return nil
}

// ensureDataset looks before it creates: the emulator answers a second
// create with HTTP 500, not BigQuery's 409.
func ensureDataset(ctx context.Context, ds *bigquery.Dataset, location string) error {
	_, err := ds.Metadata(ctx)
	if err == nil {
		return nil
	}
	if !warehouse.HasCode(err, http.StatusNotFound) {
		return fmt.Errorf("look up dataset %s: %w", ds.DatasetID, err)
	}
	if err := ds.Create(ctx, &bigquery.DatasetMetadata{Location: location}); err != nil {
		if _, lookErr := ds.Metadata(ctx); lookErr == nil {
			return nil // created by a concurrent apply
		}
		return fmt.Errorf("create dataset %s: %w", ds.DatasetID, err)
	}
	return nil
}

// statementTimeout bounds one DDL statement; the client retries 5xx answers
// without end, and a stuck apply must fail, not hang.
const statementTimeout = 2 * time.Minute

func run(ctx context.Context, client *bigquery.Client, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	return warehouse.Exec(ctx, client, sql)
}

func exists(ctx context.Context, t *bigquery.Table) bool {
	_, err := t.Metadata(ctx)
	return err == nil
}
