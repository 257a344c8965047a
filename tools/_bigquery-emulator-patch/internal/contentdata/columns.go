package contentdata

import (
	"context"
	"fmt"
	"strings"

	"github.com/goccy/bigquery-emulator/internal/connection"
	bigqueryv2 "google.golang.org/api/bigquery/v2"
)

// AddColumns gives a table the columns its new schema adds, keeping its
// rows, as BigQuery's tables.patch does in place: zetasqlite has no ALTER
// TABLE, so the rows move to a copy, the table is made again with the new
// schema, and the rows come back with NULL in the new columns. It runs in
// the caller's transaction: a failure leaves the table as it was.
// (paystream patch)
func (r *Repository) AddColumns(ctx context.Context, tx *connection.Tx, table *bigqueryv2.Table, kept []string) error {
	return r.ChangeColumns(ctx, tx, table, kept, nil)
}

// ChangeColumns is AddColumns where the columns of casts also change
// type: their values are cast to it, as ALTER COLUMN SET DATA TYPE
// coerces them. (paystream patch)
func (r *Repository) ChangeColumns(ctx context.Context, tx *connection.Tx, table *bigqueryv2.Table, kept []string, casts map[string]string) error {
	if err := tx.ContentRepoMode(); err != nil {
		return err
	}
	defer func() {
		_ = tx.MetadataRepoMode()
	}()
	ref := table.TableReference
	path := r.tablePath(ref.ProjectId, ref.DatasetId, ref.TableId)
	copyPath := r.tablePath(ref.ProjectId, ref.DatasetId, ref.TableId+"__paystream_old")
	fields := make([]string, 0, len(table.Schema.Fields))
	for _, field := range table.Schema.Fields {
		fields = append(fields, fmt.Sprintf("`%s` %s", field.Name, r.encodeSchemaField(field)))
	}
	cols := make([]string, len(kept))
	values := make([]string, len(kept))
	for i, c := range kept {
		cols[i] = "`" + c + "`"
		values[i] = cols[i]
		if typ, ok := casts[c]; ok {
			values[i] = fmt.Sprintf("CAST(%s AS %s)", cols[i], typ)
		}
	}
	list, selected := strings.Join(cols, ","), strings.Join(values, ",")
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE `%s` AS SELECT %s FROM `%s`", copyPath, list, path),
		fmt.Sprintf("DROP TABLE `%s`", path),
		fmt.Sprintf("CREATE TABLE `%s` (%s)", path, strings.Join(fields, ",")),
		fmt.Sprintf("INSERT INTO `%s` (%s) SELECT %s FROM `%s`", path, list, selected, copyPath),
		fmt.Sprintf("DROP TABLE `%s`", copyPath),
	} {
		if _, err := tx.Tx().ExecContext(ctx, q); err != nil {
			return fmt.Errorf("add columns to %s: %s: %w", ref.TableId, q, err)
		}
	}
	return nil
}
