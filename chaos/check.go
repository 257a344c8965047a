package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sort"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"
)

// landed is one row of a data table, reduced to what the oracle predicts.
type landed struct {
	Table    string
	Batch    string
	Offset   int64
	ID       string
	Amount   *big.Rat
	Currency string
	Reason   string
}

func (l landed) String() string {
	switch l.Table {
	case tableTransactions:
		return fmt.Sprintf("transactions %s %s %s", l.ID, l.Amount.FloatString(3), l.Currency)
	case tableErrors:
		return "ingest_errors " + l.Reason
	}
	return l.Table
}

// ledgerBatch is one batch_ledger row.
type ledgerBatch struct {
	ID        string
	Partition int
	Start     int64
	End       int64
	Loaded    int64
}

// Verdict is the comparison of the tables with the books.
type Verdict struct {
	Want, Got     map[string]*Total // transactions per currency
	Batches       int
	Rows          int
	Problems      []string // every difference, first ones first
	FirstBadBatch string
}

// OK is true when the tables hold exactly the books.
func (v Verdict) OK() bool { return len(v.Problems) == 0 }

// Write prints the verdict.
func (v Verdict) Write(w io.Writer) {
	var curs []string
	for c := range v.Want {
		curs = append(curs, c)
	}
	for c := range v.Got {
		if v.Want[c] == nil {
			curs = append(curs, c)
		}
	}
	slices.Sort(curs)
	fmt.Fprintf(w, "chaos: %d batches in the ledger, %d rows in the data tables\n", v.Batches, v.Rows)
	for _, c := range curs {
		mark := "ok"
		if v.Want[c].String() != v.Got[c].String() {
			mark = "DIFFERS"
		}
		fmt.Fprintf(w, "chaos:   %s transactions: oracle %s, BigQuery %s  %s\n", c, v.Want[c], v.Got[c], mark)
	}
	if v.FirstBadBatch != "" {
		fmt.Fprintf(w, "chaos: first batch whose rows differ from the oracle: %s\n", v.FirstBadBatch)
	}
	for i, p := range v.Problems {
		if i == 40 {
			fmt.Fprintf(w, "chaos:   … and %d more\n", len(v.Problems)-i)
			break
		}
		fmt.Fprintf(w, "chaos:   %s\n", p)
	}
}

