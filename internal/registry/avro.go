package registry

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/hamba/avro/v2"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/warehouse"
)

// avroRecord turns Avro binary records of one writer schema into the JSON
// object the event contract parses (payment.Parse), field by field in the
// schema's order. The schema is compiled once into avroNodes; a record
// then costs one pass over its bytes into one output buffer, and every
// value's JSON form is fixed here, once, for every worker.
type avroRecord struct {
	root    *avroNode
	columns []contract.Column // the typed columns of its new fields
}

// avroKind is what an avroNode reads.
type avroKind uint8

const (
	kindNull avroKind = iota
	kindBoolean
	kindInt
	kindLong
	kindFloat
	kindDouble
	kindString
	kindBytes
	kindFixed
	kindEnum
	kindRecord
	kindArray
	kindMap
	kindUnion
	kindTimestampMillis
	kindTimestampMicros
	kindDate
	kindDecimal // bytes or fixed (size > 0)
)

// avroNode is one compiled schema node.
type avroNode struct {
	kind     avroKind
	size     int // fixed: its size
	scale    int // decimal: its scale
	prec     int // decimal: its precision
	name     string
	fields   []avroField // record
	items    *avroNode   // array items, map values
	branches []*avroNode // union
	symbols  []string    // enum
}

// avroField is a record field, its name already a JSON key ("name":).
type avroField struct {
	key  []byte
	name string
	node *avroNode
	// contract is the field's place in payment.FieldValues, -1 when the
	// contract does not know it (top-level fields only).
	contract int
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

// compileAvro compiles a record schema. Named types met again (a
// recursive record) share their node.
func compileAvro(rec *avro.RecordSchema) (avroRecord, error) {
	root, err := compileNode(rec, map[string]*avroNode{})
	if err != nil {
		return avroRecord{}, err
	}
	for i := range root.fields {
		if c, ok := payment.FieldIndex(root.fields[i].name); ok {
			root.fields[i].contract = c
		}
	}
	out := avroRecord{root: root}
	for _, f := range root.fields {
		if typ := avroColumnType(f.node); f.contract < 0 && typ != "" && columnName(f.name) {
			out.columns = append(out.columns, contract.Column{Name: f.name, Type: typ})
		}
	}
	return out, nil
}

// avroColumnType is the BigQuery type of a field's typed column
// (docs/formats.md, "Typed columns"); "" for a field that is always null.
func avroColumnType(n *avroNode) string {
	if n.kind == kindUnion {
		var other *avroNode
		for _, b := range n.branches {
			if b.kind == kindNull {
				continue
			}
			if other != nil {
				return "JSON" // a union of two types or more
			}
			other = b
		}
		if other == nil {
			return ""
		}
		n = other
	}
	switch n.kind {
	case kindNull:
		return ""
	case kindBoolean:
		return "BOOL"
	case kindInt, kindLong:
		return "INT64"
	case kindFloat, kindDouble:
		return "FLOAT64"
	case kindString, kindEnum:
		return "STRING"
	case kindBytes, kindFixed:
		return "BYTES"
	case kindTimestampMillis, kindTimestampMicros:
		return "TIMESTAMP"
	case kindDate:
		return "DATE"
	case kindDecimal:
		return decimalType(n.prec, n.scale)
	}
	return "JSON" // records, arrays, maps
}

func compileNode(s avro.Schema, named map[string]*avroNode) (*avroNode, error) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return compileNode(s.Schema(), named)
	case *avro.RecordSchema:
		if n, ok := named[s.FullName()]; ok {
			return n, nil
		}
		n := &avroNode{kind: kindRecord, name: s.FullName()}
		named[s.FullName()] = n
		for _, f := range s.Fields() {
			child, err := compileNode(f.Type(), named)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name(), err)
			}
			key := appendJSONString(nil, f.Name())
			n.fields = append(n.fields, avroField{key: append(key, ':'), name: f.Name(), node: child, contract: -1})
		}
		return n, nil
	case *avro.UnionSchema:
		n := &avroNode{kind: kindUnion}
		for _, t := range s.Types() {
			child, err := compileNode(t, named)
			if err != nil {
				return nil, err
			}
			n.branches = append(n.branches, child)
		}
		return n, nil
	case *avro.EnumSchema:
		return &avroNode{kind: kindEnum, symbols: s.Symbols()}, nil
	case *avro.ArraySchema:
		items, err := compileNode(s.Items(), named)
		return &avroNode{kind: kindArray, items: items}, err
	case *avro.MapSchema:
		values, err := compileNode(s.Values(), named)
		return &avroNode{kind: kindMap, items: values}, err
	case *avro.FixedSchema:
		if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
			if d.Scale() > maxDecimalScale {
				return nil, fmt.Errorf("a decimal of scale %d, past BIGNUMERIC's %d", d.Scale(), maxDecimalScale)
			}
			return &avroNode{kind: kindDecimal, size: s.Size(), scale: d.Scale(), prec: d.Precision()}, nil
		}
		return &avroNode{kind: kindFixed, size: s.Size()}, nil
	case *avro.NullSchema:
		return &avroNode{kind: kindNull}, nil
	case *avro.PrimitiveSchema:
		var logical avro.LogicalType
		if l := s.Logical(); l != nil {
			logical = l.Type()
		}
		switch s.Type() {
		case avro.Null:
			return &avroNode{kind: kindNull}, nil
		case avro.Boolean:
			return &avroNode{kind: kindBoolean}, nil
		case avro.Int:
			if logical == avro.Date {
				return &avroNode{kind: kindDate}, nil
			}
			return &avroNode{kind: kindInt}, nil
		case avro.Long:
			switch logical {
			case avro.TimestampMillis:
				return &avroNode{kind: kindTimestampMillis}, nil
			case avro.TimestampMicros:
				return &avroNode{kind: kindTimestampMicros}, nil
			}
			return &avroNode{kind: kindLong}, nil
		case avro.Float:
			return &avroNode{kind: kindFloat}, nil
		case avro.Double:
			return &avroNode{kind: kindDouble}, nil
		case avro.String:
			return &avroNode{kind: kindString}, nil
		case avro.Bytes:
			if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
				if d.Scale() > maxDecimalScale {
					return nil, fmt.Errorf("a decimal of scale %d, past BIGNUMERIC's %d", d.Scale(), maxDecimalScale)
				}
				return &avroNode{kind: kindDecimal, scale: d.Scale(), prec: d.Precision()}, nil
			}
			return &avroNode{kind: kindBytes}, nil
		}
	}
	return nil, fmt.Errorf("the Avro type %s is not supported", s.Type())
}

