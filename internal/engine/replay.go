package engine

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"go.uber.org/zap"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/registry"
	"github.com/paystream/paystream/internal/rows"
)

// A quarantine replay loads the late records of one batch, which the
// pipeline filed in ingest_errors because it could not prove them unique,
// once an operator decided they belong in transactions. Like a batch, it
// decides once, which records and their fraud scores (DecideReplay,
// recorded in history), and applies the
// decision idempotently (LoadReplay: load job IDs from the replay ID, its
// ledger row in quarantine_replays last). The records come from
// ingest_errors' raw bytes, which outlive Kafka's retention.

type quarantined struct {
	record kafkalog.Record
	event  payment.Event
	// invalid, for a record turned away for its schema, is why it is not
	// a payment now that it reads (its key, a field): it stays.
	invalid error
	columns []contract.Column // its typed columns (rows.Record.Columns)
}

// quarantinedRecords reads the source batch's records of the replay's
// reason from ingest_errors, in offset order, parsed. Records turned away
// for their schema are read with the registry's schema now: one that
// still cannot be read fails the replay, which loads nothing, and says
// why.
//
// columns are the typed columns the replay recorded (ReplayDecision); the
// judge returned holds the new fields the records have that they lack.
func (e *Engine) quarantinedRecords(ctx context.Context, in contract.ReplayInput, columns []contract.Column) ([]quarantined, *judge, error) {
	// A record turned away for its schema was never judged as a Kafka
	// record (its key, its event_time against its timestamp): it is now,
	// at the lateness its batch decided with.
	var lateness time.Duration
	if in.ReplayReason() != contract.ReasonLate {
		var err error
		if lateness, err = e.batchLateness(ctx, in.Source); err != nil {
			return nil, nil, err
		}
	}
	q := e.BigQuery.Query(fmt.Sprintf("SELECT kafka_offset, kafka_key, kafka_timestamp, raw, raw_encoding FROM `%s.%s.ingest_errors` "+
		"WHERE batch_id = @batch AND reason = @late ORDER BY kafka_offset", e.BigQuery.Project(), e.Dataset))
	q.Parameters = []bigquery.QueryParameter{{Name: "batch", Value: in.Source.ID()}, {Name: "late", Value: in.ReplayReason()}}
	it, err := q.Read(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read quarantine of %s: %w", in.Source.ID(), err)
	}
	var out []quarantined
	// Asked of the registry now, recorded nowhere: a late record was read
	// with its schema when quarantined, and a registry never changes the
	// schema of an ID; a schema_ record is replayed because its schema,
	// or its column, has been fixed since.
	j := newJudge(0, math.MaxInt64, contract.Schemas{Registry: true, Columns: columns})
	for {
		var row struct {
			Offset   int64                  `bigquery:"kafka_offset"`
			Key      bigquery.NullString    `bigquery:"kafka_key"`
			Time     bigquery.NullTimestamp `bigquery:"kafka_timestamp"`
			Raw      string                 `bigquery:"raw"`
			Encoding string                 `bigquery:"raw_encoding"`
		}
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return out, j, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read quarantine of %s: %w", in.Source.ID(), err)
		}
		if len(out) > 0 && out[len(out)-1].record.Offset == row.Offset {
			continue
		}
		raw := []byte(row.Raw)
		if row.Encoding == "base64" {
			if raw, err = base64.StdEncoding.DecodeString(row.Raw); err != nil {
				return nil, nil, fmt.Errorf("quarantine of %s at offset %d: raw: %w", in.Source.ID(), row.Offset, err)
			}
		}
		var ev payment.Event
		var cols []contract.Column
		if registry.Framed(raw) {
			var pe *payment.Error
			ev, cols, err = e.decodeFramed(ctx, kafkalog.Record{Offset: row.Offset, Value: raw}, j)
			if err != nil && !errors.As(err, &pe) {
				return nil, nil, fmt.Errorf("quarantine of %s at offset %d: %w", in.Source.ID(), row.Offset, err)
			}
		} else {
			ev, err = payment.Parse(raw)
		}
		rec := kafkalog.Record{Partition: in.Source.Partition, Offset: row.Offset, Value: raw, Time: row.Time.Timestamp}
		if in.ReplayReason() != contract.ReasonLate && !strings.HasPrefix(string(payment.ReasonOf(err)), "schema_") {
			// It reads now: judged as its batch would have judged it, it
			// is a payment, or a record of another reason that stays.
			if err == nil {
				ev, err = payment.CheckRecord(ev, []byte(row.Key.StringVal), row.Time.Timestamp, lateness)
			}
			out = append(out, quarantined{record: rec, event: ev, invalid: err, columns: cols})
			continue
		}
		if in.ReplayReason() == contract.ReasonLate && payment.ReasonOf(err) == payment.ReasonSchemaTypeChanged {
			// Its new field's column, recorded since, does not take the
			// field's type: it stays, with the others that do not load,
			// rather than holding the replay's other records back.
			out = append(out, quarantined{record: rec, event: ev, invalid: err})
			continue
		}
		if err != nil {
			// A late record parsed when it was quarantined, and a schema_
			// record is replayed once its schema is fixed: one that does
			// not parse now is refused, and the replay loads nothing.
			return nil, nil, permanent(contract.ErrTypeReplayMismatch, fmt.Errorf("%s record of %s at offset %d does not parse: %v; fix its cause first (docs/formats.md)",
				in.ReplayReason(), in.Source.ID(), row.Offset, err))
		}
		out = append(out, quarantined{record: rec, event: ev, columns: cols})
	}
}

