package warehouse

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
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
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "root")
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

// Encode converts NDJSON rows, in order.
func (e *RowEncoder) Encode(ndjson []byte) ([][]byte, error) {
	var out [][]byte
	for i, line := range bytes.Split(bytes.TrimRight(ndjson, "\n"), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		if err := toProtoJSON(row, e.schema); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		js, err := json.Marshal(row)
		if err != nil {
			return nil, err
		}
		msg := dynamicpb.NewMessage(e.message)
		if err := protojson.Unmarshal(js, msg); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		b, err := proto.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// numericBytes encodes a NUMERIC as the Storage Write API takes it in a
// bytes field: the unscaled value (scale 9) as a little-endian two's
// complement integer. Exact: a decimal with more than 9 fraction digits
// is refused, never rounded.
func numericBytes(decimal string) ([]byte, error) {
	r, ok := new(big.Rat).SetString(decimal)
	if !ok {
		return nil, fmt.Errorf("%q is not a decimal", decimal)
	}
	r.Mul(r, new(big.Rat).SetInt(big.NewInt(1_000_000_000)))
	if !r.IsInt() {
		return nil, fmt.Errorf("%q has more than 9 fraction digits", decimal)
	}
	n := r.Num()
	if n.Sign() < 0 {
		// Two's complement of a negative n in 16 bytes: 2^128 + n.
		n = new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 128), n)
	}
	be := n.FillBytes(make([]byte, 16))
	slices.Reverse(be)
	return be, nil
}

// toProtoJSON rewrites a JSON row in place into what the row message's
// JSON form expects: TIMESTAMP as microseconds since the epoch, NUMERIC
// in its bytes encoding, nested records likewise.
func toProtoJSON(row map[string]any, schema bigquery.Schema) error {
	for _, f := range schema {
		v, ok := row[f.Name]
		if !ok || v == nil {
			continue
		}
		conv := func(v any) (any, error) { return convertValue(v, f) }
		if f.Repeated {
			list, ok := v.([]any)
			if !ok {
				return fmt.Errorf("%s: want a list, got %T", f.Name, v)
			}
			for i := range list {
				c, err := conv(list[i])
				if err != nil {
					return err
				}
				list[i] = c
			}
			continue
		}
		c, err := conv(v)
		if err != nil {
			return err
		}
		row[f.Name] = c
	}
	return nil
}

func convertValue(v any, f *bigquery.FieldSchema) (any, error) {
	switch f.Type {
	case bigquery.TimestampFieldType:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: want an RFC 3339 string, got %T", f.Name, v)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		return t.UnixMicro(), nil
	case bigquery.NumericFieldType:
		b, err := numericBytes(fmt.Sprint(v)) // json.Number or string: the decimal as written
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		return base64.StdEncoding.EncodeToString(b), nil // protojson's form of bytes
	case bigquery.RecordFieldType:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an object, got %T", f.Name, v)
		}
		return m, toProtoJSON(m, f.Schema)
	}
	return v, nil
}
