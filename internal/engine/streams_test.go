package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// documentedStreams follows the Storage Write API's documented offset
// semantics for COMMITTED streams (ALREADY_EXISTS before the end,
// OUT_OF_RANGE past it); rows are kept as the JSON lines they encode.
type documentedStreams struct {
	mu   sync.Mutex
	rows map[string][][]byte
}

func (d *documentedStreams) CreateStream(_ context.Context, table string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := fmt.Sprintf("%s/streams/%d", table, len(d.rows))
	d.rows[name] = [][]byte{}
	return name, nil
}

func (d *documentedStreams) Append(_ context.Context, stream, _ string, offset int64, rows [][]byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	end := int64(len(d.rows[stream]))
	switch {
	case offset < end:
		return status.Error(codes.AlreadyExists, "offset already written")
	case offset > end:
		return status.Error(codes.OutOfRange, "offset beyond the end")
	}
	for _, r := range rows { // the caller's, as a server's copy would not be
		d.rows[stream] = append(d.rows[stream], bytes.Clone(r))
	}
	return nil
}

func (d *documentedStreams) Encode(_ context.Context, _ string, rows []warehouse.Row) ([][]byte, error) {
	var out [][]byte
	for _, r := range rows {
		out = append(out, bytes.TrimSuffix(warehouse.AppendJSON(nil, r), []byte("\n")))
	}
	return out, nil
}

// TestStorageWriteLoadsOnce runs two batches through Load in storagewrite
// mode, each retried and run twice at once as a zombie would, and finds
// every table's stream holding each batch's rows once, at the offsets the
// workflow hands on (Totals.Rows); an offset past a stream's end fails
// without retry.
func TestStorageWriteLoadsOnce(t *testing.T) {
	ctx := context.Background()
	kc, m := simulatedLog(t, "payments", simulation.DefaultOptions(), 3000)
	fake := &documentedStreams{rows: map[string][][]byte{}}
	a := New(Config{Kafka: kc, Streams: fake})
	names, err := a.CreateStreams(ctx, contract.LoadOrder)
	if err != nil || len(names) != len(contract.LoadOrder) {
		t.Fatalf("CreateStreams: %v %v", names, err)
	}
	streams := map[string]contract.StreamOffset{}
	for table, name := range names {
		streams[table] = contract.StreamOffset{Name: name}
	}

	var loaded int
	window := contract.Window{}
	for _, r := range [][2]int64{{0, 1500}, {1500, m.EndOffsets[0]}} {
		spec := contract.Spec{Range: contract.Range{Topic: "payments", Start: r[0], End: r[1]}, Window: window, AllowedLateness: 10 * time.Minute, Streams: clone(streams)}
		in := decide(t, a, spec)
		d := in.Decisions
		var wg sync.WaitGroup
		results := make([]contract.Totals, 3)
		errs := make([]error, 3)
		for i := range 2 { // an attempt and a zombie at once
			wg.Go(func() { results[i], errs[i] = a.Write(ctx, in) })
		}
		wg.Wait()
		results[2], errs[2] = a.Write(ctx, in) // a retry after both
		for i := range results {
			if errs[i] != nil {
				t.Fatalf("Load %d of %s: %v", i, spec.ID(), errs[i])
			}
			if results[i].Rows["transactions"] != d.Loaded || results[i].Rows["batch_ledger"] != 1 {
				t.Errorf("Load %d of %s wrote rows %v, want %d transactions and 1 ledger row", i, spec.ID(), results[i].Rows, d.Loaded)
			}
		}
		for table, n := range results[0].Rows {
			st := streams[table]
			st.Offset += int64(n)
			streams[table] = st
		}
		loaded += d.Loaded
		window = d.Next
	}
	if loaded != m.UniqueIDs {
		t.Errorf("decisions loaded %d, the manifest has %d unique IDs", loaded, m.UniqueIDs)
	}
	for table, st := range streams {
		if got := int64(len(fake.rows[st.Name])); got != st.Offset {
			t.Errorf("%s's stream holds %d rows, the offsets say %d", table, got, st.Offset)
		}
	}
	ids := map[string]bool{}
	for _, row := range fake.rows[streams["transactions"].Name] {
		var tx struct {
			ID string `json:"transaction_id"`
		}
		if err := json.Unmarshal(row, &tx); err != nil {
			t.Fatal(err)
		}
		if ids[tx.ID] {
			t.Errorf("transaction %s appended twice", tx.ID)
		}
		ids[tx.ID] = true
	}
	if len(ids) != m.UniqueIDs {
		t.Errorf("transactions stream holds %d IDs, want %d", len(ids), m.UniqueIDs)
	}

	// Offsets past the end: a batch before is missing; no retry helps.
	spec := contract.Spec{Range: contract.Range{Topic: "payments", Start: 0, End: 1500}, AllowedLateness: 10 * time.Minute, Streams: clone(streams)}
	for table, st := range spec.Streams {
		st.Offset += 10
		spec.Streams[table] = st
	}
	d, _ := a.Decide(ctx, spec)
	enr, _ := a.Score(ctx, spec, d)
	_, err = a.Write(ctx, contract.LoadInput{Spec: spec, Decisions: d, Enrichment: enr})
	var p *Permanent
	if !errors.As(err, &p) || p.Type != contract.ErrTypeLoadFailed {
		t.Errorf("append past the end: %v, want a permanent %s", err, contract.ErrTypeLoadFailed)
	}
}

func clone(m map[string]contract.StreamOffset) map[string]contract.StreamOffset {
	out := make(map[string]contract.StreamOffset, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
