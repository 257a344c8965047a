package warehouse

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// documentedStreams is a Storage Write API as its documentation describes
// COMMITTED streams with offsets: an append at the end is written
// atomically, one at a written offset is refused with ALREADY_EXISTS, one
// past the end with OUT_OF_RANGE. (The emulator ignores offsets, so the
// behaviour is held to here.)
type documentedStreams struct {
	mu      sync.Mutex
	rows    map[string][][]byte
	appends int
}

func (d *documentedStreams) CreateStream(_ context.Context, table string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := table + "/streams/" + string(rune('a'+len(d.rows)))
	d.rows[name] = nil
	return name, nil
}

func (d *documentedStreams) Append(_ context.Context, stream, _ string, offset int64, rows [][]byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.appends++
	end := int64(len(d.rows[stream]))
	switch {
	case offset < end:
		return status.Errorf(codes.AlreadyExists, "offset %d already written", offset)
	case offset > end:
		return status.Errorf(codes.OutOfRange, "offset %d beyond end %d", offset, end)
	}
	d.rows[stream] = append(d.rows[stream], rows...)
	return nil
}

func rowsOf(n int, tag byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte{tag, byte(i), byte(i >> 8)}
	}
	return out
}

// TestAppendOnceIsExactlyOnce: a retried batch, two attempts at once and a
// batch larger than one request all leave each row once, in order; an
// append past the end (a batch before it missing) is an error.
func TestAppendOnceIsExactlyOnce(t *testing.T) {
	ctx := context.Background()
	d := &documentedStreams{rows: map[string][][]byte{}}
	s, _ := d.CreateStream(ctx, "transactions")
	first := rowsOf(3, 1)
	for range 2 { // a retry after an answer was lost
		if err := AppendOnce(ctx, d, s, "transactions", 0, first); err != nil {
			t.Fatal(err)
		}
	}
	big := rowsOf(MaxAppendRows*2+7, 2) // three requests
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 { // a zombie attempt and its replacement
		wg.Go(func() { errs[i] = AppendOnce(ctx, d, s, "transactions", 3, big) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	want := append(slices.Clone(first), big...)
	if got := d.rows[s]; len(got) != len(want) || !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("stream holds %d rows, want %d in order", len(got), len(want))
	}
	if err := AppendOnce(ctx, d, s, "transactions", int64(len(want))+5, rowsOf(1, 3)); err == nil || !isOffsetAhead(err) {
		t.Errorf("append past the end: %v, want ErrOffsetAhead", err)
	}
}

func isOffsetAhead(err error) bool { return errors.Is(err, ErrOffsetAhead) }

// TestRowEncoderWritesWhatLoadJobsWrite encodes a JSON row as Load builds
// it and reads the proto back: timestamps in microseconds, NUMERIC exact
// in its 16-byte encoding (negative too), repeated records, NULLs absent.
func TestRowEncoderWritesWhatLoadJobsWrite(t *testing.T) {
	schema := bigquery.Schema{
		{Name: "batch_id", Type: bigquery.StringFieldType, Required: true},
		{Name: "loaded", Type: bigquery.IntegerFieldType, Required: true},
		{Name: "loaded_at", Type: bigquery.TimestampFieldType, Required: true},
		{Name: "note", Type: bigquery.StringFieldType},
		{Name: "amount_by_currency", Type: bigquery.RecordFieldType, Repeated: true, Schema: bigquery.Schema{
			{Name: "currency", Type: bigquery.StringFieldType},
			{Name: "amount", Type: bigquery.NumericFieldType},
		}},
	}
	enc, err := NewRowEncoder(schema)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := enc.Encode([]byte(`{"batch_id":"b/0/0-10","loaded":7,"loaded_at":"2026-11-25T10:00:00.123456Z","amount_by_currency":[{"currency":"EUR","amount":"12.34"},{"currency":"KWD","amount":"-0.001"}]}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	msg := dynamicpb.NewMessage(enc.message)
	if err := proto.Unmarshal(rows[0], msg); err != nil {
		t.Fatal(err)
	}
	fields := enc.message.Fields()
	if got := msg.Get(fields.ByName("loaded_at")).Int(); got != time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC).UnixMicro() {
		t.Errorf("loaded_at = %d µs", got)
	}
	if msg.Has(fields.ByName("note")) {
		t.Error("a NULL became a value")
	}
	list := msg.Get(fields.ByName("amount_by_currency")).List()
	if list.Len() != 2 {
		t.Fatalf("%d amounts", list.Len())
	}
	for i, want := range []string{"12.34", "-0.001"} {
		m := list.Get(i).Message()
		if got := m.Get(m.Descriptor().Fields().ByName("amount")).String(); got != want {
			t.Errorf("amount %d = %q, want %q", i, got, want)
		}
	}
}

// answering is an Appender whose every append fails with err.
type answering struct{ err error }

func (answering) CreateStream(context.Context, string) (string, error) { return "s", nil }
func (a answering) Append(context.Context, string, string, int64, [][]byte) error {
	return a.err
}

// TestRejectedRowsFailTheBatch: the API's answers that appending the same
// rows again cannot change (rows rejected, offset past the end) make the
// batch fail, so its partition waits and runs it again later; anything
// else is retried at once.
func TestRejectedRowsFailTheBatch(t *testing.T) {
	for _, c := range []struct {
		err     error
		refused bool
	}{
		{status.Error(codes.InvalidArgument, "rows do not match the table's schema"), true},
		{status.Error(codes.OutOfRange, "beyond the end"), true},
		{status.Error(codes.Unavailable, "connection reset"), false},
		{status.Error(codes.ResourceExhausted, "throughput quota"), false},
		{status.Error(codes.Internal, "server error"), false},
	} {
		err := AppendOnce(context.Background(), answering{c.err}, "s", "transactions", 0, rowsOf(2, 1))
		if refused := errors.Is(err, ErrRowsRejected) || errors.Is(err, ErrOffsetAhead); refused != c.refused {
			t.Errorf("%v: refused for good = %v, want %v (%v)", status.Code(c.err), refused, c.refused, err)
		}
	}
}
