package activities

import (
	"bytes"
	"context"
	"errors"
	"time"

	"fmt"

	"go.uber.org/zap"

	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/warehouse"
)

// StreamWriter is the Storage Write API as the storagewrite mode uses it:
// streams, appends at offsets, and each table's rows encoded for it
// (warehouse.StorageWriter in production).
type StreamWriter interface {
	warehouse.Appender
	Encode(ctx context.Context, table string, ndjson []byte) ([][]byte, error)
}

// CreateStreams creates a COMMITTED write stream on each table for a
// partition's run in storagewrite mode. The workflow records their names
// and holds their offsets; the next run (after continue-as-new) creates
// new ones.
func (a *Activities) CreateStreams(ctx context.Context, tables []string) (map[string]string, error) {
	w, err := a.streamWriter(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(tables))
	for _, t := range tables {
		name, err := w.CreateStream(ctx, t)
		if err != nil {
			return nil, err
		}
		out[t] = name
	}
	return out, nil
}

// appendTables is Load in storagewrite mode: each table's rows appended
// to its stream at the batch's offset, exactly once (warehouse.AppendOnce),
// the data tables at once and batch_ledger after them (invariant 6). It
// returns how many rows each stream received.
func (a *Activities) appendTables(ctx context.Context, spec contract.Spec, rows map[string]*bytes.Buffer) (map[string]int, error) {
	w, err := a.streamWriter(ctx)
	if err != nil {
		return nil, err
	}
	encoded := map[string][][]byte{}
	for _, table := range contract.LoadOrder {
		if _, ok := spec.Streams[table]; !ok {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("append %s: no stream for %s", spec.ID(), table), contract.ErrTypeLoadFailed, nil)
		}
		if a.Discard && table != contract.TableBatchLedger {
			encoded[table] = nil
			continue
		}
		if encoded[table], err = w.Encode(ctx, table, rows[table].Bytes()); err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("append %s: encode %s: %v", spec.ID(), table, err), contract.ErrTypeLoadFailed, err)
		}
	}
	log := a.logger(ctx, spec)
	appendOne := func(ctx context.Context, table string) error {
		st := spec.Streams[table]
		began := time.Now()
		err := warehouse.AppendOnce(ctx, w, st.Name, table, st.Offset, encoded[table])
		log.Debug("append", zap.String("table", table), zap.Int64("stream_offset", st.Offset), zap.Int("rows", len(encoded[table])), zap.Error(err), since(began))
		if errors.Is(err, warehouse.ErrOffsetAhead) {
			// The stream lacks rows the workflow's offsets say are there:
			// no retry brings them back.
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("append %s to %s: %v", spec.ID(), table, err), contract.ErrTypeLoadFailed, err)
		}
		if err != nil {
			return fmt.Errorf("append %s to %s: %w", spec.ID(), table, err)
		}
		return nil
	}
	// Appends (and, on the emulator, waiting for a turn) can outlast the
	// heartbeat timeout: Load keeps the attempt alive (keepAlive).
	g, gctx := errgroup.WithContext(ctx)
	for _, table := range contract.LoadOrder[:len(contract.LoadOrder)-1] {
		g.Go(func() error { return appendOne(gctx, table) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := appendOne(ctx, contract.TableBatchLedger); err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(encoded))
	for table, r := range encoded {
		counts[table] = len(r)
	}
	return counts, nil
}

// streamWriter is the worker's Storage Write API client, opened on first
// use: a worker serving only load-mode partitions never opens one.
func (a *Activities) streamWriter(ctx context.Context) (StreamWriter, error) {
	a.streamsMu.Lock()
	defer a.streamsMu.Unlock()
	if a.Streams != nil {
		return a.Streams, nil
	}
	endpoint := ""
	if a.Emulator {
		endpoint = a.StorageEndpoint
	}
	// The client outlives this activity: not bound to its cancellation.
	w, err := warehouse.NewStorageWriter(context.WithoutCancel(ctx), a.BigQuery, a.Dataset, endpoint)
	if err != nil {
		return nil, err // the next activity tries again
	}
	a.Streams = w
	return w, nil
}