// DecideReplay decides which quarantined records of the source batch to
// load: each whose transaction_id transactions does not hold yet, the
// first of a repeated one. It runs once per replay (recorded in history);
// replays run one at a time (QuarantineReplays), so each sees the rows of
// the ones before.
func (e *Engine) DecideReplay(ctx context.Context, in contract.ReplayInput) (contract.ReplayDecision, error) {
	recs, j, err := e.quarantinedRecords(ctx, in, nil)
	if err != nil {
		return contract.ReplayDecision{}, err
	}
	// The records' new fields get their columns as a batch's do, found or
	// added now and recorded with the decision; the records are then read
	// with them, and one whose column does not take its field refuses the
	// replay.
	columns, err := e.recordColumns(ctx, contract.Schemas{}, j.wanted, in.Source.Start)
	if err != nil {
		return contract.ReplayDecision{}, fmt.Errorf("decide replay %s: typed columns: %w", in.ID(), err)
	}
	if len(columns) > 0 {
		if recs, _, err = e.quarantinedRecords(ctx, in, columns); err != nil {
			return contract.ReplayDecision{}, err
		}
	}
	if in.ReplayReason() != contract.ReasonLate {
		if err := e.behindWatermark(ctx, in, recs); err != nil {
			return contract.ReplayDecision{}, err
		}
	}
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		if r.invalid == nil {
			ids = append(ids, r.event.TransactionID)
		}
	}
	loaded := map[string]bool{}
	if len(ids) > 0 {
		// Rows this replay loaded in an earlier, interrupted run are not
		// "loaded already": the rerun decides as the first run did, and
		// its loads (same job IDs) append nothing twice.
		q := e.BigQuery.Query(fmt.Sprintf("SELECT DISTINCT transaction_id FROM `%s.%s.transactions` WHERE transaction_id IN UNNEST(@ids) AND batch_id != @replay",
			e.BigQuery.Project(), e.Dataset))
		q.Parameters = []bigquery.QueryParameter{{Name: "ids", Value: ids}, {Name: "replay", Value: in.ID()}}
		it, err := q.Read(ctx)
		if err != nil {
			return contract.ReplayDecision{}, fmt.Errorf("decide replay %s: look up transaction_ids: %w", in.ID(), err)
		}
		for {
			var row []bigquery.Value
			err := it.Next(&row)
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return contract.ReplayDecision{}, fmt.Errorf("decide replay %s: look up transaction_ids: %w", in.ID(), err)
			}
			loaded[row[0].(string)] = true
		}
	}
	d := contract.ReplayDecision{Quarantined: len(recs), Offsets: []int64{}, DuplicateOffsets: []int64{}, Columns: columns}
	scorer := fraud.NewScorer()
	for i := range recs {
		r := &recs[i]
		if r.invalid != nil || loaded[r.event.TransactionID] {
			d.DuplicateOffsets = append(d.DuplicateOffsets, r.record.Offset)
			continue
		}
		loaded[r.event.TransactionID] = true
		s := scorer.Score(&r.event)
		d.Offsets, d.Scores, d.Reasons = append(d.Offsets, r.record.Offset), append(d.Scores, s.Score), append(d.Reasons, s.Reasons)
	}
	e.logger(ctx, contract.Spec{Range: in.Source}).Info("replay decided", zap.String("replay_id", in.ID()),
		zap.Int("quarantined", d.Quarantined), zap.Int("to_load", len(d.Offsets)), zap.Int("duplicates", len(d.DuplicateOffsets)))
	return d, nil
}