// errTruncated: the bytes end inside a value.
var errTruncated = errors.New("the record ends inside a value")

// maxDepth bounds nested records and arrays: a recursive schema must not
// let a record's bytes recurse without end.
const maxDepth = 32

// maxDecimalScale is BIGNUMERIC's scale: a schema's decimal beyond it
// could not be stored, and its 10^scale would cost the worker seconds.
const maxDecimalScale = 38

// maxItems bounds the array and map items of one record: items of null,
// of an empty record or of a zero-size fixed take no byte, and a few bytes
// of block counts could otherwise ask for billions of them.
const maxItems = 1 << 16

// avroReader reads Avro binary values and appends their JSON.
type avroReader struct {
	b     []byte
	i     int
	out   []byte
	items int // array and map items read so far
}

// fields reads the record in b into the contract's fields, each as its
// JSON value, and the others as a JSON object (nil when there are none):
// what payment.ParseFields judges. A null field is an absent one, as the
// contract reads it.
func (a avroRecord) fields(b []byte) (*payment.FieldValues, []byte, error) {
	r := avroReader{b: b, out: make([]byte, 0, 2*len(b))}
	var spans [len(payment.FieldValues{})][2]int
	var extra []byte
	for i := range a.root.fields {
		f := &a.root.fields[i]
		if f.contract < 0 {
			values := r.out
			mark := len(extra)
			if len(extra) == 0 {
				extra = append(extra, '{')
			} else {
				extra = append(extra, ',')
			}
			extra = append(extra, f.key...)
			r.out = extra
			err := r.value(f.node, 1)
			extra, r.out = r.out, values
			if err != nil {
				return nil, nil, fmt.Errorf("field %s: %w", f.name, err)
			}
			if isNull(extra) {
				extra = extra[:mark]
			}
			continue
		}
		mark := len(r.out)
		if err := r.value(f.node, 1); err != nil {
			return nil, nil, fmt.Errorf("field %s: %w", f.name, err)
		}
		if isNull(r.out[mark:]) {
			r.out = r.out[:mark]
			continue
		}
		spans[f.contract] = [2]int{mark, len(r.out)}
	}
	if r.i != len(r.b) {
		return nil, nil, fmt.Errorf("%d bytes left after the record", len(r.b)-r.i)
	}
	if len(extra) > 0 {
		extra = append(extra, '}')
	} else {
		extra = nil
	}
	var out payment.FieldValues
	for i, s := range spans {
		if s[1] > s[0] {
			out[i] = r.out[s[0]:s[1]:s[1]]
		}
	}
	return &out, extra, nil
}

