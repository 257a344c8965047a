package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/rows"
	"github.com/paystream/paystream/internal/warehouse"
)

// Write writes the batch to every table, one load job per table with a
// job ID derived from (batch ID, table), or appends at its streams'
// offsets in storagewrite mode, applying the recorded decisions and
// scores, then commits the batch's end as the consumer group's offset.
// Run twice, or twice at once, it appends once.
func (e *Engine) Write(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
	began := time.Now()
	spec := in.Spec
	log := e.logger(ctx, spec)
	defer keepAlive(ctx, "load")()
	rows, totals, err := e.BuildRows(ctx, in, time.Now().UTC())
	if err != nil {
		return contract.Totals{}, err
	}
	sink, err := e.batchSink(ctx, spec)
	if err != nil {
		return contract.Totals{}, err
	}
	counts, err := e.writeAll(ctx, log, sink, spec.ID(), rows.Order(contract.LoadOrder), rows)
	if err != nil {
		return contract.Totals{}, err
	}
	if len(spec.Streams) > 0 {
		// The workflow advances each stream's offset by its table's rows;
		// a table without a stream (schema_changes) went by load job.
		totals.Rows = map[string]int{}
		for table := range spec.Streams {
			totals.Rows[table] = counts[table]
		}
	}
	e.countSchemaChanges(rows)
	// Every table, the ledger last, is loaded: only now may the group's
	// offset move past the batch (invariant 5). Committing here rather
	// than in an activity of its own saves each batch a Temporal round
	// trip; a retried Write commits the same offset again, which is
	// harmless, and an attempt that lost its activity (its heartbeat is
	// refused) has its context cancelled, so it does not commit late.
	if err := e.commitOffset(ctx, spec.Topic, spec.Partition, spec.End); err != nil {
		return contract.Totals{}, fmt.Errorf("load %s: %w", spec.ID(), err)
	}
	// The oldest produce time the batch's records carry, for its latency;
	// timestamps not to trust are left out.
	var oldest time.Time
	if recs, _, err := e.batchRecords(ctx, spec, newJudge(spec.AllowedLateness, spec.End, spec.Schemas, in.Decisions.Schemas)); err == nil {
		for i := range recs {
			if ts, ok := payment.KafkaTime(recs[i].Time); ok && (oldest.IsZero() || ts.Before(oldest)) {
				oldest = ts
			}
		}
	}
	e.Metrics.BatchLoaded(spec.Topic, spec.Partition, totals.Loaded, totals.Duplicates, totals.Errors, totals.Late, oldest, time.Since(began))
	e.pace.loaded(spec.Range, time.Now())
	e.batches.drop(spec.ID()) // Write is the batch's last reader
	log.Info("load done", zap.Int("loaded", totals.Loaded), zap.Int("duplicates", totals.Duplicates), zap.Int("errors", totals.Errors),
		zap.Int("late", totals.Late), since(began))
	return totals, nil
}

// batchSink is where a batch's rows go: its streams in storagewrite mode,
// load jobs otherwise; only the ledger with the discard sink.
func (e *Engine) batchSink(ctx context.Context, spec contract.Spec) (warehouse.Sink, error) {
	var sink warehouse.Sink = e.jobs()
	if len(spec.Streams) > 0 {
		w, err := e.streamWriter(ctx)
		if err != nil {
			return nil, err
		}
		at := make(map[string]warehouse.StreamAt, len(spec.Streams))
		for _, table := range contract.LoadOrder {
			if st, ok := spec.Streams[table]; ok {
				at[table] = warehouse.StreamAt{Stream: st.Name, Offset: st.Offset}
			}
		}
		// schema_changes, rare, has no stream: load jobs write it.
		sink = warehouse.Streams{Writer: w, At: at, Otherwise: e.jobs()}
	}
	if e.Discard {
		sink = warehouse.Discard{Sink: sink, Ledger: contract.TableBatchLedger, Buffers: e.buffers}
	}
	return sink, nil
}

// jobs is the load-job sink: job IDs from (batch or replay ID, table).
func (e *Engine) jobs() warehouse.Jobs {
	return warehouse.Jobs{
		Loader: warehouse.Loader{Client: e.BigQuery, Dataset: e.Dataset, Retried: func() { e.Metrics.LoadRetried("job") },
			Finished: e.Metrics.LoadJobFinished, Backoff: e.LoadBackoff},
		JobID:   contract.LoadJobID,
		Buffers: e.buffers,
	}
}

