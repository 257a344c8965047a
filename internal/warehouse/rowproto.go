package warehouse

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// RowEncoder turns typed rows (Row) into the protocol buffer rows the
// Storage Write API takes, for one table: each value as a load job's JSON
// would carry it, so both modes write the same values.
type RowEncoder struct {
	schema     bigquery.Schema
	message    protoreflect.MessageDescriptor
	fields     *messageFields
	Descriptor *descriptorpb.DescriptorProto // for the stream's writer
}

// messageFields is a message's columns by name, read once from the schema.
type messageFields struct {
	byName   map[string]protoField
	required int
}

type protoField struct {
	fd    protoreflect.FieldDescriptor
	f     *bigquery.FieldSchema
	inner *messageFields // a RECORD's
}

func fieldsOf(schema bigquery.Schema, md protoreflect.MessageDescriptor) (*messageFields, error) {
	m := &messageFields{byName: make(map[string]protoField, len(schema))}
	for _, f := range schema {
		fd := md.Fields().ByName(protoreflect.Name(f.Name))
		if fd == nil {
			return nil, fmt.Errorf("%s: not in the row message", f.Name)
		}
		pf := protoField{fd: fd, f: f}
		if fd.Kind() == protoreflect.MessageKind {
			inner, err := fieldsOf(f.Schema, fd.Message())
			if err != nil {
				return nil, fmt.Errorf("%s.%w", f.Name, err)
			}
			pf.inner = inner
		}
		if f.Required {
			m.required++
		}
		m.byName[f.Name] = pf
	}
	return m, nil
}

// NewRowEncoder builds the encoder of a table from its schema.
func NewRowEncoder(schema bigquery.Schema) (*RowEncoder, error) {
	ts, err := adapt.BQSchemaToStorageTableSchema(schema)
	if err != nil {
		return nil, err
	}
	// NUMERIC and BIGNUMERIC go as their decimal strings, which the API documents as
	// accepted and parses exactly, rather than the adapter's default
	// packed bytes (which the emulator reads as 0).
	d, err := adapt.StorageSchemaToProtoDescriptorWithOptions(ts, "root", adapt.WithProtoMapping(adapt.ProtoMapping{
		FieldType: storagepb.TableFieldSchema_NUMERIC, Type: descriptorpb.FieldDescriptorProto_TYPE_STRING}),
		adapt.WithProtoMapping(adapt.ProtoMapping{FieldType: storagepb.TableFieldSchema_BIGNUMERIC, Type: descriptorpb.FieldDescriptorProto_TYPE_STRING}))
	if err != nil {
		return nil, err
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("schema converts to a %T, not a message", d)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		return nil, err
	}
	fields, err := fieldsOf(schema, md)
	if err != nil {
		return nil, err
	}
	return &RowEncoder{schema: schema, message: md, fields: fields, Descriptor: dp}, nil
}

