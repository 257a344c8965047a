package warehouse

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestBuffersKeepWithinTheirBound(t *testing.T) {
	p := &Buffers{Limit: 2000}
	small, big := p.Get(10), p.Get(1000)
	small = append(small, "old rows"...)
	p.Put(small)
	p.Put(big)
	p.Put(make([]byte, 0, 5000)) // over the bound: dropped
	if len(p.free) != 2 || p.bytes != cap(small)+cap(big) {
		t.Fatalf("kept %d buffers of %d bytes, want the two within the bound", len(p.free), p.bytes)
	}
	// The smallest that fits, emptied.
	if got := p.Get(500); cap(got) != cap(big) || len(got) != 0 {
		t.Errorf("Get(500) = cap %d len %d, want the kept 1,000-byte buffer, empty", cap(got), len(got))
	}
	if got := p.Get(0); cap(got) != cap(small) || len(got) != 0 {
		t.Errorf("Get(0) = cap %d len %d, want the small buffer, empty", cap(got), len(got))
	}
	if p.bytes != 0 || len(p.free) != 0 {
		t.Errorf("after taking both: %d buffers of %d bytes kept", len(p.free), p.bytes)
	}
	if got := (*Buffers)(nil).Get(64); cap(got) < 64 {
		t.Errorf("a nil pool's Get(64) has room for %d", cap(got))
	}
}

// testRow has a column of every kind.
type testRow struct {
	s     string
	n     int64
	ok    bool
	list  []string
	inner []Row
}

func (r testRow) Columns(c Columns) {
	if r.s != "" {
		c.String("s", r.s)
	}
	c.Int("n", r.n)
	c.Bool("ok", r.ok)
	c.Strings("list", r.list)
	if r.inner != nil {
		c.Records("inner", r.inner)
	}
}

// TestRowsAsJSONAreWhatEncodingJSONWrites: the hand-written NDJSON of a
// row decodes to what its columns hold, escapes included, and an empty
// list is [], not null.
func TestRowsAsJSONAreWhatEncodingJSONWrites(t *testing.T) {
	r := testRow{s: "quote \" backslash \\ tab \t nl \n ctl \x01 é \xff", n: -42, ok: true, list: []string{}, inner: []Row{testRow{n: 7, list: []string{"a", "b"}}}}
	line := AppendJSON(nil, r)
	if line[len(line)-1] != '\n' {
		t.Fatalf("%q does not end its line", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	want := map[string]any{"s": "quote \" backslash \\ tab \t nl \n ctl \x01 é \ufffd", "n": -42.0, "ok": true, "list": []any{},
		"inner": []any{map[string]any{"n": 7.0, "ok": false, "list": []any{"a", "b"}}}}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("row decodes to %s, want %s", g, w)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jsonRow is a row given as a JSON object, as a load job takes it: for
// the encoder's tests, whose tables and rows are written as JSON.
type jsonRow map[string]any

func (r jsonRow) Columns(c Columns) {
	for _, name := range slices.Sorted(maps.Keys(r)) {
		switch v := r[name].(type) {
		case string:
			c.String(name, v)
		case json.Number:
			if n, err := v.Int64(); err == nil {
				c.Int(name, n)
			} else {
				c.String(name, v.String())
			}
		case bool:
			c.Bool(name, v)
		case map[string]any:
			c.Records(name, []Row{jsonRow(v)})
		case []any:
			if len(v) > 0 {
				if _, ok := v[0].(map[string]any); ok {
					var rs []Row
					for _, x := range v {
						m, _ := x.(map[string]any)
						rs = append(rs, jsonRow(m))
					}
					c.Records(name, rs)
					continue
				}
			}
			var ss []string
			for _, x := range v {
				ss = append(ss, fmt.Sprint(x))
			}
			c.Strings(name, ss)
		}
	}
}

// jsonRows reads newline-delimited JSON into rows.
func jsonRows(t testing.TB, ndjson string) []Row {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(ndjson))
	dec.UseNumber()
	var out []Row
	for {
		var r map[string]any
		if err := dec.Decode(&r); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, jsonRow(r))
	}
}