// WriteReplay loads the decided records into transactions and
// transactions_enriched under the replay's ID, then its ledger row into
// quarantine_replays. Run twice, or twice at once, it appends once.
func (e *Engine) WriteReplay(ctx context.Context, in contract.ReplayLoadInput) (contract.ReplayTotals, error) {
	defer keepAlive(ctx, "load")()
	id := in.Replay.ID()
	rows, totals, err := e.replayRows(ctx, in, time.Now().UTC())
	if err != nil {
		return contract.ReplayTotals{}, err
	}
	log := e.logger(ctx, contract.Spec{Range: in.Replay.Source})
	if _, err := e.writeAll(ctx, log, e.jobs(), id, rows.Order(contract.ReplayOrder), rows); err != nil {
		return contract.ReplayTotals{}, err
	}
	log.Info("replay loaded", zap.String("replay_id", id), zap.Int("loaded", totals.Loaded))
	return totals, nil
}

func (e *Engine) replayRows(ctx context.Context, in contract.ReplayLoadInput, now time.Time) (rows.Tables, contract.ReplayTotals, error) {
	id, d := in.Replay.ID(), in.Decision
	recs, _, err := e.quarantinedRecords(ctx, in.Replay, d.Columns)
	if err != nil {
		return nil, contract.ReplayTotals{}, err
	}
	if len(recs) != d.Quarantined {
		return nil, contract.ReplayTotals{}, permanent(contract.ErrTypeReplayMismatch, fmt.Errorf("replay %s: ingest_errors holds %d late records of the batch, the decision counted %d",
			id, len(recs), d.Quarantined))
	}
	byOffset := make(map[int64]*quarantined, len(recs))
	for i := range recs {
		byOffset[recs[i].record.Offset] = &recs[i]
	}
	if len(d.Scores) != len(d.Offsets) || len(d.Reasons) != len(d.Offsets) {
		return nil, contract.ReplayTotals{}, permanent(contract.ErrTypeReplayMismatch, fmt.Errorf("replay %s: %d offsets to load, %d scores recorded", id, len(d.Offsets), len(d.Scores)))
	}
	loadedAt := now.Format(time.RFC3339Nano)
	out := rows.Tables{}
	totals := contract.ReplayTotals{Quarantined: d.Quarantined, Duplicates: len(d.DuplicateOffsets)}
	amounts := rows.Amounts{}
	for i, off := range d.Offsets {
		r := byOffset[off]
		if r == nil {
			return nil, contract.ReplayTotals{}, permanent(contract.ErrTypeReplayMismatch, fmt.Errorf("replay %s: offset %d was decided but is not quarantined", id, off))
		}
		e := &r.event
		score := fraud.Score{Score: d.Scores[i], Reasons: d.Reasons[i]}
		out.Loaded(e, r.columns, contract.Schemas{Columns: d.Columns}, id, r.record, loadedAt, score)
		if score.RiskLevel() == "high" {
			totals.HighRisk++
		}
		amounts.Add(e)
		totals.Loaded++
	}
	ledger := &rows.ReplayLedger{BatchID: id, SourceBatchID: in.Replay.Source.ID(), KafkaTopic: in.Replay.Source.Topic, KafkaPartition: in.Replay.Source.Partition,
		Quarantined: d.Quarantined, Loaded: totals.Loaded, Duplicates: totals.Duplicates, LoadedAt: loadedAt}
	out.SchemaChanges(d.Columns, id, in.Replay.Source.Topic, in.Replay.Source.Partition, loadedAt)
	ledger.AmountByCurrency, totals.AmountByCurrency = amounts.Sums()
	out.Add(contract.TableQuarantineReplays, ledger)
	return out, totals, nil
}

