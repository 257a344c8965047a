// Package rows builds the BigQuery rows of a batch: its records, read
// again from Kafka, with the decisions and scores recorded for them, as
// typed rows per table, which each sink encodes in its own format
// (warehouse.Row). It is plain code, tested without servers; the engine's
// Write feeds it and writes what it builds.
package rows

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/warehouse"
)

// Build turns a batch's records into rows per table by the batch's
// recorded decisions and scores (invariant 3: nothing is decided here),
// with the totals that go into the ledger. tally is what reading the range
// passed over (markers, aborted records); step is called with each
// record's position, from 1 (a heartbeat).
func Build(in contract.LoadInput, recs []Record, tally kafkalog.Tally, now time.Time, step func(i int)) (Tables, contract.Totals, error) {
	spec, d := in.Spec, in.Decisions
	id := spec.ID()
	loadedAt := now.Format(time.RFC3339Nano)
	if int(tally.Control) != d.Control || int(tally.Aborted) != d.Aborted {
		return nil, contract.Totals{}, fmt.Errorf("build rows of %s: the log holds %d markers and %d aborted records, dedup counted %d and %d",
			id, tally.Control, tally.Aborted, d.Control, d.Aborted)
	}
	rows := Tables{}
	for _, t := range contract.LoadOrder {
		rows[t] = []warehouse.Row{}
	}
	metrics := map[metricKey]*metricAcc{}
	metric := func(e *payment.Event) *metricAcc {
		k := metricKey{e.EventTime.Truncate(time.Minute), e.Currency, e.Region}
		if metrics[k] == nil {
			metrics[k] = &metricAcc{}
		}
		return metrics[k]
	}
	amounts := Amounts{}
	totals := contract.Totals{}
	o := newOutcomes(d)
	loadedIdx := 0
	loaded := newLoadedRows(d.Loaded)
	present := int64(len(recs))
	for i := range recs {
		step(i + 1)
		r := &recs[i]
		out := o.of(r)
		e := out.event
		switch out.decision {
		case dedup.Loaded:
			if loadedIdx >= len(in.Enrichment.Scores) {
				return nil, contract.Totals{}, fmt.Errorf("build rows of %s: more loaded records than scores (%d)", id, len(in.Enrichment.Scores))
			}
			score := fraud.Score{Score: in.Enrichment.Scores[loadedIdx], Reasons: in.Enrichment.Reasons[loadedIdx]}
			loadedIdx++
			loaded.add(e, r.Columns, spec.Schemas, id, r.Record, loadedAt, score)
			m := metric(e)
			m.events++
			m.amount.Add(e.Amount)
			if score.RiskLevel() == "high" {
				m.fraud++
				totals.HighRisk++
			}
			amounts.Add(e)
			totals.Loaded++
		case dedup.Duplicate:
			metric(e).dups++
			rows.Add(contract.TableDedupAudit, &dedupRow{TransactionID: e.TransactionID, EventTime: e.EventTime.Format(time.RFC3339Nano), KafkaPartition: r.Partition,
				KafkaOffset: r.Offset, DuplicateOfOffset: out.of, IdenticalBytes: out.identical, BatchID: id, LoadedAt: loadedAt})
			totals.Duplicates++
		case dedup.Late:
			rows.Add(contract.TableIngestErrors, toErrorRow(spec, r.Record, string(payment.ReasonLate), "event_time is behind the partition's watermark", e, id, loadedAt))
			totals.Late++
		case dedup.Conflict:
			detail := fmt.Sprintf("transaction_id was loaded at offset %d with another amount or currency", out.of)
			rows.Add(contract.TableIngestErrors, toErrorRow(spec, r.Record, string(payment.ReasonConflict), detail, e, id, loadedAt))
			totals.Errors++
		case dedup.Invalid:
			var pe *payment.Error
			reason, detail := string(payment.ReasonOf(out.parseErr)), out.parseErr.Error()
			if errors.As(out.parseErr, &pe) {
				detail = pe.Detail
				if pe.Field != "" {
					detail = pe.Field + ": " + pe.Detail
				}
			}
			rows.Add(contract.TableIngestErrors, toErrorRow(spec, r.Record, reason, detail, nil, id, loadedAt))
			totals.Errors++
		}
	}
	if loadedIdx != len(in.Enrichment.Scores) || totals.Loaded != d.Loaded {
		return nil, contract.Totals{}, fmt.Errorf("build rows of %s: %d loaded records, decisions say %d, %d scores", id, totals.Loaded, d.Loaded, len(in.Enrichment.Scores))
	}

	loaded.into(rows)
	for _, k := range slices.SortedFunc(maps.Keys(metrics), func(x, y metricKey) int {
		return cmp.Or(x.minute.Compare(y.minute), strings.Compare(x.currency, y.currency), strings.Compare(x.region, y.region))
	}) {
		m := metrics[k]
		rows.Add(contract.TableMetricsMinute, &metricRow{Minute: k.minute.Format(time.RFC3339), Currency: k.currency, Region: k.region, EventCount: m.events,
			AmountSum: m.amount.String(), FraudCount: m.fraud, DuplicateCount: m.dups,
			BatchID: id, KafkaPartition: spec.Partition, KafkaOffset: spec.Start, LoadedAt: loadedAt})
	}
	ledger := &ledgerRow{BatchID: id, KafkaTopic: spec.Topic, KafkaPartition: spec.Partition, StartOffset: spec.Start, EndOffset: spec.End,
		Records: spec.End - spec.Start, Loaded: totals.Loaded, Duplicates: totals.Duplicates, Errors: totals.Errors, Late: totals.Late,
		Control: d.Control, Aborted: d.Aborted, Skipped: spec.End - spec.Start - present - int64(d.Control+d.Aborted),
		NextWindowStart: d.Next.Start, LatenessNS: int64(spec.AllowedLateness), MaxWindowIDs: spec.MaxWindowIDs, LoadedAt: loadedAt}
	if !d.Next.Newest.IsZero() {
		ledger.NextWindowNewest = d.Next.Newest.Format(time.RFC3339Nano)
	}
	for _, f := range d.Next.Floors {
		ledger.NextWindowFloors = append(ledger.NextWindowFloors, LedgerFloor{FromOffset: f.Offset, Floor: f.Time.UTC().Format(time.RFC3339Nano)})
	}
	if schemas := spec.Schemas.Clone(); schemas.Registry || len(d.Schemas.Known)+len(d.Schemas.Unknown) > 0 {
		// The partition's verdicts after this batch, for a start after a
		// stop to go on with (operator's resume points).
		schemas.Merge(d.Schemas)
		b, err := json.Marshal(schemas)
		if err != nil {
			return nil, contract.Totals{}, err
		}
		ledger.Schemas = string(b)
	}
	// The typed columns this batch's plan recorded go on the record.
	var changes []contract.Column
	for _, c := range spec.Schemas.Columns {
		if c.From == spec.Start {
			changes = append(changes, c)
		}
	}
	rows.SchemaChanges(changes, id, spec.Topic, spec.Partition, loadedAt)
	ledger.AmountByCurrency, totals.AmountByCurrency = amounts.Sums()
	rows.Add(contract.TableBatchLedger, ledger)
	totals.Records = int(present)
	totals.Control, totals.Aborted, totals.Skipped = d.Control, d.Aborted, int(ledger.Skipped)
	return rows, totals, nil
}