// Check reads the ledger and the three data tables the oracle predicts
// and compares them with the books: totals per currency to the cent,
// the ledger's ranges covering each partition's log exactly once, and
// batch by batch, in offset order, where every record landed.
func Check(ctx context.Context, bq *bigquery.Client, dataset string, books Books, ends map[int]int64) (Verdict, error) {
	v := Verdict{Want: books.Totals(), Got: map[string]*Total{}}
	ds := fmt.Sprintf("`%s.%s", bq.Project(), dataset)
	var ledger []ledgerBatch
	err := query(ctx, bq, "SELECT batch_id, kafka_partition, start_offset, end_offset, loaded FROM "+ds+".batch_ledger`", func(r []bigquery.Value) {
		ledger = append(ledger, ledgerBatch{ID: r[0].(string), Partition: int(r[1].(int64)), Start: r[2].(int64), End: r[3].(int64), Loaded: r[4].(int64)})
	})
	if err != nil {
		return v, err
	}
	v.Batches = len(ledger)
	rows := map[int]map[int64][]landed{} // partition, offset
	add := func(p int, l landed) {
		if rows[p] == nil {
			rows[p] = map[int64][]landed{}
		}
		rows[p][l.Offset] = append(rows[p][l.Offset], l)
		v.Rows++
	}
	err = query(ctx, bq, "SELECT batch_id, kafka_partition, kafka_offset, transaction_id, CAST(amount AS STRING), currency FROM "+ds+".transactions`", func(r []bigquery.Value) {
		amount, ok := new(big.Rat).SetString(r[4].(string))
		if !ok {
			amount = new(big.Rat)
		}
		l := landed{Table: tableTransactions, Batch: r[0].(string), Offset: r[2].(int64), ID: r[3].(string), Amount: amount, Currency: r[5].(string)}
		v.Got[l.Currency] = v.Got[l.Currency].add(amount)
		add(int(r[1].(int64)), l)
	})
	if err != nil {
		return v, err
	}
	err = query(ctx, bq, "SELECT batch_id, kafka_partition, kafka_offset FROM "+ds+".dedup_audit`", func(r []bigquery.Value) {
		add(int(r[1].(int64)), landed{Table: tableDedupAudit, Batch: r[0].(string), Offset: r[2].(int64)})
	})
	if err != nil {
		return v, err
	}
	// Quarantine replays (batch replay/…) are an operator's act; the chaos
	// run does none, and any would show here as a difference.
	err = query(ctx, bq, "SELECT batch_id, kafka_partition, kafka_offset, reason FROM "+ds+".ingest_errors`", func(r []bigquery.Value) {
		add(int(r[1].(int64)), landed{Table: tableErrors, Batch: r[0].(string), Offset: r[2].(int64), Reason: r[3].(string)})
	})
	if err != nil {
		return v, err
	}

	for c, want := range v.Want {
		if want.String() != v.Got[c].String() {
			v.Problems = append(v.Problems, fmt.Sprintf("transactions in %s: oracle %s, BigQuery %s", c, want, v.Got[c]))
		}
	}
	for c, got := range v.Got {
		if v.Want[c] == nil {
			v.Problems = append(v.Problems, fmt.Sprintf("transactions in %s: oracle none, BigQuery %s", c, got))
		}
	}

	sort.Slice(ledger, func(i, j int) bool {
		if ledger[i].Partition != ledger[j].Partition {
			return ledger[i].Partition < ledger[j].Partition
		}
		if ledger[i].Start != ledger[j].Start {
			return ledger[i].Start < ledger[j].Start
		}
		return ledger[i].ID < ledger[j].ID
	})
	inLedger := map[string]bool{}
	covered := map[int]int64{} // partition → offset the ledger reaches
	var partitions []int
	for p := range ends {
		partitions = append(partitions, p)
	}
	slices.Sort(partitions)
	for _, b := range ledger {
		if inLedger[b.ID] {
			v.Problems = append(v.Problems, fmt.Sprintf("batch %s has more than one ledger row", b.ID))
			v.firstBad(b.ID)
			continue
		}
		inLedger[b.ID] = true
		if next := covered[b.Partition]; b.Start != next {
			v.Problems = append(v.Problems, fmt.Sprintf("batch %s starts at %d, the ledger of partition %d reached %d before it (a gap or an overlap)", b.ID, b.Start, b.Partition, next))
			v.firstBad(b.ID)
		}
		covered[b.Partition] = max(covered[b.Partition], b.End)
		var diffs []string
		for off := b.Start; off < b.End; off++ {
			want, wanted := books.Partitions[b.Partition][off]
			got := rows[b.Partition][off]
			switch {
			case !wanted && len(got) > 0:
				diffs = append(diffs, fmt.Sprintf("offset %d: oracle nothing (a marker or an aborted record), BigQuery %s", off, describe(got)))
			case wanted && len(got) == 0:
				diffs = append(diffs, fmt.Sprintf("offset %d (%s): oracle %s, BigQuery nothing", off, want.Intent, want))
			case wanted && (len(got) != 1 || !same(want, got[0])):
				diffs = append(diffs, fmt.Sprintf("offset %d (%s): oracle %s, BigQuery %s", off, want.Intent, want, describe(got)))
			}
			for _, g := range got {
				if g.Batch != b.ID {
					diffs = append(diffs, fmt.Sprintf("offset %d: a %s row of batch %s, inside this batch's range", off, g.Table, g.Batch))
				}
			}
		}
		if len(diffs) > 0 {
			v.firstBad(fmt.Sprintf("%s (partition %d [%d, %d), %d offsets differ)", b.ID, b.Partition, b.Start, b.End, len(diffs)))
			for i, d := range diffs {
				if i == 10 {
					v.Problems = append(v.Problems, fmt.Sprintf("batch %s: … %d more offsets differ", b.ID, len(diffs)-i))
					break
				}
				v.Problems = append(v.Problems, "batch "+b.ID+": "+d)
			}
		}
	}
	for _, p := range partitions {
		if covered[p] != ends[p] {
			v.Problems = append(v.Problems, fmt.Sprintf("partition %d: the ledger reaches offset %d, the log ends at %d", p, covered[p], ends[p]))
		}
	}
	// Rows no ledgered batch explains.
	for p, offs := range rows {
		for off, ls := range offs {
			for _, l := range ls {
				if !inLedger[l.Batch] {
					v.Problems = append(v.Problems, fmt.Sprintf("partition %d offset %d: a %s row of batch %s, which has no ledger row", p, off, l.Table, l.Batch))
				}
			}
		}
	}
	return v, nil
}

func (v *Verdict) firstBad(b string) {
	if v.FirstBadBatch == "" {
		v.FirstBadBatch = b
	}
}

func same(e Expect, l landed) bool {
	if e.Table != l.Table {
		return false
	}
	switch e.Table {
	case tableTransactions:
		return e.ID == l.ID && e.Currency == l.Currency && e.Amount.Cmp(l.Amount) == 0
	case tableErrors:
		return e.Reason == l.Reason
	}
	return true
}

func describe(ls []landed) string {
	var s []string
	for _, l := range ls {
		s = append(s, l.String()+" (batch "+l.Batch+")")
	}
	return strings.Join(s, " and ")
}

func query(ctx context.Context, bq *bigquery.Client, sql string, fn func([]bigquery.Value)) error {
	it, err := bq.Query(sql).Read(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		fn(row)
	}
}