// batchLateness is the allowed lateness batch src decided with, from its
// ledger row.
func (e *Engine) batchLateness(ctx context.Context, src contract.Range) (time.Duration, error) {
	q := e.BigQuery.Query(fmt.Sprintf("SELECT allowed_lateness_ns FROM `%s.%s.batch_ledger` WHERE batch_id = @batch LIMIT 1", e.BigQuery.Project(), e.Dataset))
	q.Parameters = []bigquery.QueryParameter{{Name: "batch", Value: src.ID()}}
	it, err := q.Read(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the ledger row of %s: %w", src.ID(), err)
	}
	var row struct {
		Lateness bigquery.NullInt64 `bigquery:"allowed_lateness_ns"`
	}
	if err := it.Next(&row); err != nil {
		return 0, permanent(contract.ErrTypeReplayMismatch, fmt.Errorf("the ledger row of %s: %w", src.ID(), err))
	}
	return time.Duration(row.Lateness.Int64), nil
}

// behindWatermark refuses a replay of records turned away for their
// schema while any of them is not behind its partition's watermark: those
// records never entered the dedup window, so a resend of one inside it
// would load a second time. Behind it, a resend with its event_time is
// late. The watermark is the ledger's last: its newest event time before
// the window's start, less the lateness, which is never ahead of the
// partition's own.
func (e *Engine) behindWatermark(ctx context.Context, in contract.ReplayInput, recs []quarantined) error {
	q := e.BigQuery.Query(fmt.Sprintf("SELECT next_window_newest, allowed_lateness_ns FROM `%s.%s.batch_ledger` "+
		"WHERE kafka_topic = @topic AND kafka_partition = @partition ORDER BY end_offset DESC LIMIT 1", e.BigQuery.Project(), e.Dataset))
	q.Parameters = []bigquery.QueryParameter{{Name: "topic", Value: in.Source.Topic}, {Name: "partition", Value: in.Source.Partition}}
	it, err := q.Read(ctx)
	if err != nil {
		return fmt.Errorf("replay %s: read the partition's watermark: %w", in.ID(), err)
	}
	var row struct {
		Newest   bigquery.NullString `bigquery:"next_window_newest"`
		Lateness bigquery.NullInt64  `bigquery:"allowed_lateness_ns"`
	}
	if err := it.Next(&row); err != nil {
		return fmt.Errorf("replay %s: read the partition's watermark: %w", in.ID(), err)
	}
	var watermark time.Time
	if row.Newest.Valid {
		newest, err := time.Parse(time.RFC3339Nano, row.Newest.StringVal)
		if err != nil {
			return fmt.Errorf("replay %s: next_window_newest: %w", in.ID(), err)
		}
		watermark = newest.Add(-time.Duration(row.Lateness.Int64))
	}
	for _, r := range recs {
		if r.invalid == nil && !r.event.EventTime.Before(watermark) {
			return permanent(contract.ErrTypeReplayMismatch, fmt.Errorf("replay %s: the record at offset %d is not behind partition %d's watermark yet (%s), so a resend of it could still load; replay it once newer records have moved the watermark past it",
				in.ID(), r.record.Offset, in.Source.Partition, watermark.Format(time.RFC3339)))
		}
	}
	return nil
}
