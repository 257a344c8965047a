package activities

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/bigquery"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/warehouse"
)

// Load writes the batch to every table, one load job per table with a job
// ID derived from (batch ID, table), applying the recorded decisions and
// scores, then commits the batch's end as the consumer group's offset.
// Run twice, or twice at once, it appends once.
func (a *Activities) Load(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
	began := time.Now()
	spec := in.Spec
	log := a.logger(ctx, spec)
	if activity.IsActivity(ctx) && activity.GetInfo(ctx).Attempt > 1 {
		a.Metrics.LoadRetried("activity")
	}
	defer keepAlive(ctx, "load")()
	rows, totals, err := a.buildRows(ctx, in, time.Now().UTC())
	if err != nil {
		return contract.Totals{}, err
	}
	sink, err := a.batchSink(ctx, spec)
	if err != nil {
		return contract.Totals{}, err
	}
	counts, err := a.writeAll(ctx, sink, spec.ID(), contract.LoadOrder, rows)
	if err != nil {
		return contract.Totals{}, err
	}
	if len(spec.Streams) > 0 {
		totals.Rows = counts // the workflow advances its stream offsets by them
	}
	// Every table, the ledger last, is loaded: only now may the group's
	// offset move past the batch (invariant 5). Committing here rather
	// than in an activity of its own saves each batch a Temporal round
	// trip; a retried Load commits the same offset again, which is
	// harmless, and an attempt that lost its activity (its heartbeat is
	// refused) has its context cancelled, so it does not commit late.
	if err := a.commitOffset(ctx, spec.Topic, spec.Partition, spec.End); err != nil {
		return contract.Totals{}, fmt.Errorf("load %s: %w", spec.ID(), err)
	}
	// The oldest produce time the batch's records carry, for its latency;
	// timestamps not to trust are left out.
	var oldest time.Time
	if recs, _, err := a.batchRecords(ctx, spec); err == nil {
		for i := range recs {
			if ts, ok := payment.KafkaTime(recs[i].Time); ok && (oldest.IsZero() || ts.Before(oldest)) {
				oldest = ts
			}
		}
	}
	a.Metrics.BatchLoaded(spec.Topic, spec.Partition, totals.Loaded, totals.Duplicates, totals.Errors, totals.Late, oldest, time.Since(began))
	a.batches.drop(spec.ID()) // Load is the batch's last reader
	// Only after success: an upload cut off by an error may still be
	// read by the HTTP transport after its call returned.
	a.releaseRows(rows)
	log.Info("load done", zap.Int("loaded", totals.Loaded), zap.Int("duplicates", totals.Duplicates), zap.Int("errors", totals.Errors),
		zap.Int("late", totals.Late), since(began))
	return totals, nil
}

// batchSink is where a batch's rows go: its streams in storagewrite mode,
// load jobs otherwise; only the ledger with the discard sink.
func (a *Activities) batchSink(ctx context.Context, spec contract.Spec) (warehouse.Sink, error) {
	var sink warehouse.Sink = a.jobs()
	if len(spec.Streams) > 0 {
		w, err := a.streamWriter(ctx)
		if err != nil {
			return nil, err
		}
		at := make(map[string]warehouse.StreamAt, len(spec.Streams))
		for _, table := range contract.LoadOrder {
			if st, ok := spec.Streams[table]; ok {
				at[table] = warehouse.StreamAt{Stream: st.Name, Offset: st.Offset}
			}
		}
		sink = warehouse.Streams{Writer: w, At: at}
	}
	if a.Discard {
		sink = warehouse.Discard{Sink: sink, Ledger: contract.TableBatchLedger}
	}
	return sink, nil
}

// jobs is the load-job sink: job IDs from (batch or replay ID, table).
func (a *Activities) jobs() warehouse.Jobs {
	j := warehouse.Jobs{
		Loader: warehouse.Loader{Client: a.BigQuery, Dataset: a.Dataset, Retried: func() { a.Metrics.LoadRetried("job") },
			Finished: a.Metrics.LoadJobFinished, Backoff: a.LoadBackoff},
		JobID: contract.LoadJobID,
	}
	if a.Emulator {
		j.FoundJobWrote = a.batchRowsLanded
	}
	return j
}

