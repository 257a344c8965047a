package warehouse

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// RowEncoder turns the newline-delimited JSON rows paystream builds for
// load jobs into the protocol buffer rows the Storage Write API takes, for
// one table: the same rows, so both modes write the same values.
type RowEncoder struct {
	schema     bigquery.Schema
	message    protoreflect.MessageDescriptor
	Descriptor *descriptorpb.DescriptorProto // for the stream's writer
}

// NewRowEncoder builds the encoder of a table from its schema.
func NewRowEncoder(schema bigquery.Schema) (*RowEncoder, error) {
	ts, err := adapt.BQSchemaToStorageTableSchema(schema)
	if err != nil {
		return nil, err
	}
	// NUMERIC goes as its decimal string, which the API documents as
	// accepted and parses exactly, rather than the adapter's default
	// packed bytes (which the emulator reads as 0).
	d, err := adapt.StorageSchemaToProtoDescriptorWithOptions(ts, "root", adapt.WithProtoMapping(adapt.ProtoMapping{
		FieldType: storagepb.TableFieldSchema_NUMERIC, Type: descriptorpb.FieldDescriptorProto_TYPE_STRING}))
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
	return &RowEncoder{schema: schema, message: md, Descriptor: dp}, nil
}

// Encode converts NDJSON rows, in order. Each row is read once and its
// protocol buffer written straight from it, field by field: going through
// protojson and a dynamic message cost the worker four times the CPU.
func (e *RowEncoder) Encode(ndjson []byte) ([][]byte, error) {
	var out [][]byte
	dec := json.NewDecoder(bytes.NewReader(ndjson))
	dec.UseNumber()
	for i := 0; ; i++ {
		var row map[string]any
		if err := dec.Decode(&row); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		b, err := appendRow(nil, row, e.schema, e.message)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out = append(out, b)
	}
}

// ErrNotAColumn: a row has a field its table's schema, as the encoder
// read it, lacks.
var ErrNotAColumn = errors.New("not a column of the table")

// appendRow appends the wire form of row, a JSON object as load jobs take
// it, as a message of md (the table's, or a RECORD's, schema).
func appendRow(b []byte, row map[string]any, schema bigquery.Schema, md protoreflect.MessageDescriptor) ([]byte, error) {
	for name := range row {
		if md.Fields().ByName(protoreflect.Name(name)) == nil {
			return nil, fmt.Errorf("%s is %w", name, ErrNotAColumn)
		}
	}
	for _, f := range schema {
		fd := md.Fields().ByName(protoreflect.Name(f.Name))
		if fd == nil {
			return nil, fmt.Errorf("%s: not in the row message", f.Name)
		}
		v := row[f.Name]
		if v == nil {
			if f.Required {
				return nil, fmt.Errorf("%s: required, and missing", f.Name)
			}
			continue
		}
		if !f.Repeated {
			var err error
			if b, err = appendValue(b, fd, f, v); err != nil {
				return nil, err
			}
			continue
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: want a list, got %T", f.Name, v)
		}
		// One tag per element: every parser takes that form of a
		// repeated field, packed or not.
		for _, item := range list {
			var err error
			if b, err = appendValue(b, fd, f, item); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// appendValue appends one value of field f, its tag first. The values are
// what load jobs take: TIMESTAMP as RFC 3339, NUMERIC as its decimal
// (sent as the string the API documents, parsed exactly), DATE as
// YYYY-MM-DD, BYTES as base64.
func appendValue(b []byte, fd protoreflect.FieldDescriptor, f *bigquery.FieldSchema, v any) ([]byte, error) {
	num := fd.Number()
	switch fd.Kind() {
	case protoreflect.StringKind:
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		default:
			if f.Type != bigquery.JSONFieldType {
				return nil, fmt.Errorf("%s: want a string, got %T", f.Name, v)
			}
			js, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			s = string(js)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, s), nil
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: want base64, got %T", f.Name, v)
		}
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, raw), nil
	case protoreflect.Int64Kind, protoreflect.Int32Kind:
		n, err := integer(v, f)
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(n)), nil
	case protoreflect.DoubleKind:
		var x float64
		switch v := v.(type) {
		case json.Number:
			var err error
			if x, err = v.Float64(); err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
		case string: // load jobs take "NaN", "Infinity" and quoted numbers
			var err error
			if x, err = strconv.ParseFloat(v, 64); err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
		default:
			return nil, fmt.Errorf("%s: want a number, got %T", f.Name, v)
		}
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(x)), nil
	case protoreflect.BoolKind:
		t, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%s: want true or false, got %T", f.Name, v)
		}
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(t)), nil
	case protoreflect.MessageKind:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an object, got %T", f.Name, v)
		}
		inner, err := appendRow(nil, m, f.Schema, fd.Message())
		if err != nil {
			return nil, fmt.Errorf("%s.%w", f.Name, err)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, inner), nil
	}
	return nil, fmt.Errorf("%s: %s columns are not supported", f.Name, f.Type)
}

// integer reads an INT64, a TIMESTAMP (as microseconds since the epoch)
// or a DATE (as days since the epoch), as the Storage Write API takes them.
func integer(v any, f *bigquery.FieldSchema) (int64, error) {
	s, isString := v.(string)
	switch {
	case f.Type == bigquery.TimestampFieldType && isString:
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f.Name, err)
		}
		return t.UnixMicro(), nil
	case f.Type == bigquery.DateFieldType && isString:
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f.Name, err)
		}
		return d.Unix() / (24 * 60 * 60), nil
	case isString: // a quoted integer, as load jobs take too
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f.Name, err)
		}
		return n, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s: want an integer, got %T", f.Name, v)
	}
	i, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name, err)
	}
	return i, nil
}