// isNull says whether a value's JSON, at the end of b, is null.
func isNull(b []byte) bool {
	return len(b) >= 4 && string(b[len(b)-4:]) == "null" && (len(b) == 4 || b[len(b)-5] == ':')
}

func (r *avroReader) value(n *avroNode, depth int) error {
	switch n.kind {
	case kindRecord:
		if depth > maxDepth {
			return fmt.Errorf("records nested deeper than %d", maxDepth)
		}
		r.out = append(r.out, '{')
		for i := range n.fields {
			f := &n.fields[i]
			if i > 0 {
				r.out = append(r.out, ',')
			}
			r.out = append(r.out, f.key...)
			if err := r.value(f.node, depth+1); err != nil {
				return fmt.Errorf("field %s: %w", f.name, err)
			}
		}
		r.out = append(r.out, '}')
		return nil
	case kindUnion:
		i, err := r.long()
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(n.branches)) {
			return fmt.Errorf("a union branch outside the %d the schema has", len(n.branches))
		}
		return r.value(n.branches[i], depth)
	case kindEnum:
		i, err := r.long()
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(n.symbols)) {
			return fmt.Errorf("an enum symbol outside the %d the schema has", len(n.symbols))
		}
		r.out = appendJSONString(r.out, n.symbols[i])
		return nil
	case kindArray:
		return r.blocks(depth, '[', ']', func() error { return r.value(n.items, depth+1) })
	case kindMap:
		return r.blocks(depth, '{', '}', func() error {
			k, err := r.bytes()
			if err != nil {
				return err
			}
			if !utf8.Valid(k) {
				return errors.New("a map key is not UTF-8")
			}
			r.out = appendJSONBytes(r.out, k)
			r.out = append(r.out, ':')
			return r.value(n.items, depth+1)
		})
	case kindFixed:
		v, err := r.fixed(n.size)
		if err != nil {
			return err
		}
		r.out = appendBase64(r.out, v)
		return nil
	case kindDecimal:
		var v []byte
		var err error
		if n.size > 0 {
			v, err = r.fixed(n.size)
		} else {
			v, err = r.bytes()
		}
		if err != nil {
			return err
		}
		r.out = appendDecimal(r.out, v, n.scale)
		return nil
	case kindNull:
		r.out = append(r.out, "null"...)
		return nil
	case kindBoolean:
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
		return nil
	case kindInt, kindLong, kindDate, kindTimestampMillis, kindTimestampMicros:
		v, err := r.long()
		if err != nil {
			return err
		}
		if (n.kind == kindInt || n.kind == kindDate) && (v < math.MinInt32 || v > math.MaxInt32) {
			return errors.New("an int outside 32 bits")
		}
		switch n.kind {
		case kindTimestampMillis:
			r.out = appendTime(r.out, time.UnixMilli(v))
		case kindTimestampMicros:
			r.out = appendTime(r.out, time.UnixMicro(v))
		case kindDate:
			r.out = append(r.out, '"')
			r.out = time.Unix(0, 0).UTC().AddDate(0, 0, int(v)).AppendFormat(r.out, time.DateOnly)
			r.out = append(r.out, '"')
		default:
			r.out = strconv.AppendInt(r.out, v, 10)
		}
		return nil
	case kindFloat, kindDouble:
		var f float64
		if n.kind == kindFloat {
			v, err := r.fixed(4)
			if err != nil {
				return err
			}
			f = float64(math.Float32frombits(binary.LittleEndian.Uint32(v)))
		} else {
			v, err := r.fixed(8)
			if err != nil {
				return err
			}
			f = math.Float64frombits(binary.LittleEndian.Uint64(v))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// JSON has no NaN or infinity; the text keeps what was sent.
			r.out = strconv.AppendQuote(r.out, strconv.FormatFloat(f, 'g', -1, 64))
			return nil
		}
		r.out = strconv.AppendFloat(r.out, f, 'g', -1, 64)
		return nil
	case kindString:
		v, err := r.bytes()
		if err != nil {
			return err
		}
		if !utf8.Valid(v) {
			return errors.New("a string is not UTF-8")
		}
		r.out = appendJSONBytes(r.out, v)
		return nil
	case kindBytes:
		v, err := r.bytes()
		if err != nil {
			return err
		}
		r.out = appendBase64(r.out, v)
		return nil
	}
	return fmt.Errorf("avro kind %d not compiled", n.kind)
}

