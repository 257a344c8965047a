package engine

import (
	"context"

	"github.com/paystream/paystream/internal/warehouse"
)

// StreamWriter is the Storage Write API as the storagewrite mode uses it.
type StreamWriter = warehouse.StreamWriter

// CreateStreams creates a COMMITTED write stream on each table for a
// partition's run in storagewrite mode. The workflow records their names
// and holds their offsets; the next run (after continue-as-new) creates
// new ones.
func (e *Engine) CreateStreams(ctx context.Context, tables []string) (map[string]string, error) {
	w, err := e.streamWriter(ctx)
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

// streamWriter is the worker's Storage Write API client, opened on first
// use: a worker serving only load-mode partitions never opens one.
func (e *Engine) streamWriter(ctx context.Context) (StreamWriter, error) {
	e.streamsMu.Lock()
	defer e.streamsMu.Unlock()
	if e.Streams != nil {
		return e.Streams, nil
	}
	endpoint := ""
	if e.Emulator {
		endpoint = e.StorageEndpoint
	}
	// The client outlives this activity: not bound to its cancellation.
	w, err := warehouse.NewStorageWriter(context.WithoutCancel(ctx), e.BigQuery, e.Dataset, endpoint)
	if err != nil {
		return nil, err // the next activity tries again
	}
	e.Streams = w
	return w, nil
}
