package warehouse

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
)

// ColumnType is a column's BigQuery type as paystream names it (the
// standard SQL name: INT64, FLOAT64, BOOL, ...), for a column of the
// table's schema; a REPEATED or RECORD column is named as such, which no
// field's type equals.
func ColumnType(f *bigquery.FieldSchema) string {
	if f.Repeated {
		return "REPEATED " + string(f.Type)
	}
	switch f.Type {
	case bigquery.IntegerFieldType:
		return "INT64"
	case bigquery.FloatFieldType:
		return "FLOAT64"
	case bigquery.BooleanFieldType:
		return "BOOL"
	case bigquery.BigNumericFieldType:
		return "BIGNUMERIC"
	}
	return string(f.Type)
}

// fieldTypes are the column types a new column may have, by name.
var fieldTypes = map[string]bigquery.FieldType{
	"STRING": bigquery.StringFieldType, "INT64": bigquery.IntegerFieldType, "FLOAT64": bigquery.FloatFieldType,
	"BOOL": bigquery.BooleanFieldType, "NUMERIC": bigquery.NumericFieldType, "BIGNUMERIC": bigquery.BigNumericFieldType,
	"TIMESTAMP": bigquery.TimestampFieldType, "DATE": bigquery.DateFieldType, "BYTES": bigquery.BytesFieldType,
	"JSON": bigquery.JSONFieldType,
}

// addColumnTries bounds the reads and patches of one EnsureColumns: each
// refused patch means another writer changed the table since it was read.
const addColumnTries = 8

// EnsureColumns makes table have a NULLABLE column of each name in want,
// of the type want gives it, unless the table has a column of that name
// already, and returns the type each column has in the table then. A name
// BigQuery takes for another one (the same but for case, in the table or
// in want) is left out of the answer: no column is that field's. New
// columns go in with a tables.patch of the whole schema as read; BigQuery
// refuses a schema that drops a column (400), so a writer that lost a
// race with another's patch, or with an operator's ALTER, reads the table
// again and tries again. (The table's ETag, which would say the same,
// changes with every load into it.)
func EnsureColumns(ctx context.Context, t *bigquery.Table, want map[string]string) (map[string]string, error) {
	for try := 1; ; try++ {
		md, err := t.Metadata(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the schema of %s: %w", t.TableID, err)
		}
		have := make(map[string]string, len(want))
		schema := append(bigquery.Schema{}, md.Schema...)
		var added []string
		for _, name := range slices.Sorted(maps.Keys(want)) {
			typ := want[name]
			if f := fieldNamed(schema, name); f != nil {
				if f.Name == name {
					have[name] = ColumnType(f)
				}
				continue
			}
			ft, ok := fieldTypes[typ]
			if !ok {
				continue // not a type a new column has (REPEATED, RECORD): no column
			}
			schema = append(schema, &bigquery.FieldSchema{Name: name, Type: ft})
			have[name] = typ
			added = append(added, name+" "+typ)
		}
		if len(added) == 0 {
			return have, nil
		}
		_, err = t.Update(ctx, bigquery.TableMetadataToUpdate{Schema: schema}, "")
		if err == nil {
			return have, nil
		}
		if try >= addColumnTries || !HasCode(err, http.StatusBadRequest) {
			return nil, fmt.Errorf("add columns %s to %s: %w", strings.Join(added, ", "), t.TableID, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(try) * 100 * time.Millisecond):
		}
	}
}

// fieldNamed is the column of name, which BigQuery compares without case.
func fieldNamed(s bigquery.Schema, name string) *bigquery.FieldSchema {
	for _, f := range s {
		if strings.EqualFold(f.Name, name) {
			return f
		}
	}
	return nil
}
