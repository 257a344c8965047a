package engine

import (
	"context"
	"maps"
	"slices"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/warehouse"
)

// recordColumns finds or adds, in every typed table, a column for each
// new field a read wanted (judge.wanted), and returns the columns to
// record from offset from on: those recorded is missing, or has with
// another type (a column an operator widened since). The decision is made
// here once, by the tables as they are, and recorded with the plan, so
// that a batch, however often it runs and on whichever worker, writes the
// same columns; a worker killed after adding a column finds it on the
// next try. Without BigQuery (unit tests) nothing is recorded, and new
// fields stay in extra.
func (e *Engine) recordColumns(ctx context.Context, recorded contract.Schemas, wanted map[string]wantedColumn, from int64) ([]contract.Column, error) {
	if len(wanted) == 0 || e.BigQuery == nil {
		return nil, nil
	}
	want := make(map[string]string, len(wanted))
	for name, w := range wanted {
		want[name] = w.typ
	}
	// The second table is asked for the columns the first has: two
	// partitions that meet one field with two types at once then agree
	// on the first table's.
	var types [2]map[string]string
	for i, table := range contract.TypedTables {
		have, err := warehouse.EnsureColumns(ctx, e.BigQuery.Dataset(e.Dataset).Table(table), want)
		if err != nil {
			return nil, err
		}
		types[i], want = have, have
	}
	faults.At("columns")
	var out []contract.Column
	for _, name := range slices.Sorted(maps.Keys(wanted)) {
		typ := commonType(types[0][name], types[1][name])
		if typ == "" || recorded.Column(name, from) == typ {
			continue // no column both tables share: the field stays in extra
		}
		w := wanted[name]
		out = append(out, contract.Column{Name: name, Type: typ, From: from, SchemaID: w.schema.ID, Subject: w.schema.Subject, Version: w.schema.Version})
	}
	return out, nil
}

// commonType is the type a field's value must have to go into both typed
// tables' columns of that name: the narrower one when an operator widened
// only one of them; "" when one lacks it or neither takes the other's.
func commonType(a, b string) string {
	switch {
	case a == "" || b == "":
		return ""
	case a == b || contract.ColumnTakes(b, a):
		return a
	case contract.ColumnTakes(a, b):
		return b
	}
	return ""
}
