package warehouse

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/civil"
	"google.golang.org/api/iterator"
)

// Table is a query's answer as text: NUMERICs exact, TIMESTAMPs in UTC,
// NULL as "NULL".
type Table struct {
	Columns []string
	Rows    [][]string
}

// Query runs sql and reads its whole answer; it is for operators' small
// monitoring queries, not for reading tables.
func Query(ctx context.Context, client *bigquery.Client, sql string) (Table, error) {
	it, err := client.Query(sql).Read(ctx)
	if err != nil {
		return Table{}, err
	}
	var t Table
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if err == iterator.Done {
			break
		}
		if err != nil {
			return Table{}, err
		}
		cells := make([]string, len(row))
		for i, v := range row {
			cells[i] = Text(v)
		}
		t.Rows = append(t.Rows, cells)
	}
	for _, f := range it.Schema {
		t.Columns = append(t.Columns, f.Name)
	}
	return t, nil
}

// Rows runs sql and returns its rows as the client reads them.
func Rows(ctx context.Context, client *bigquery.Client, sql string) ([][]bigquery.Value, error) {
	it, err := client.Query(sql).Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", sql, err)
	}
	var out [][]bigquery.Value
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", sql, err)
		}
		out = append(out, row)
	}
}

// Exec runs a statement (DDL, DML) and waits for its job to end; the
// job's own error is returned.
func Exec(ctx context.Context, client *bigquery.Client, sql string) error {
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

// Text renders one value of a query's answer.
func Text(v bigquery.Value) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case *big.Rat:
		s := v.FloatString(9) // NUMERIC's scale: exact
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return s
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case civil.Date:
		return v.String()
	case []bigquery.Value:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = Text(x)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		return fmt.Sprint(v)
	}
}
