package warehouse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
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

// toProtoJSON rewrites a JSON row in place into what the row message's
// JSON form expects: TIMESTAMP as microseconds since the epoch, NUMERIC
// as its decimal string, nested records likewise.
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
		return fmt.Sprint(v), nil // json.Number or string: the decimal as written
	case bigquery.RecordFieldType:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an object, got %T", f.Name, v)
		}
		return m, toProtoJSON(m, f.Schema)
	}
	return v, nil
}