func (r *avroReader) fixed(size int) ([]byte, error) {
	if size > len(r.b)-r.i {
		return nil, errTruncated
	}
	v := r.b[r.i : r.i+size]
	r.i += size
	return v, nil
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
		if n > int64(len(r.b)-r.i)+1 || int64(r.items)+n > maxItems {
			return fmt.Errorf("a block of %d items in %d bytes", n, len(r.b)-r.i)
		}
		r.items += int(n)
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

// appendJSONString is warehouse's JSON string encoder, the one the rows
// are written with.
func appendJSONString(out []byte, s string) []byte { return warehouse.AppendJSONString(out, s) }

func appendJSONBytes(out, b []byte) []byte { return appendJSONString(out, unsafeString(b)) }

// unsafeString views b as a string without a copy, for appending only.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

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
	if len(twos) > 0 && len(twos) <= 8 {
		// Most amounts fit 64 bits: no big numbers.
		v := int64(0)
		if twos[0]&0x80 != 0 {
			v = -1
		}
		for _, b := range twos {
			v = v<<8 | int64(b)
		}
		return appendScaled(out, v, scale)
	}
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

// appendScaled appends v / 10^scale as a quoted exact decimal, trailing
// zeros dropped.
func appendScaled(out []byte, v int64, scale int) []byte {
	var digits [24]byte
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	var padded [48]byte
	d := strconv.AppendUint(digits[:0], u, 10)
	if len(d) <= scale && scale < len(padded) {
		// 0.05 at scale 2 is "5": zeros in front.
		p := padded[:scale+1-len(d)]
		for i := range p {
			p[i] = '0'
		}
		d = append(p, d...)
	}
	whole, frac := d[:len(d)-scale], d[len(d)-scale:]
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	out = append(out, '"')
	if neg {
		out = append(out, '-')
	}
	out = append(out, whole...)
	if len(frac) > 0 {
		out = append(out, '.')
		out = append(out, frac...)
	}
	return append(out, '"')
}
