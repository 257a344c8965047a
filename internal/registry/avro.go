package registry

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// avroRecord turns Avro binary records of one writer schema into the JSON
// object the event contract parses (payment.Parse), field by field in the
// schema's order. It walks the schema itself instead of decoding into Go
// maps: a record then costs one pass over its bytes and one output buffer,
// and every value's JSON form is fixed here, once, for every worker.
type avroRecord struct {
	schema *avro.RecordSchema
}

// parseAvro parses a registry's Avro schema text. Each schema gets its own
// cache of named types: two versions of one record name must not see each
// other's fields.
func parseAvro(text string) (*avro.RecordSchema, error) {
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return nil, err
	}
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("the schema is an Avro %s, not a record", s.Type())
	}
	return rec, nil
}

// errTruncated: the bytes end inside a value.
var errTruncated = errors.New("the record ends inside a value")

// maxDepth bounds nested records and arrays: a recursive schema must not
// let a record's bytes recurse without end.
const maxDepth = 32

// avroReader reads Avro binary values and appends their JSON.
type avroReader struct {
	b   []byte
	i   int
	out []byte
}

// transcode appends the JSON object of the record in b to out.
func (a avroRecord) transcode(out, b []byte) ([]byte, error) {
	r := avroReader{b: b, out: out}
	if err := r.record(a.schema, 0); err != nil {
		return nil, err
	}
	if r.i != len(r.b) {
		return nil, fmt.Errorf("%d bytes left after the record", len(r.b)-r.i)
	}
	return r.out, nil
}

func (r *avroReader) record(s *avro.RecordSchema, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("records nested deeper than %d", maxDepth)
	}
	r.out = append(r.out, '{')
	for i, f := range s.Fields() {
		if i > 0 {
			r.out = append(r.out, ',')
		}
		r.out = appendJSONString(r.out, f.Name())
		r.out = append(r.out, ':')
		if err := r.value(f.Type(), depth+1); err != nil {
			return fmt.Errorf("field %s: %w", f.Name(), err)
		}
	}
	r.out = append(r.out, '}')
	return nil
}

func (r *avroReader) value(s avro.Schema, depth int) error {
	switch s := s.(type) {
	case *avro.RefSchema:
		return r.value(s.Schema(), depth)
	case *avro.RecordSchema:
		return r.record(s, depth)
	case *avro.UnionSchema:
		n, err := r.long()
		if err != nil {
			return err
		}
		types := s.Types()
		if n < 0 || n >= int64(len(types)) {
			return fmt.Errorf("a union branch outside the %d the schema has", len(types))
		}
		return r.value(types[n], depth)
	case *avro.EnumSchema:
		n, err := r.long()
		if err != nil {
			return err
		}
		sym, ok := s.Symbol(int(n))
		if !ok || n < 0 || n > math.MaxInt32 {
			return fmt.Errorf("an enum symbol outside the %d the schema has", len(s.Symbols()))
		}
		r.out = appendJSONString(r.out, sym)
		return nil
	case *avro.ArraySchema:
		return r.blocks(depth, '[', ']', func() error { return r.value(s.Items(), depth+1) })
	case *avro.MapSchema:
		return r.blocks(depth, '{', '}', func() error {
			k, err := r.bytes()
			if err != nil {
				return err
			}
			if !utf8.Valid(k) {
				return errors.New("a map key is not UTF-8")
			}
			r.out = appendJSONString(r.out, string(k))
			r.out = append(r.out, ':')
			return r.value(s.Values(), depth+1)
		})
	case *avro.FixedSchema:
		if r.i+s.Size() > len(r.b) {
			return errTruncated
		}
		v := r.b[r.i : r.i+s.Size()]
		r.i += s.Size()
		if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
			r.out = appendDecimal(r.out, v, d.Scale())
			return nil
		}
		r.out = appendBase64(r.out, v)
		return nil
	case *avro.NullSchema:
		r.out = append(r.out, "null"...)
		return nil
	case *avro.PrimitiveSchema:
		return r.primitive(s)
	}
	return fmt.Errorf("the Avro type %s is not supported", s.Type())
}