// writeAll writes rows with sink, the ledger last (warehouse.WriteAll). A
// write refused for good fails the batch without retry: its partition
// runs it again after a growing wait (failed load jobs count against the
// table's quota), and that run goes on with the next job ID.
func (a *Activities) writeAll(ctx context.Context, sink warehouse.Sink, id string, order []string, rows map[string]*bytes.Buffer) (map[string]int, error) {
	ndjson := make(map[string][]byte, len(rows))
	for table, b := range rows {
		ndjson[table] = b.Bytes()
	}
	counts, err := warehouse.WriteAll(ctx, faultPoints{sink}, id, order, ndjson)
	if errors.Is(err, warehouse.ErrRefused) {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), contract.ErrTypeLoadFailed, err)
	}
	return counts, err
}

// faultPoints lets the fault tests kill the worker after a table's write
// (faults.At "load:<table>").
type faultPoints struct{ warehouse.Sink }

func (f faultPoints) WriteTable(ctx context.Context, id, table string, rows []byte) (int, error) {
	n, err := f.Sink.WriteTable(ctx, id, table, rows)
	if err == nil && len(rows) > 0 {
		faults.At("load:" + table)
	}
	return n, err
}

// batchRowsLanded tells whether table holds rows of the batch, giving an
// upload another attempt may still be finishing a few seconds to land.
func (a *Activities) batchRowsLanded(ctx context.Context, batchID, table string) (bool, error) {
	q := a.BigQuery.Query(fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.%s` WHERE batch_id = @batch", a.BigQuery.Project(), a.Dataset, table))
	q.Parameters = []bigquery.QueryParameter{{Name: "batch", Value: batchID}}
	for try := 0; ; try++ {
		it, err := q.Read(ctx)
		if err != nil {
			return false, err
		}
		var row []bigquery.Value
		if err := it.Next(&row); err != nil {
			return false, err
		}
		if n, _ := row[0].(int64); n > 0 || try == 5 {
			return n > 0, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Row shapes of the tables (schema/*.sql). Optional strings are omitted
// when empty, which loads them as NULL.
type txRow struct {
	payment.Wire
	Extra          string `json:"extra,omitempty"`
	BatchID        string `json:"batch_id"`
	KafkaPartition int    `json:"kafka_partition"`
	KafkaOffset    int64  `json:"kafka_offset"`
	LoadedAt       string `json:"loaded_at"`
}

type enrichedRow struct {
	txRow
	FraudScore   int      `json:"fraud_score"`
	FraudReasons []string `json:"fraud_reasons"`
	RiskLevel    string   `json:"risk_level"`
}

type metricRow struct {
	Minute         string `json:"minute"`
	Currency       string `json:"currency"`
	Region         string `json:"region"`
	EventCount     int    `json:"event_count"`
	AmountSum      string `json:"amount_sum"`
	FraudCount     int    `json:"fraud_count"`
	DuplicateCount int    `json:"duplicate_count"`
	BatchID        string `json:"batch_id"`
	KafkaPartition int    `json:"kafka_partition"`
	KafkaOffset    int64  `json:"kafka_offset"`
	LoadedAt       string `json:"loaded_at"`
}

type dedupRow struct {
	TransactionID     string `json:"transaction_id"`
	EventTime         string `json:"event_time"`
	KafkaPartition    int    `json:"kafka_partition"`
	KafkaOffset       int64  `json:"kafka_offset"`
	DuplicateOfOffset int64  `json:"duplicate_of_offset"`
	IdenticalBytes    bool   `json:"identical_bytes"`
	BatchID           string `json:"batch_id"`
	LoadedAt          string `json:"loaded_at"`
}

type errorRow struct {
	KafkaTopic     string `json:"kafka_topic"`
	KafkaPartition int    `json:"kafka_partition"`
	KafkaOffset    int64  `json:"kafka_offset"`
	KafkaKey       string `json:"kafka_key,omitempty"`
	KafkaTimestamp string `json:"kafka_timestamp,omitempty"` // empty (NULL) when not one to trust
	KafkaTimeMs    int64  `json:"kafka_timestamp_ms"`
	Reason         string `json:"reason"`
	Detail         string `json:"detail,omitempty"`
	Raw            string `json:"raw"`
	RawEncoding    string `json:"raw_encoding"`
	TransactionID  string `json:"transaction_id,omitempty"`
	EventTime      string `json:"event_time,omitempty"`
	BatchID        string `json:"batch_id"`
	LoadedAt       string `json:"loaded_at"`
}

type ledgerAmount struct {
	Currency string `json:"currency"`
	Amount   string `json:"amount"`
	Events   int    `json:"events"`
}

type ledgerRow struct {
	BatchID          string         `json:"batch_id"`
	KafkaTopic       string         `json:"kafka_topic"`
	KafkaPartition   int            `json:"kafka_partition"`
	StartOffset      int64          `json:"start_offset"`
	EndOffset        int64          `json:"end_offset"`
	Records          int64          `json:"records"`
	Loaded           int            `json:"loaded"`
	Duplicates       int            `json:"duplicates"`
	Errors           int            `json:"errors"`
	Late             int            `json:"late"`
	Control          int            `json:"control"`
	Aborted          int            `json:"aborted"`
	Skipped          int64          `json:"skipped"`
	AmountByCurrency []ledgerAmount `json:"amount_by_currency"`
	NextWindowStart  int64          `json:"next_window_start"`
	NextWindowNewest string         `json:"next_window_newest,omitempty"`
	LoadedAt         string         `json:"loaded_at"`
}

type metricKey struct {
	minute           time.Time
	currency, region string
}

type metricAcc struct {
	events, fraud, dups int
	amount              payment.Sum
}

// BuildRows is Load's row building on its own, for the benchmark's plain
// loader, which loads the same rows without the pipeline around them. (A
// function, not a method: every exported method of Activities is
// registered as an activity.)
func BuildRows(ctx context.Context, a *Activities, in contract.LoadInput, now time.Time) (map[string]*bytes.Buffer, contract.Totals, error) {
	return a.buildRows(ctx, in, now)
}

// releaseRows hands a batch's row buffers back once nothing reads them.
// The buffers kept are bounded by half the batch cache's bound: both are
// parsed or built batches, and both scale with the worker's memory.
func (a *Activities) releaseRows(rows map[string]*bytes.Buffer) {
	for _, b := range rows {
		a.rowBuffers.put(b, a.batchCacheLimit()/2)
	}
}

// buildRows turns the batch into newline-delimited JSON per table, with the
// totals that go into the ledger. Release them with a.releaseRows once
// written.
func (a *Activities) buildRows(ctx context.Context, in contract.LoadInput, now time.Time) (map[string]*bytes.Buffer, contract.Totals, error) {
	spec, d := in.Spec, in.Decisions
	id := spec.ID()
	loadedAt := now.Format(time.RFC3339Nano)
	recs, tally, err := a.batchRecords(ctx, spec)
	if err != nil {
		return nil, contract.Totals{}, fmt.Errorf("build rows of %s: %w", id, err)
	}
	if int(tally.Control) != d.Control || int(tally.Aborted) != d.Aborted {
		return nil, contract.Totals{}, fmt.Errorf("build rows of %s: the log holds %d markers and %d aborted records, dedup counted %d and %d",
			id, tally.Control, tally.Aborted, d.Control, d.Aborted)
	}
	// Room for a batch of loaded records up front: growing by doubling
	// copies (and zeroes) each row twice over.
	rowBytes := map[string]int{contract.TableTransactions: len(recs) * 700, contract.TableEnriched: len(recs) * 800}
	rows := map[string]*bytes.Buffer{}
	encs := map[string]*json.Encoder{}
	for _, t := range contract.LoadOrder {
		rows[t] = a.rowBuffers.get(rowBytes[t])
		encs[t] = json.NewEncoder(rows[t])
	}
	metrics := map[metricKey]*metricAcc{}
	metric := func(e *payment.Event) *metricAcc {
		k := metricKey{e.EventTime.Truncate(time.Minute), e.Currency, e.Region}
		if metrics[k] == nil {
			metrics[k] = &metricAcc{}
		}
		return metrics[k]
	}
	amounts := currencyTotals{}
	totals := contract.Totals{}
	o := newOutcomes(d)
	loadedIdx := 0
	var encErr error
	put := func(table string, row any) {
		if err := encs[table].Encode(row); err != nil && encErr == nil {
			encErr = err
		}
	}
	var txBuf []byte
	present := int64(len(recs))
	for i := range recs {
		// Building a large batch's rows takes seconds on a busy machine;
		// the heartbeat timeout is five.
		heartbeatEvery(ctx, i+1, "rows")
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
			txBuf = appendLoaded(rows, txBuf, e, id, r.Record, loadedAt, score)
			m := metric(e)
			m.events++
			m.amount.Add(e.Amount)
			if score.RiskLevel() == "high" {
				m.fraud++
				totals.HighRisk++
			}
			amounts.add(e)
			totals.Loaded++
		case dedup.Duplicate:
			metric(e).dups++
			put(contract.TableDedupAudit, dedupRow{TransactionID: e.TransactionID, EventTime: e.EventTime.Format(time.RFC3339Nano), KafkaPartition: r.Partition,
				KafkaOffset: r.Offset, DuplicateOfOffset: out.of, IdenticalBytes: out.identical, BatchID: id, LoadedAt: loadedAt})
			totals.Duplicates++
		case dedup.Late:
			put(contract.TableIngestErrors, toErrorRow(spec, r.Record, string(payment.ReasonLate), "event_time is behind the partition's watermark", e, id, loadedAt))
			totals.Late++
		case dedup.Conflict:
			detail := fmt.Sprintf("transaction_id was loaded at offset %d with another amount or currency", out.of)
			put(contract.TableIngestErrors, toErrorRow(spec, r.Record, string(payment.ReasonConflict), detail, e, id, loadedAt))
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
			put(contract.TableIngestErrors, toErrorRow(spec, r.Record, reason, detail, nil, id, loadedAt))
			totals.Errors++
		}
	}
	if encErr != nil {
		return nil, contract.Totals{}, fmt.Errorf("build rows of %s: %w", id, encErr)
	}
	if loadedIdx != len(in.Enrichment.Scores) || totals.Loaded != d.Loaded {
		return nil, contract.Totals{}, fmt.Errorf("build rows of %s: %d loaded records, decisions say %d, %d scores", id, totals.Loaded, d.Loaded, len(in.Enrichment.Scores))
	}

	for _, k := range slices.SortedFunc(maps.Keys(metrics), func(x, y metricKey) int {
		return cmp.Or(x.minute.Compare(y.minute), strings.Compare(x.currency, y.currency), strings.Compare(x.region, y.region))
	}) {
		m := metrics[k]
		put(contract.TableMetricsMinute, metricRow{Minute: k.minute.Format(time.RFC3339), Currency: k.currency, Region: k.region, EventCount: m.events,
			AmountSum: m.amount.String(), FraudCount: m.fraud, DuplicateCount: m.dups,
			BatchID: id, KafkaPartition: spec.Partition, KafkaOffset: spec.Start, LoadedAt: loadedAt})
	}
	ledger := ledgerRow{BatchID: id, KafkaTopic: spec.Topic, KafkaPartition: spec.Partition, StartOffset: spec.Start, EndOffset: spec.End,
		Records: spec.End - spec.Start, Loaded: totals.Loaded, Duplicates: totals.Duplicates, Errors: totals.Errors, Late: totals.Late,
		Control: d.Control, Aborted: d.Aborted, Skipped: spec.End - spec.Start - present - int64(d.Control+d.Aborted),
		NextWindowStart: d.Next.Start, LoadedAt: loadedAt}
	if !d.Next.Newest.IsZero() {
		ledger.NextWindowNewest = d.Next.Newest.Format(time.RFC3339Nano)
	}
	ledger.AmountByCurrency, totals.AmountByCurrency = amounts.sums()
	put(contract.TableBatchLedger, ledger)
	totals.Records = int(present)
	totals.Control, totals.Aborted, totals.Skipped = d.Control, d.Aborted, int(ledger.Skipped)
	return rows, totals, encErr
}

// appendLoaded writes a loaded event's transactions and
// transactions_enriched rows, reusing buf.
func appendLoaded(rows map[string]*bytes.Buffer, buf []byte, e *payment.Event, batchID string, r kafkalog.Record, loadedAt string, score fraud.Score) []byte {
	tx := toTxRow(e, batchID, r, loadedAt)
	buf = appendTxRow(buf[:0], &tx)
	rows[contract.TableTransactions].Write(buf)
	reasons := score.ReasonCodes()
	if reasons == nil {
		reasons = []string{}
	}
	enriched := enrichedRow{txRow: tx, FraudScore: int(score.Score), FraudReasons: reasons, RiskLevel: score.RiskLevel()}
	buf = appendEnrichedRow(buf[:0], &enriched)
	rows[contract.TableEnriched].Write(buf)
	return buf
}

// currencyTotals sums loaded amounts per currency, exactly.
type currencyTotals map[string]*metricAcc

func (c currencyTotals) add(e *payment.Event) {
	if c[e.Currency] == nil {
		c[e.Currency] = &metricAcc{}
	}
	c[e.Currency].events++
	c[e.Currency].amount.Add(e.Amount)
}

// sums are the totals as ledger rows and as decimal strings by currency.
func (c currencyTotals) sums() ([]ledgerAmount, map[string]string) {
	rows, byCurrency := []ledgerAmount{}, map[string]string{}
	for _, cur := range slices.Sorted(maps.Keys(c)) {
		amt := c[cur].amount.String()
		rows = append(rows, ledgerAmount{Currency: cur, Amount: amt, Events: c[cur].events})
		byCurrency[cur] = amt
	}
	return rows, byCurrency
}

func toTxRow(e *payment.Event, batchID string, r kafkalog.Record, loadedAt string) txRow {
	return txRow{Wire: payment.ToWire(e), Extra: string(e.Extra), BatchID: batchID, KafkaPartition: r.Partition, KafkaOffset: r.Offset, LoadedAt: loadedAt}
}

// toErrorRow keeps the record's bytes as they were: text when UTF-8,
// base64 otherwise, so nothing rejected is ever lost.
func toErrorRow(spec contract.Spec, r kafkalog.Record, reason, detail string, e *payment.Event, batchID, loadedAt string) errorRow {
	row := errorRow{KafkaTopic: spec.Topic, KafkaPartition: r.Partition, KafkaOffset: r.Offset, KafkaTimeMs: r.Time.UnixMilli(),
		Reason: reason, Detail: detail, Raw: string(r.Value), RawEncoding: "utf8", BatchID: batchID, LoadedAt: loadedAt}
	if ts, ok := payment.KafkaTime(r.Time); ok {
		row.KafkaTimestamp = ts.Format(time.RFC3339Nano)
	}
	if !utf8.Valid(r.Value) {
		row.Raw, row.RawEncoding = base64.StdEncoding.EncodeToString(r.Value), "base64"
	}
	if utf8.Valid(r.Key) {
		row.KafkaKey = string(r.Key)
	} else {
		row.KafkaKey = "base64:" + base64.StdEncoding.EncodeToString(r.Key)
	}
	if e != nil {
		row.TransactionID, row.EventTime = e.TransactionID, e.EventTime.Format(time.RFC3339Nano)
	}
	return row
}
