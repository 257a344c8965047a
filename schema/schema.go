// Package schema holds paystream's BigQuery DDL (DESIGN §5) and applies it.
//
// The statements live in the numbered .sql files beside this one, in the
// order they must run: tables first, then the views that read them. Every
// statement is idempotent (CREATE TABLE IF NOT EXISTS, CREATE OR REPLACE
// VIEW), so Apply can run on every start.
package schema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
)

//go:embed *.sql
var files embed.FS

// Tables and Views name what the DDL creates, in creation order.
var (
	Tables = []string{"transactions", "transactions_enriched", "metrics_minute", "dedup_audit", "ingest_errors", "batch_ledger"}
	Views  = []string{"recon_duplicates", "recon_batch_totals", "recon_daily"}
)

// Statement is one DDL file with its project and dataset filled in.
type Statement struct {
	Name string // file name, e.g. "01_transactions.sql"
	SQL  string
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
		sql := strings.NewReplacer("{{project}}", project, "{{dataset}}", dataset).Replace(string(b))
		out = append(out, Statement{Name: name, SQL: sql})
	}
	return out, nil
}

// Apply creates the dataset when missing, then runs every statement in
// order, waiting for each. location is the dataset's location for a new
// dataset ("" lets BigQuery choose).
func Apply(ctx context.Context, client *bigquery.Client, dataset, location string) error {
	ds := client.Dataset(dataset)
	if err := ds.Create(ctx, &bigquery.DatasetMetadata{Location: location}); err != nil && !isAlreadyExists(err) {
		return fmt.Errorf("create dataset %s: %w", dataset, err)
	}
	stmts, err := Statements(client.Project(), dataset)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if err := run(ctx, client, s.SQL); err != nil {
			return fmt.Errorf("apply %s: %w", path.Base(s.Name), err)
		}
	}
	return nil
}

func run(ctx context.Context, client *bigquery.Client, sql string) error {
	job, err := client.Query(sql).Run(ctx)
	if err != nil {
		return err
	}
	status, err := job.Wait(ctx)
	if err != nil {
		return err
	}
	return status.Err()
}

func isAlreadyExists(err error) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == http.StatusConflict
}
