package warehouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
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
	// fail, when set, answers an append before the stream does.
	fail func(offset int64, rows [][]byte) error
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
	if d.fail != nil {
		if err := d.fail(offset, rows); err != nil {
			return err
		}
	}
	size := 0
	for _, r := range rows {
		size += rowWireSize(r)
	}
	end := int64(len(d.rows[stream]))
	switch {
	case size > AppendRequestLimit:
		return status.Errorf(codes.InvalidArgument, "AppendRows request too large: %d limit %d", size, AppendRequestLimit)
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
	rows, err := enc.Encode(jsonRows(t, `{"batch_id":"b/0/0-10","loaded":7,"loaded_at":"2026-11-25T10:00:00.123456Z","amount_by_currency":[{"currency":"EUR","amount":"12.34"},{"currency":"KWD","amount":"-0.001"}]}`+"\n"))
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

// sized returns rows of the given lengths, each row's bytes its index.
func sized(lengths ...int) [][]byte {
	out := make([][]byte, len(lengths))
	for i, n := range lengths {
		out[i] = bytes.Repeat([]byte{byte(i)}, n)
	}
	return out
}

// TestAppendChunksSplitsByBytesAndRows: the split a batch's rows go in,
// by hand on a small limit, then on a batch of 15 MB of mixed rows: every
// append within both limits, full, in order, each at the offset where the
// one before ended; a row larger than an append is refused up front,
// named by its offset.
func TestAppendChunksSplitsByBytesAndRows(t *testing.T) {
	// Rows of 40, 10 and 98 bytes are 42, 12 and 100 on the wire.
	rows := sized(40, 40, 40, 10, 10, 10, 10, 98)
	chunks, err := appendChunks(7, rows, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range chunks {
		got = append(got, fmt.Sprintf("%d+%d=%dB", c.Offset, len(c.Rows), c.Bytes))
	}
	// 42+42 (a third 42 is over 100); 42+12+12 (three rows); 12+12 (the
	// 100 would be over); 100 alone.
	if want := "[7+2=84B 9+3=66B 12+2=24B 14+1=100B]"; fmt.Sprint(got) != want {
		t.Errorf("chunks %v, want %s", got, want)
	}
	_, err = appendChunks(7, sized(10, 99, 10), 3, 100)
	if !errors.Is(err, ErrRowTooLarge) || !strings.Contains(err.Error(), "row at offset 8 is 101 bytes") {
		t.Errorf("a row of 101 bytes on the wire with 100 allowed: %v, want ErrRowTooLarge at offset 8", err)
	}

	// A batch's worth: 9,000 rows of 300 bytes with 16 quarantined
	// records of 900 KB among them, 15.4 MB in all.
	var lengths []int
	total := 0
	for i := range 9000 {
		n := 300
		if i%500 == 250 && i < 8000 {
			n = 900_000
		}
		lengths = append(lengths, n)
		total += n
	}
	rows = sized(lengths...)
	if total < 15_000_000 {
		t.Fatalf("the batch is %d bytes, want over 15 MB", total)
	}
	const start = 123_456
	chunks, err = appendChunks(start, rows, MaxAppendRows, MaxAppendBytes)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for i, c := range chunks {
		if c.Offset != start+int64(next) {
			t.Errorf("chunk %d at offset %d, want %d (where the one before ended)", i, c.Offset, start+next)
		}
		if len(c.Rows) == 0 || !slices.EqualFunc(c.Rows, rows[next:next+len(c.Rows)], slices.Equal) {
			t.Fatalf("chunk %d holds %d rows that are not rows[%d:] in order", i, len(c.Rows), next)
		}
		// The request's rows as the API gets them: the size counted is
		// exactly their encoding.
		if wire := proto.Size(&storagepb.ProtoRows{SerializedRows: c.Rows}); c.Bytes != wire {
			t.Errorf("chunk %d counted %d bytes, its rows encode to %d", i, c.Bytes, wire)
		}
		if c.Bytes > MaxAppendBytes || len(c.Rows) > MaxAppendRows {
			t.Errorf("chunk %d: %d rows, %d bytes; limits %d rows, %d bytes", i, len(c.Rows), c.Bytes, MaxAppendRows, MaxAppendBytes)
		}
		next += len(c.Rows)
		if i < len(chunks)-1 && len(c.Rows) < MaxAppendRows && c.Bytes+rowWireSize(rows[next]) <= MaxAppendBytes {
			t.Errorf("chunk %d stops at %d rows, %d bytes, though the next row fits", i, len(c.Rows), c.Bytes)
		}
	}
	if next != len(rows) {
		t.Errorf("chunks hold %d rows, want %d", next, len(rows))
	}
	// Eight records of 900 KB and the rows between them fit in an append,
	// the ninth (row 4250) does not; the rest (7 records) fit in one more.
	if len(chunks) != 2 || len(chunks[0].Rows) != 4250 || chunks[1].Offset != start+4250 {
		t.Errorf("%d chunks, the first of %d rows: want 2, split before row 4250 (the 9th large record)", len(chunks), len(chunks[0].Rows))
	}
}

// TestAppendOnceRetriesTheSameRanges: a batch of 15 MB whose third append
// fails is run again; the retry appends the same ranges at the same
// offsets, skips those written, and the stream holds every row once. No
// append goes over the request limit (the fake refuses those as BigQuery
// does).
func TestAppendOnceRetriesTheSameRanges(t *testing.T) {
	ctx := context.Background()
	d := &documentedStreams{rows: map[string][][]byte{}}
	s, _ := d.CreateStream(ctx, "ingest_errors")
	if err := AppendOnce(ctx, d, s, "ingest_errors", 0, sized(10, 20, 30)); err != nil {
		t.Fatal(err)
	}
	var lengths []int
	for i := range 12_000 {
		lengths = append(lengths, map[bool]int{true: 1_000_000, false: 200}[i%500 == 3])
	}
	rows := sized(lengths...)
	var calls []string
	attempt := 1
	d.fail = func(offset int64, rows [][]byte) error {
		calls = append(calls, fmt.Sprintf("%d:%d+%d", attempt, offset, len(rows)))
		if attempt == 1 && len(calls) == 3 {
			return status.Error(codes.Unavailable, "connection reset")
		}
		return nil
	}
	if err := AppendOnce(ctx, d, s, "ingest_errors", 3, rows); status.Code(err) != codes.Unavailable {
		t.Fatalf("first attempt: %v, want the third append's failure", err)
	}
	attempt = 2
	if err := AppendOnce(ctx, d, s, "ingest_errors", 3, rows); err != nil {
		t.Fatalf("retry: %v", err)
	}
	// 24 records of 1 MB, one every 500 rows: eight and the 200-byte rows
	// between them fit in an append (8.8 MB on the wire), a ninth does
	// not, so each append ends before a ninth record (rows 4003 and 8003
	// of the batch, at stream offsets 4006 and 8006). The retry finds the
	// first two written, each checked by its last row alone.
	want := []string{"1:3+4003", "1:4006+4000", "1:8006+3997", "2:3+4003", "2:4005+1", "2:4006+4000", "2:8005+1", "2:8006+3997"}
	if !slices.Equal(calls, want) {
		t.Errorf("appends (attempt:offset+rows) %v, want %v", calls, want)
	}
	got := d.rows[s]
	if len(got) != 3+len(rows) || !slices.EqualFunc(got[3:], rows, slices.Equal) {
		t.Errorf("the stream holds %d rows, want 3 and the batch's %d once, in order", len(got), len(rows))
	}
}

// TestRowSizeDoesNotDependOnLoadedAt: the one value of a row that differs
// between attempts of a batch is its loaded_at; its encoding has the same
// size whatever the time, so every attempt splits the batch alike.
func TestRowSizeDoesNotDependOnLoadedAt(t *testing.T) {
	enc, err := NewRowEncoder(bigquery.Schema{
		{Name: "batch_id", Type: bigquery.StringFieldType, Required: true},
		{Name: "loaded_at", Type: bigquery.TimestampFieldType, Required: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[int][]string{}
	for _, at := range []string{"1988-01-01T00:00:00Z", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00.1Z", "2026-11-25T10:00:00.123456789Z", "2099-12-31T23:59:59.999999Z", "4253-01-01T00:00:00Z"} {
		rows, err := enc.Encode(jsonRows(t, `{"batch_id":"payments/0/0-100","loaded_at":"`+at+`"}`+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		sizes[len(rows[0])] = append(sizes[len(rows[0])], at)
	}
	if len(sizes) != 1 {
		t.Errorf("row sizes by loaded_at: %v, want one size", sizes)
	}
}

// TestAppendOnceCompletesAnotherSplit: an earlier attempt split the batch
// otherwise (the version before appends were split by bytes sent 5,000
// rows at a time), so the stream ends inside one of this split's appends,
// here inside the second and inside the last. Each is completed from
// where the stream ends, and the stream holds every row once, in order.
// (Skipping an append refused as already written left the rest of it
// unwritten: the next append was past the end, or, for the last, the
// batch counted as written with rows missing.)
func TestAppendOnceCompletesAnotherSplit(t *testing.T) {
	ctx := context.Background()
	var lengths []int
	for i := range 12_000 {
		lengths = append(lengths, map[bool]int{true: 1_000_000, false: 200}[i%500 == 3])
	}
	rows := sized(lengths...)
	for _, written := range []int{6000, 10_000} {
		d := &documentedStreams{rows: map[string][][]byte{}}
		s, _ := d.CreateStream(ctx, "ingest_errors")
		d.rows[s] = slices.Clone(rows[:written]) // what the earlier attempt wrote
		var calls []string
		d.fail = func(offset int64, rows [][]byte) error {
			calls = append(calls, fmt.Sprintf("%d+%d", offset, len(rows)))
			return nil
		}
		if err := AppendOnce(ctx, d, s, "ingest_errors", 0, rows); err != nil {
			t.Errorf("%d rows written before: %v", written, err)
			continue
		}
		if got := d.rows[s]; len(got) != len(rows) || !slices.EqualFunc(got, rows, slices.Equal) {
			t.Errorf("%d rows written before: the stream holds %d rows, want the batch's %d once, in order", written, len(got), len(rows))
		}
		t.Logf("%d rows written before: appends %v", written, calls)
	}
}