func (r *avroReader) primitive(s *avro.PrimitiveSchema) error {
	var logical avro.LogicalType
	if l := s.Logical(); l != nil {
		logical = l.Type()
	}
	switch s.Type() {
	case avro.Null:
		r.out = append(r.out, "null"...)
	case avro.Boolean:
		if r.i >= len(r.b) {
			return errTruncated
		}
		switch r.b[r.i] {
		case 0:
			r.out = append(r.out, "false"...)
		case 1:
			r.out = append(r.out, "true"...)
		default:
			return errors.New("a boolean that is neither 0 nor 1")
		}
		r.i++
	case avro.Int, avro.Long:
		n, err := r.long()
		if err != nil {
			return err
		}
		if s.Type() == avro.Int && (n < math.MinInt32 || n > math.MaxInt32) {
			return errors.New("an int outside 32 bits")
		}
		switch logical {
		case avro.TimestampMillis:
			r.out = appendTime(r.out, time.UnixMilli(n))
		case avro.TimestampMicros:
			r.out = appendTime(r.out, time.UnixMicro(n))
		case avro.Date:
			r.out = strconv.AppendQuote(r.out, time.Unix(0, 0).UTC().AddDate(0, 0, int(n)).Format(time.DateOnly))
		default:
			r.out = strconv.AppendInt(r.out, n, 10)
		}
	case avro.Float, avro.Double:
		var f float64
		if s.Type() == avro.Float {
			if r.i+4 > len(r.b) {
				return errTruncated
			}
			f = float64(math.Float32frombits(binary.LittleEndian.Uint32(r.b[r.i:])))
			r.i += 4
		} else {
			if r.i+8 > len(r.b) {
				return errTruncated
			}
			f = math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.i:]))
			r.i += 8
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// JSON has no NaN or infinity; the text keeps what was sent.
			r.out = strconv.AppendQuote(r.out, strconv.FormatFloat(f, 'g', -1, 64))
			return nil
		}
		r.out = strconv.AppendFloat(r.out, f, 'g', -1, 64)
	case avro.String:
		v, err := r.bytes()
		if err != nil {
			return err
		}
		if !utf8.Valid(v) {
			return errors.New("a string is not UTF-8")
		}
		r.out = appendJSONString(r.out, string(v))
	case avro.Bytes:
		v, err := r.bytes()
		if err != nil {
			return err
		}
		if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
			r.out = appendDecimal(r.out, v, d.Scale())
			return nil
		}
		r.out = appendBase64(r.out, v)
	default:
		return fmt.Errorf("the Avro type %s is not supported", s.Type())
	}
	return nil
}

// blocks reads an array's or a map's blocks: counts, each followed by that
// many items, up to a zero count. A negative count is followed by the
// block's size in bytes.
func (r *avroReader) blocks(depth int, open, closing byte, item func() error) error {
	if depth > maxDepth {
		return fmt.Errorf("values nested deeper than %d", maxDepth)
	}
	r.out = append(r.out, open)
	first := true
	for {
		n, err := r.long()
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if n < 0 {
			if _, err := r.long(); err != nil {
				return err
			}
			n = -n
		}
		// Every item but a null takes a byte at least: a count past the
		// bytes left is a corrupt record, not a reason to loop.
		if n > int64(len(r.b)-r.i)+1 {
			return fmt.Errorf("a block of %d items in %d bytes", n, len(r.b)-r.i)
		}
		for ; n > 0; n-- {
			if !first {
				r.out = append(r.out, ',')
			}
			first = false
			if err := item(); err != nil {
				return err
			}
		}
	}
	r.out = append(r.out, closing)
	return nil
}

// long reads a zig-zag varint.
func (r *avroReader) long() (int64, error) {
	u, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 {
		if n == 0 {
			return 0, errTruncated
		}
		return 0, errors.New("a number longer than 64 bits")
	}
	r.i += n
	return int64(u>>1) ^ -int64(u&1), nil
}

func (r *avroReader) bytes() ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(len(r.b)-r.i) {
		return nil, errTruncated
	}
	v := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return v, nil
}

func appendJSONString(out []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(out, b...)
}

func appendBase64(out, v []byte) []byte {
	out = append(out, '"')
	out = base64.StdEncoding.AppendEncode(out, v)
	return append(out, '"')
}

func appendTime(out []byte, t time.Time) []byte {
	out = append(out, '"')
	out = t.UTC().AppendFormat(out, time.RFC3339Nano)
	return append(out, '"')
}

// appendDecimal appends a decimal's exact value as a JSON string, its
// trailing zeros dropped (12.50 is "12.5"): the contract reads amounts by
// the currency's scale, which may be smaller than the schema's.
func appendDecimal(out, twos []byte, scale int) []byte {
	n := new(big.Int).SetBytes(twos)
	if len(twos) > 0 && twos[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(twos))*8))
	}
	s := new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)).FloatString(scale)
	if scale > 0 {
		for s[len(s)-1] == '0' {
			s = s[:len(s)-1]
		}
		if s[len(s)-1] == '.' {
			s = s[:len(s)-1]
		}
	}
	return strconv.AppendQuote(out, s)
}
