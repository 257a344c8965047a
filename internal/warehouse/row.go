package warehouse

import (
	"strconv"
	"sync"
	"unicode/utf8"
)

// A Row is one row of a table, typed. Each sink encodes it once, in its own
// format: newline-delimited JSON for load jobs (AppendJSON), protocol
// buffers for the Storage Write API (RowEncoder).
type Row interface {
	// Columns gives c each column that has a value; a column left out is
	// NULL.
	Columns(c Columns)
}

// Columns takes a row's values, each as a load job's JSON carries it: a
// TIMESTAMP as RFC 3339, a NUMERIC as its decimal string, a JSON column as
// its text.
type Columns interface {
	String(name, v string)
	Int(name string, v int64)
	Bool(name string, v bool)
	// Strings is a REPEATED STRING column.
	Strings(name string, v []string)
	// Records is a REPEATED RECORD column, each element a row of the
	// record's fields.
	Records(name string, v []Row)
	// JSON is a JSON column; raw is the value's JSON text (an object, an
	// array, a string with its quotes, a number...).
	JSON(name, raw string)
}

// A JSONRow also appends its own JSON object, for a table whose rows are
// most of what a worker writes: the same object its Columns give, without
// an interface call a column (the transactions tables' rows, which cost
// the discard sink's catch-up 13 % through Columns). A test must hold the
// two together.
type JSONRow interface {
	Row
	AppendJSON(b []byte) []byte
}

// AppendJSON appends r as one line of newline-delimited JSON.
func AppendJSON(b []byte, r Row) []byte {
	return NDJSON(b, []Row{r})
}

// NDJSON appends rows as newline-delimited JSON, as a load job takes them.
func NDJSON(b []byte, rows []Row) []byte {
	j := &jsonColumns{b: b} // one for all the rows: each would escape
	for _, r := range rows {
		if jr, ok := r.(JSONRow); ok {
			j.b = jr.AppendJSON(j.b)
		} else {
			j.object(r)
		}
		j.b = append(j.b, '\n')
	}
	return j.b
}

// jsonColumns writes columns as the fields of one JSON object, by hand:
// encoding/json's reflection cost more per row than parsing the record.
type jsonColumns struct {
	b []byte
	n int // fields written
}

// object writes r as a JSON object.
func (j *jsonColumns) object(r Row) {
	n := j.n
	j.b, j.n = append(j.b, '{'), 0
	r.Columns(j)
	j.b, j.n = append(j.b, '}'), n
}

func (j *jsonColumns) name(name string) {
	if j.n > 0 {
		j.b = append(j.b, ',', '"')
	} else {
		j.b = append(j.b, '"')
	}
	j.n++
	j.b = append(append(j.b, name...), '"', ':')
}

func (j *jsonColumns) String(name, v string) {
	j.name(name)
	j.b = AppendJSONString(j.b, v)
}

func (j *jsonColumns) Int(name string, v int64) {
	j.name(name)
	j.b = strconv.AppendInt(j.b, v, 10)
}

func (j *jsonColumns) Bool(name string, v bool) {
	j.name(name)
	j.b = strconv.AppendBool(j.b, v)
}

func (j *jsonColumns) Strings(name string, v []string) {
	j.name(name)
	j.b = append(j.b, '[')
	for i, s := range v {
		if i > 0 {
			j.b = append(j.b, ',')
		}
		j.b = AppendJSONString(j.b, s)
	}
	j.b = append(j.b, ']')
}

// JSON writes the value itself: a load job reads a JSON column's value
// as JSON, where a string would be a JSON string.
func (j *jsonColumns) JSON(name, raw string) {
	j.name(name)
	j.b = append(j.b, raw...)
}

func (j *jsonColumns) Records(name string, v []Row) {
	j.name(name)
	j.b = append(j.b, '[')
	for i, r := range v {
		if i > 0 {
			j.b = append(j.b, ',')
		}
		j.object(r)
	}
	j.b = append(j.b, ']')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, as encoding/json writes it.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Buffers keeps the encoded rows of finished writes for the next ones, up
// to Limit bytes: a batch's rows run to tens of megabytes, and a fresh
// buffer is zeroed when allocated. Not a sync.Pool, which every garbage
// collection empties, several times a batch. A nil *Buffers keeps nothing.
type Buffers struct {
	Limit int
	mu    sync.Mutex
	free  [][]byte
	bytes int // capacity of the buffers in free
}

// Get returns an empty buffer, preferring the smallest kept one that holds
// want bytes without growing, else a new one.
func (p *Buffers) Get(want int) []byte {
	if p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		best := -1
		for i, b := range p.free {
			if cap(b) >= want && (best < 0 || cap(b) < cap(p.free[best])) {
				best = i
			}
		}
		if best >= 0 {
			b := p.free[best]
			p.free = append(p.free[:best], p.free[best+1:]...)
			p.bytes -= cap(b)
			return b[:0]
		}
	}
	return make([]byte, 0, want)
}

// Put keeps b for a later Get if the kept buffers stay within Limit. b must
// no longer be read: an upload cut off by an error may still be read by
// the HTTP transport after its call returned, so only a successful
// write's buffer comes back.
func (p *Buffers) Put(b []byte) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+cap(b) > p.Limit {
		return
	}
	p.free = append(p.free, b)
	p.bytes += cap(b)
}