// writeAll writes rows with sink, the ledger last (warehouse.WriteAll). A
// write refused for good fails the batch without retry: its partition
// runs it again after a growing wait (failed load jobs count against the
// table's quota), and that run goes on with the next job ID.
func (e *Engine) writeAll(ctx context.Context, log *zap.Logger, sink warehouse.Sink, id string, order []string, tables rows.Tables) (map[string]int, error) {
	ctx = warehouse.WaitForServer(ctx)
	counts, err := warehouse.WriteAll(ctx, faultPoints{sink}, id, order, tables)
	// BigQuery not answering is waited out here, at a short interval, for
	// up to unreachableFor, rather than by the activity's retries, whose
	// backoff would grow through an outage and run on long after BigQuery
	// is back. Writing again is what a retry would do: every write is
	// keyed by the batch. A longer outage fails the attempt, so that it
	// shows where operators look (the activity's last failure, the
	// retries metric) and Temporal's backoff spaces the tries.
	//
	// A Storage Write stream that does not see a column the batch's plan
	// just added (BigQuery takes minutes to show one) is waited for the
	// same way: the rows are the batch's, fixed by its recorded decisions,
	// and go in once the stream sees their columns; meanwhile the values
	// are in extra of the rows already written, and nothing is lost.
	began := time.Now()
	for n := 1; (warehouse.Unreachable(err) || errors.Is(err, warehouse.ErrSchemaNotSeen)) && time.Since(began) < unreachableFor; n++ {
		schemaLag := errors.Is(err, warehouse.ErrSchemaNotSeen)
		if schemaLag {
			e.Metrics.LoadRetried("schema_propagation")
		} else {
			e.Metrics.LoadRetried("unreachable")
		}
		if n == 1 && schemaLag {
			log.Warn("the Storage Write stream does not see the batch's new columns yet; writing again until it does", zap.String("batch", id), zap.Error(err))
		} else if n == 1 {
			log.Warn("BigQuery unreachable; writing again as soon as it answers", zap.String("batch", id), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("write %s: BigQuery unreachable (%w); %w", id, err, ctx.Err())
		case <-time.After(warehouse.RetryWait(n)):
		}
		counts, err = warehouse.WriteAll(ctx, faultPoints{sink}, id, order, tables)
	}
	if errors.Is(err, warehouse.ErrRefused) {
		return nil, permanent(contract.ErrTypeLoadFailed, err)
	}
	return counts, err
}

// countSchemaChanges counts the typed columns a written batch started.
func (e *Engine) countSchemaChanges(t rows.Tables) {
	for _, r := range t[contract.TableSchemaChanges] {
		if c, ok := r.(*rows.SchemaChange); ok {
			e.Metrics.SchemaChanged(c.Table, c.Type)
		}
	}
}

// unreachableFor bounds how long one attempt waits for BigQuery to answer.
const unreachableFor = 2 * time.Minute

// faultPoints lets the fault tests kill the worker after a table's write
// (faults.At "load:<table>").
type faultPoints struct{ warehouse.Sink }

func (f faultPoints) WriteTable(ctx context.Context, id, table string, rows []warehouse.Row) (int, error) {
	n, err := f.Sink.WriteTable(ctx, id, table, rows)
	if err == nil && len(rows) > 0 {
		faults.At("load:" + table)
	}
	return n, err
}

// BuildRows turns the batch into rows per table, with the totals that go
// into the ledger (rows.Build). The benchmark's plain loader calls it to
// load the same rows without the pipeline around them.
func (e *Engine) BuildRows(ctx context.Context, in contract.LoadInput, now time.Time) (rows.Tables, contract.Totals, error) {
	recs, tally, err := e.batchRecords(ctx, in.Spec, newJudge(in.Spec.AllowedLateness, in.Spec.End, in.Spec.Schemas, in.Decisions.Schemas))
	if err != nil {
		return nil, contract.Totals{}, fmt.Errorf("build rows of %s: %w", in.Spec.ID(), err)
	}
	if in.Spec.FraudRules > 0 {
		// Scored here, not recorded: the same records, decisions and
		// rule set give the same scores on every attempt.
		if in.Enrichment, err = score(in.Spec, in.Decisions, recs); err != nil {
			return nil, contract.Totals{}, err
		}
	}
	// Building a large batch's rows takes seconds on a busy machine.
	step := func(i int) { progressEvery(ctx, i, "rows") }
	return rows.Build(in, recs, tally, now, step)
}
