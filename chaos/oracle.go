package main

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"time"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// Table names where an outcome lands.
const (
	tableTransactions = "transactions"
	tableDedupAudit   = "dedup_audit"
	tableErrors       = "ingest_errors"
)

// Expect is where one offset's record must land.
type Expect struct {
	Table    string // transactions, dedup_audit or ingest_errors
	Reason   string // for ingest_errors
	ID       string // transaction_id, for transactions
	Amount   *big.Rat
	Currency string
	Intent   string // the producer's, for the report
}

func (e Expect) String() string {
	switch e.Table {
	case tableTransactions:
		return fmt.Sprintf("transactions %s %s %s", e.ID, e.Amount.FloatString(3), e.Currency)
	case tableErrors:
		return "ingest_errors " + e.Reason
	}
	return e.Table
}

// Books is the oracle's answer: per partition and offset, where each
// committed record must land. Offsets absent hold transaction markers or
// records of aborted transactions, which land nowhere.
type Books struct {
	Partitions map[int]map[int64]Expect
	// Aborted counts the producer's records of aborted transactions.
	Aborted int
}

// Oracle computes the books from the producer's own account of what it
// wrote and what each transaction became, by the dedup rules of the
// design (simulation.Oracle applies them to one record at a time). It
// judges every record under each allowed lateness of the run and fails
// when they disagree: then the books would depend on which batch saw the
// change first, and the run could prove nothing.
func Oracle(produced []Produced, latenesses []time.Duration) (Books, error) {
	committed := make([]Produced, 0, len(produced))
	b := Books{Partitions: map[int]map[int64]Expect{}}
	for _, r := range produced {
		if r.Committed {
			committed = append(committed, r)
		} else {
			b.Aborted++
		}
	}
	sort.SliceStable(committed, func(i, j int) bool {
		if committed[i].Partition != committed[j].Partition {
			return committed[i].Partition < committed[j].Partition
		}
		return committed[i].Offset < committed[j].Offset
	})
	oracles := make([]*simulation.Oracle, len(latenesses))
	for i, l := range latenesses {
		oracles[i] = simulation.NewOracle(l)
	}
	for _, r := range committed {
		var first Expect
		for i, o := range oracles {
			e := expectOf(o.Observe(r.Partition, r.Offset, r.Key, r.Value, r.Timestamp))
			e.Intent = r.Intent
			if i == 0 {
				first = e
				continue
			}
			if e.String() != first.String() {
				return b, fmt.Errorf("partition %d offset %d (%s): %s under allowed lateness %s, %s under %s: the producer wrote a record whose fate depends on the lateness",
					r.Partition, r.Offset, r.Intent, first, latenesses[0], e, latenesses[i])
			}
		}
		if b.Partitions[r.Partition] == nil {
			b.Partitions[r.Partition] = map[int64]Expect{}
		}
		if _, dup := b.Partitions[r.Partition][r.Offset]; dup {
			return b, fmt.Errorf("the producer was told offset %d of partition %d twice", r.Offset, r.Partition)
		}
		b.Partitions[r.Partition][r.Offset] = first
	}
	return b, nil
}

func expectOf(v simulation.Verdict) Expect {
	switch v.Outcome {
	case simulation.OutcomeLoaded:
		return Expect{Table: tableTransactions, ID: v.TransactionID, Amount: v.Event.Amount.Rat(), Currency: v.Event.Currency}
	case simulation.OutcomeDuplicate:
		return Expect{Table: tableDedupAudit}
	case simulation.OutcomeLate:
		return Expect{Table: tableErrors, Reason: string(payment.ReasonLate)}
	}
	return Expect{Table: tableErrors, Reason: string(v.Reason)}
}

// Totals sums the books' transactions per currency.
func (b Books) Totals() map[string]*Total {
	out := map[string]*Total{}
	for _, offs := range b.Partitions {
		for _, e := range offs {
			if e.Table == tableTransactions {
				out[e.Currency] = out[e.Currency].add(e.Amount)
			}
		}
	}
	return out
}

// Total is a count and an exact sum.
type Total struct {
	Count int
	Sum   *big.Rat
}

func (t *Total) add(a *big.Rat) *Total {
	if t == nil {
		t = &Total{Sum: new(big.Rat)}
	}
	t.Count++
	t.Sum.Add(t.Sum, a)
	return t
}

func (t *Total) String() string {
	if t == nil {
		return "0 rows, 0"
	}
	return fmt.Sprintf("%d rows, %s", t.Count, t.Sum.FloatString(3))
}

// CompareLog reads the topic back as paystream's reader does
// (internal/kafkalog, read committed) and lists where it differs from the
// producer's account: a record it returns that was aborted or never
// written, or a committed record it misses. The pipeline loads what this
// reader returns, so a difference here explains a difference in the books.
//
// step, when above 0, reads each partition in ranges of that many offsets,
// as batches of that size do: a range may start inside a transaction.
func CompareLog(ctx context.Context, kc kafkalog.Cluster, topic string, produced []Produced, step int64) ([]string, error) {
	bounds, err := kafkalog.AllBounds(ctx, kc, topic)
	if err != nil {
		return nil, err
	}
	byOffset := map[int]map[int64]Produced{}
	for _, r := range produced {
		if byOffset[r.Partition] == nil {
			byOffset[r.Partition] = map[int64]Produced{}
		}
		byOffset[r.Partition][r.Offset] = r
	}
	var out []string
	for p, bd := range bounds {
		seen := map[int64]bool{}
		read := func(rec kafkalog.Record) error {
			seen[rec.Offset] = true
			want, ok := byOffset[p][rec.Offset]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("partition %d offset %d: the reader returns a record the producer never wrote there", p, rec.Offset))
			case !want.Committed:
				out = append(out, fmt.Sprintf("partition %d offset %d: the reader returns a record of aborted transaction %d of %s (%s)", p, rec.Offset, want.Txn, want.Producer, want.Intent))
			case !bytes.Equal(want.Value, rec.Value) || !bytes.Equal(want.Key, rec.Key):
				out = append(out, fmt.Sprintf("partition %d offset %d: the reader returns other bytes than the producer wrote", p, rec.Offset))
			case !want.Timestamp.Equal(rec.Time):
				out = append(out, fmt.Sprintf("partition %d offset %d: the reader returns timestamp %s, the producer wrote %s", p, rec.Offset, rec.Time, want.Timestamp))
			}
			return nil
		}
		for start := bd.First; start < bd.Stable; {
			end := bd.Stable
			if step > 0 {
				end = min(start+step, bd.Stable)
			}
			if err := kafkalog.ReadRange(ctx, kc, topic, p, start, end, read); err != nil {
				return out, fmt.Errorf("read partition %d back [%d, %d): %w", p, start, end, err)
			}
			start = end
		}
		var missed []int64
		for off, r := range byOffset[p] {
			if r.Committed && !seen[off] {
				missed = append(missed, off)
			}
		}
		slices.Sort(missed)
		for _, off := range missed {
			out = append(out, fmt.Sprintf("partition %d offset %d: the reader misses committed record (%s)", p, off, byOffset[p][off].Intent))
		}
	}
	return out, nil
}
