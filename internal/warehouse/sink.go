package warehouse

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// A Sink writes one table's rows of one batch, or one quarantine replay,
// exactly once however often it is called with the same rows (invariant
// 4): load jobs whose IDs derive from the batch (Jobs), appends at the
// batch's stream offsets (Streams), or only the ledger (Discard).
type Sink interface {
	// WriteTable writes rows to table for the batch or replay id, and
	// says how many rows the table received.
	WriteTable(ctx context.Context, id, table string, rows []Row) (int, error)
}

// ErrRefused wraps an error that writing again soon cannot fix: a load
// job that failed for good (ErrLoadFailed), a stream missing an earlier
// batch's rows (ErrOffsetAhead), rows the table's schema refuses, a row
// too large for one Storage Write API request (ErrRowTooLarge).
var ErrRefused = errors.New("refused for good")

// WriteAll writes each table of order with sink: all but the last at once,
// and the last — the batch's ledger — only after all of them succeeded, so
// a ledger row means every other table of its batch is written (invariant
// 6). The tables do not depend on each other, so a batch waits for the
// slowest write rather than the sum. It returns each table's row count.
func WriteAll(ctx context.Context, sink Sink, id string, order []string, rows map[string][]Row) (map[string]int, error) {
	counts := make(map[string]int, len(order))
	counted := make([]int, len(order))
	write := func(ctx context.Context, i int) error {
		n, err := sink.WriteTable(ctx, id, order[i], rows[order[i]])
		if err != nil {
			return fmt.Errorf("write %s into %s: %w", id, order[i], err)
		}
		counted[i] = n
		return nil
	}
	last := len(order) - 1
	g, gctx := errgroup.WithContext(ctx)
	for i := range last {
		g.Go(func() error { return write(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := write(ctx, last); err != nil {
		return nil, err
	}
	for i, table := range order {
		counts[table] = counted[i]
	}
	return counts, nil
}

// Discard writes only the ledger table, through Sink: the benchmark's
// sink, which measures paystream's own cost without BigQuery's. The other
// tables' rows are still encoded, as load jobs would send them, and then
// dropped, so that the cost it measures includes encoding.
type Discard struct {
	Sink    Sink
	Ledger  string
	Buffers *Buffers
}

func (d Discard) WriteTable(ctx context.Context, id, table string, rows []Row) (int, error) {
	if table != d.Ledger {
		d.Buffers.Put(NDJSON(d.Buffers.Get(rowBytes*len(rows)), rows))
		return 0, nil
	}
	return d.Sink.WriteTable(ctx, id, table, rows)
}

// rowBytes is room enough for most rows' JSON: a transaction's runs to
// 700 bytes.
const rowBytes = 800

// Jobs writes with one load job per table, whose IDs JobID derives from
// (id, table, attempt): BigQuery refuses a job ID twice, so no retry,
// concurrent attempt or zombie appends the same rows twice. The rows go
// as newline-delimited JSON, encoded into a buffer from Buffers.
type Jobs struct {
	Loader  Loader
	JobID   func(id, table string, attempt int) string
	Buffers *Buffers
}

func (j Jobs) WriteTable(ctx context.Context, id, table string, rows []Row) (int, error) {
	if len(rows) == 0 {
		return 0, nil // nothing to write, nothing to repeat
	}
	ndjson := NDJSON(j.Buffers.Get(rowBytes*len(rows)), rows)
	err := j.Loader.Load(ctx, table, func(attempt int) string { return j.JobID(id, table, attempt) }, ndjson)
	if errors.Is(err, ErrLoadFailed) {
		err = fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err == nil {
		j.Buffers.Put(ndjson)
	}
	return len(rows), err
}

// Streams writes by appending to each table's COMMITTED stream at the
// offset the partition's workflow holds for it (AppendOnce).
type Streams struct {
	Writer StreamWriter
	// At is each table's stream and the offset this batch's rows start at.
	At map[string]StreamAt
	// Otherwise, when set, writes the tables that have no stream.
	Otherwise Sink
}

// StreamAt is a position in a table's stream.
type StreamAt struct {
	Stream string
	Offset int64
}

func (s Streams) WriteTable(ctx context.Context, id, table string, rows []Row) (int, error) {
	at, ok := s.At[table]
	if !ok && s.Otherwise != nil {
		return s.Otherwise.WriteTable(ctx, id, table, rows)
	}
	if !ok {
		return 0, fmt.Errorf("%w: no stream for %s", ErrRefused, table)
	}
	encoded, err := s.Writer.Encode(ctx, table, rows)
	if err != nil {
		return 0, fmt.Errorf("%w: encode: %w", ErrRefused, err)
	}
	err = AppendOnce(ctx, s.Writer, at.Stream, table, at.Offset, encoded)
	if errors.Is(err, ErrOffsetAhead) || errors.Is(err, ErrRowsRejected) || errors.Is(err, ErrRowTooLarge) {
		err = fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return len(encoded), err
}