// Encode converts rows, in order, each written straight from its columns:
// going through JSON, protojson and a dynamic message cost the worker
// several times the CPU.
func (e *RowEncoder) Encode(rows []Row) ([][]byte, error) {
	out := make([][]byte, 0, len(rows))
	c := &protoColumns{m: e.fields} // one for all the rows: each would escape
	for i, r := range rows {
		b, err := c.row(r)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// ErrNotAColumn: a row has a column its table's schema, as the encoder
// read it, lacks.
var ErrNotAColumn = errors.New("not a column of the table")

// row encodes r as a message of c's fields.
func (c *protoColumns) row(r Row) ([]byte, error) {
	c.b, c.required, c.err = nil, 0, nil
	m := c.m
	r.Columns(c)
	if c.err == nil && c.required < m.required {
		var given names
		r.Columns(&given)
		for _, name := range slices.Sorted(maps.Keys(m.byName)) {
			if m.byName[name].f.Required && !slices.Contains(given, name) {
				return nil, fmt.Errorf("%s: required, and missing", name)
			}
		}
	}
	return c.b, c.err
}

// names lists a row's columns.
type names []string

func (n *names) String(name, _ string)           { *n = append(*n, name) }
func (n *names) Int(name string, _ int64)        { *n = append(*n, name) }
func (n *names) Bool(name string, _ bool)        { *n = append(*n, name) }
func (n *names) Strings(name string, _ []string) { *n = append(*n, name) }
func (n *names) Records(name string, _ []Row)    { *n = append(*n, name) }
func (n *names) JSON(name, _ string)             { *n = append(*n, name) }

// protoColumns appends each column as its field, tag first; the first
// error is kept and the columns after it are ignored.
type protoColumns struct {
	b        []byte
	m        *messageFields
	required int // required columns given
	err      error
}

// field looks a column up; repeated says whether the value is a list.
func (c *protoColumns) field(name string, repeated bool) (protoField, bool) {
	if c.err != nil {
		return protoField{}, false
	}
	f, ok := c.m.byName[name]
	switch {
	case !ok:
		c.err = fmt.Errorf("%s is %w", name, ErrNotAColumn)
	case f.f.Repeated && !repeated:
		c.err = fmt.Errorf("%s: want a list", name)
	case !f.f.Repeated && repeated && f.inner == nil:
		c.err = fmt.Errorf("%s: want one value, got a list", name)
	}
	if c.err != nil {
		return protoField{}, false
	}
	if f.f.Required {
		c.required++
	}
	return f, true
}

func (c *protoColumns) String(name, v string) {
	if f, ok := c.field(name, false); ok {
		c.b, c.err = appendString(c.b, f, v)
	}
}

func (c *protoColumns) Int(name string, v int64) {
	f, ok := c.field(name, false)
	if !ok {
		return
	}
	num := f.fd.Number()
	switch f.fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Int32Kind:
		c.b = protowire.AppendTag(c.b, num, protowire.VarintType)
		c.b = protowire.AppendVarint(c.b, uint64(v))
	case protoreflect.DoubleKind:
		c.b = protowire.AppendTag(c.b, num, protowire.Fixed64Type)
		c.b = protowire.AppendFixed64(c.b, math.Float64bits(float64(v)))
	case protoreflect.StringKind: // NUMERIC, BIGNUMERIC, STRING
		c.b = protowire.AppendTag(c.b, num, protowire.BytesType)
		c.b = protowire.AppendString(c.b, strconv.FormatInt(v, 10))
	default:
		c.err = fmt.Errorf("%s: a %s column takes no integer", name, f.f.Type)
	}
}

func (c *protoColumns) Bool(name string, v bool) {
	f, ok := c.field(name, false)
	if !ok {
		return
	}
	if f.fd.Kind() != protoreflect.BoolKind {
		c.err = fmt.Errorf("%s: a %s column takes no true or false", name, f.f.Type)
		return
	}
	c.b = protowire.AppendTag(c.b, f.fd.Number(), protowire.VarintType)
	c.b = protowire.AppendVarint(c.b, protowire.EncodeBool(v))
}

// Strings writes one tag per element: every parser takes that form of a
// repeated field, packed or not.
func (c *protoColumns) Strings(name string, v []string) {
	f, ok := c.field(name, true)
	if !ok {
		return
	}
	for _, s := range v {
		if c.b, c.err = appendString(c.b, f, s); c.err != nil {
			return
		}
	}
}

// JSON writes the value's JSON text, which the Storage Write API takes
// for a JSON column as a string and parses.
func (c *protoColumns) JSON(name, raw string) {
	if f, ok := c.field(name, false); ok {
		c.b, c.err = appendString(c.b, f, raw)
	}
}

func (c *protoColumns) Records(name string, v []Row) {
	f, ok := c.field(name, true)
	if !ok {
		return
	}
	if f.inner == nil {
		c.err = fmt.Errorf("%s: a %s column takes no record", name, f.f.Type)
		return
	}
	nested := &protoColumns{m: f.inner}
	for _, r := range v {
		inner, err := nested.row(r)
		if err != nil {
			c.err = fmt.Errorf("%s.%w", name, err)
			return
		}
		c.b = protowire.AppendTag(c.b, f.fd.Number(), protowire.BytesType)
		c.b = protowire.AppendBytes(c.b, inner)
	}
}

// appendString appends a value given as a load job's JSON string carries
// it: TIMESTAMP as RFC 3339 (sent as microseconds since the epoch), DATE
// as YYYY-MM-DD (days since the epoch), NUMERIC as its decimal (sent as
// the string the API documents, parsed exactly), BYTES as base64, and
// numbers and booleans quoted, as load jobs take them too.
func appendString(b []byte, f protoField, v string) ([]byte, error) {
	num, name := f.fd.Number(), f.f.Name
	switch f.fd.Kind() {
	case protoreflect.StringKind:
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, v), nil
	case protoreflect.BytesKind:
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, raw), nil
	case protoreflect.Int64Kind, protoreflect.Int32Kind:
		var n int64
		switch f.f.Type {
		case bigquery.TimestampFieldType:
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			n = t.UnixMicro()
		case bigquery.DateFieldType:
			d, err := time.Parse(time.DateOnly, v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			n = d.Unix() / (24 * 60 * 60)
		default:
			var err error
			if n, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(n)), nil
	case protoreflect.DoubleKind: // load jobs take "NaN", "Infinity" and quoted numbers
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(x)), nil
	case protoreflect.BoolKind:
		t, err := strconv.ParseBool(v)
		if err != nil || v != "true" && v != "false" {
			return nil, fmt.Errorf("%s: want true or false, got %q", name, v)
		}
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(t)), nil
	}
	return nil, fmt.Errorf("%s: %s columns are not supported", name, f.f.Type)
}
