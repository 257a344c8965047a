package warehouse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// everyKind is a table with a column of each type paystream's rows use,
// and the others the encoder takes.
var everyKind = bigquery.Schema{
	{Name: "transaction_id", Type: bigquery.StringFieldType, Required: true},
	{Name: "amount", Type: bigquery.NumericFieldType},
	{Name: "event_time", Type: bigquery.TimestampFieldType},
	{Name: "kafka_offset", Type: bigquery.IntegerFieldType},
	{Name: "score", Type: bigquery.FloatFieldType},
	{Name: "flagged", Type: bigquery.BooleanFieldType},
	{Name: "day", Type: bigquery.DateFieldType},
	{Name: "raw", Type: bigquery.BytesFieldType},
	{Name: "tags", Type: bigquery.StringFieldType, Repeated: true},
	{Name: "rules", Type: bigquery.RecordFieldType, Repeated: true, Schema: bigquery.Schema{
		{Name: "rule", Type: bigquery.StringFieldType},
		{Name: "weight", Type: bigquery.FloatFieldType},
		{Name: "at", Type: bigquery.TimestampFieldType},
	}},
}

var everyKindRows = []string{
	`{"transaction_id":"t1","amount":"12.34","event_time":"2026-11-25T10:00:00.123456Z","kafka_offset":7,"score":0.25,"flagged":true,"day":"2026-11-25","raw":"AAEC","tags":["a","b"],"rules":[{"rule":"velocity","weight":0.5,"at":"2026-11-25T10:00:01Z"},{"rule":"amount"}]}`,
	`{"transaction_id":"t2","amount":"-0.001","event_time":"1969-12-31T23:59:59.999999Z","kafka_offset":-3,"score":-1e-9,"flagged":false,"day":"1969-12-30"}`,
	`{"transaction_id":"t3","amount":123456789012345678901234567.123456789,"kafka_offset":"9007199254740993","tags":[],"rules":null}`,
	`{"transaction_id":"t4","amount":null,"event_time":null,"score":3}`,
}

// viaProtoJSON is the encoding the Storage Write path used first: the row
// rewritten into protojson's form and parsed into a dynamic message. The
// direct encoder must make the same messages.
func viaProtoJSON(t *testing.T, e *RowEncoder, line string) *dynamicpb.Message {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var row map[string]any
	if err := dec.Decode(&row); err != nil {
		t.Fatal(err)
	}
	var conv func(row map[string]any, schema bigquery.Schema)
	conv = func(row map[string]any, schema bigquery.Schema) {
		for _, f := range schema {
			one := func(v any) any {
				switch f.Type {
				case bigquery.TimestampFieldType:
					ts, err := time.Parse(time.RFC3339Nano, v.(string))
					if err != nil {
						t.Fatal(err)
					}
					return ts.UnixMicro()
				case bigquery.DateFieldType:
					d, err := time.Parse(time.DateOnly, v.(string))
					if err != nil {
						t.Fatal(err)
					}
					return d.Unix() / 86400
				case bigquery.NumericFieldType:
					return fmt.Sprint(v)
				case bigquery.RecordFieldType:
					conv(v.(map[string]any), f.Schema)
				}
				return v
			}
			switch v := row[f.Name].(type) {
			case nil:
			case []any:
				for i := range v {
					v[i] = one(v[i])
				}
			default:
				row[f.Name] = one(v)
			}
		}
	}
	conv(row, e.schema)
	js, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	msg := dynamicpb.NewMessage(e.message)
	if err := protojson.Unmarshal(js, msg); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return msg
}

// TestEncodeMakesTheMessagesProtoJSONMakes: every row, read back from the
// direct encoding, is the message protojson makes of it.
func TestEncodeMakesTheMessagesProtoJSONMakes(t *testing.T) {
	enc, err := NewRowEncoder(everyKind)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := enc.Encode(jsonRows(t, strings.Join(everyKindRows, "\n")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(everyKindRows) {
		t.Fatalf("%d rows encoded, want %d", len(rows), len(everyKindRows))
	}
	for i, line := range everyKindRows {
		got := dynamicpb.NewMessage(enc.message)
		if err := proto.Unmarshal(rows[i], got); err != nil {
			t.Fatalf("row %d does not decode: %v", i, err)
		}
		if want := viaProtoJSON(t, enc, line); !proto.Equal(got, want) {
			t.Errorf("row %d:\n got %v\nwant %v", i, got, want)
		}
	}
}

// TestEncodeRefusesWhatALoadJobWould: a row the table cannot take is an
// error naming the row and the column, not a row sent to be refused.
func TestEncodeRefusesWhatALoadJobWould(t *testing.T) {
	enc, err := NewRowEncoder(everyKind)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ row, want string }{
		{`{"amount":"1"}`, "transaction_id: required"},
		{`{"transaction_id":"t","colour":"red"}`, "colour is not a column"},
		{`{"transaction_id":"t","kafka_offset":1.5}`, "kafka_offset"},
		{`{"transaction_id":"t","event_time":"yesterday"}`, "event_time"},
		{`{"transaction_id":"t","flagged":"yes"}`, "flagged: want true or false"},
		{`{"transaction_id":"t","rules":[{"weight":"heavy"}]}`, "rules.weight"},
		{`{"transaction_id":"t","tags":"a"}`, "tags: want a list"},
	} {
		_, err := enc.Encode(jsonRows(t, `{"transaction_id":"ok"}`+"\n"+c.row+"\n"))
		if err == nil || !strings.Contains(err.Error(), "row 1: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error of row 1 about %q", c.row, err, c.want)
		}
	}
}

// BenchmarkEncode compares the direct encoding with the protojson route
// it replaced, on rows of every kind.
func BenchmarkEncode(b *testing.B) {
	enc, err := NewRowEncoder(everyKind)
	if err != nil {
		b.Fatal(err)
	}
	var ndjson bytes.Buffer
	for range 250 {
		for _, r := range everyKindRows {
			ndjson.WriteString(r + "\n")
		}
	}
	rows := jsonRows(b, ndjson.String())
	t := &testing.T{}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := enc.Encode(rows); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("protojson", func(b *testing.B) {
		lines := strings.Split(strings.TrimSpace(ndjson.String()), "\n")
		for b.Loop() {
			for _, l := range lines {
				if _, err := proto.Marshal(viaProtoJSON(t, enc, l)); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
	})
}
