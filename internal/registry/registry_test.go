package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"math/big"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// v1 is a payment schema as producers write it: decimal amount, timestamp
// event_time, nullable optional fields.
const v1 = `{"type":"record","name":"Payment","namespace":"test","fields":[
 {"name":"transaction_id","type":"string"},
 {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}},
 {"name":"currency","type":"string"},
 {"name":"customer_id","type":"string"},
 {"name":"merchant_id","type":"string"},
 {"name":"card_id","type":"string"},
 {"name":"payment_method","type":{"type":"enum","name":"Method","symbols":["card","wallet","bank_transfer"]}},
 {"name":"status","type":"string"},
 {"name":"country","type":["null","string"],"default":null},
 {"name":"tip","type":["null","string"],"default":null}]}`

func record(t *testing.T, schema string, fields map[string]any) []byte {
	t.Helper()
	s, err := avro.ParseWithCache(schema, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := avro.Marshal(s, fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func framed(id int, body []byte) []byte {
	out := make([]byte, headerLen, headerLen+len(body))
	binary.BigEndian.PutUint32(out[1:], uint32(id))
	return append(out, body...)
}

func fields() map[string]any {
	return map[string]any{
		"transaction_id": "tx-1", "event_time": time.UnixMilli(1767268800123).UTC(),
		"amount": big.NewRat(125, 10), "currency": "USD", "customer_id": "c-1", "merchant_id": "m-1",
		"card_id": "tok-1", "payment_method": "wallet", "status": "captured",
		"country": "DE", "tip": nil,
	}
}

func newRegistry(t *testing.T, opts ...srfake.Option) (*srfake.Registry, *Client) {
	t.Helper()
	reg := srfake.New(opts...)
	t.Cleanup(reg.Close)
	c, err := New(Options{URL: reg.URL(), Topic: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	return reg, c
}

func register(t *testing.T, reg *srfake.Registry, schema string) int {
	t.Helper()
	id, _, err := reg.RegisterSchema("payments-value", sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// decode runs a framed record through the client and the contract.
func decode(t *testing.T, c *Client, value []byte) (payment.Event, error) {
	t.Helper()
	id, ok := SchemaID(value)
	if !ok {
		t.Fatal("no header")
	}
	s, err := c.Schema(context.Background(), id)
	if err != nil {
		return payment.Event{}, err
	}
	return s.Event(value)
}

func TestAvroRecordsBecomeContractEvents(t *testing.T) {
	reg, c := newRegistry(t)
	id := register(t, reg, v1)
	f := fields()
	f["tip"] = "0.50"
	e, err := decode(t, c, framed(id, record(t, v1, f)))
	if err != nil {
		t.Fatal(err)
	}
	if e.TransactionID != "tx-1" || e.Amount.String() != "12.50" || e.PaymentMethod != "wallet" || e.Country != "DE" {
		t.Errorf("event %+v", e)
	}
	if want := time.UnixMilli(1767268800123).UTC(); !e.EventTime.Equal(want) {
		t.Errorf("event_time %s, want %s", e.EventTime, want)
	}
	if string(e.Extra) != `{"tip":"0.50"}` {
		t.Errorf("extra %s, want the field the contract does not know", e.Extra)
	}
	// A null optional field is an absent one.
	e, err = decode(t, c, framed(id, record(t, v1, fields())))
	if err != nil || e.CardCountry != "" || e.Extra != nil {
		t.Errorf("with nulls: %+v, %v", e, err)
	}
}

// TestSchemasTheContractCannotRead: each is one rejection for all of its
// records, naming subject, version, ID and field, never a value.
func TestSchemasTheContractCannotRead(t *testing.T) {
	reg, c := newRegistry(t)
	double := strings.Replace(v1, `{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}`, `"double"`, 1)
	noCard := strings.Replace(v1, `{"name":"card_id","type":"string"},`, ``, 1)
	for _, tc := range []struct {
		name, schema string
		reason       payment.Reason
		detail       string
	}{
		{"amount a double", double, payment.ReasonSchemaTypeChanged, "gives amount the type double"},
		{"card_id removed", noCard, payment.ReasonSchemaMissingField, "has no field card_id"},
		{"not a record", `"string"`, payment.ReasonSchemaUnsupported, "not a record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := register(t, reg, tc.schema)
			_, err := decode(t, c, framed(id, []byte{2, 'x'}))
			var pe *payment.Error
			if !errors.As(err, &pe) || pe.Reason != tc.reason || !strings.Contains(pe.Detail, tc.detail) || !strings.Contains(pe.Detail, "payments-value version") {
				t.Fatalf("got %v, want %s naming the subject's version and %q", err, tc.reason, tc.detail)
			}
		})
	}
}

func TestRecordsThatDoNotDecode(t *testing.T) {
	reg, c := newRegistry(t)
	id := register(t, reg, v1)
	good := record(t, v1, fields())
	for name, body := range map[string][]byte{
		"truncated":     good[:len(good)-3],
		"trailing":      append(append([]byte{}, good...), 0),
		"empty":         {},
		"bad union":     append(append([]byte{}, good[:len(good)-1]...), 8),
		"huge a string": {0xfe, 0xff, 0xff, 0xff, 0x0f},
	} {
		_, err := decode(t, c, framed(id, body))
		if payment.ReasonOf(err) != payment.ReasonSchemaUndecodable {
			t.Errorf("%s: %v, want schema_undecodable", name, err)
		}
	}
}

// TestUnknownIDsAndAnAbsentRegistry: only the registry's own "no such
// schema" makes a record's schema unknown; a registry that is down, or a
// URL that is not a registry, is an error to retry.
func TestUnknownIDsAndAnAbsentRegistry(t *testing.T) {
	_, c := newRegistry(t)
	if _, err := c.Schema(context.Background(), 99); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("unknown ID: %v", err)
	}
	down, err := New(Options{URL: "http://127.0.0.1:1", Topic: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Schema(context.Background(), 1); err == nil || errors.Is(err, ErrUnknownSchema) {
		t.Errorf("registry down: %v, want an error to retry", err)
	}
	notRegistry := http.NewServeMux() // answers 404 to everything, like a wrong path
	srv := srfake.New()
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		notRegistry.ServeHTTP(w, r)
		return true
	})
	t.Cleanup(srv.Close)
	wrong, _ := New(Options{URL: srv.URL(), Topic: "payments"})
	if _, err := wrong.Schema(context.Background(), 1); err == nil || errors.Is(err, ErrUnknownSchema) {
		t.Errorf("a plain 404: %v, want an error to retry", err)
	}
}

func TestBasicAuth(t *testing.T) {
	reg := srfake.New(srfake.WithAuth("Basic a2V5OnNlY3JldA==")) // key:secret
	t.Cleanup(reg.Close)
	id := register(t, reg, v1)
	bad, _ := New(Options{URL: reg.URL(), Username: "key", Password: "wrong"})
	if _, err := bad.Schema(context.Background(), id); err == nil || errors.Is(err, ErrUnknownSchema) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong secret: %v, want an error to retry that does not show the secret", err)
	}
	good, _ := New(Options{URL: reg.URL(), Username: "key", Password: "secret"})
	if _, err := good.Schema(context.Background(), id); err != nil {
		t.Errorf("right secret: %v", err)
	}
}

// TestHostileSchemasAndRecordsCostLittle: items that take no byte, and a
// decimal scale no table could hold, are refused before they cost the
// worker its memory or seconds.
func TestHostileSchemasAndRecordsCostLittle(t *testing.T) {
	reg, c := newRegistry(t)
	nulls := strings.Replace(v1, `{"name":"tip","type":["null","string"],"default":null}`, `{"name":"tip","type":{"type":"array","items":"null"}}`, 1)
	id := register(t, reg, nulls)
	body := record(t, v1, fields())
	body = body[:len(body)-1] // v1's tip (null) replaced by an array below
	for range 2000 {
		body = append(body, 0xfe, 0xff, 0x07) // a block of 65,535 nulls
	}
	body = append(body, 0)
	if _, err := decode(t, c, framed(id, body)); payment.ReasonOf(err) != payment.ReasonSchemaUndecodable {
		t.Errorf("130 million zero-byte items: %v, want schema_undecodable", err)
	}
	wide := strings.Replace(v1, `"precision":18,"scale":4`, `"precision":100000,"scale":100000`, 1)
	id = register(t, reg, wide)
	if _, err := decode(t, c, framed(id, []byte{0})); payment.ReasonOf(err) != payment.ReasonSchemaUnsupported {
		t.Errorf("a decimal of scale 100,000: %v, want schema_unsupported", err)
	}
}

// TestProtobufRecordsBecomeContractEvents: the simulator's Protobuf
// records (Confluent's wire format, message index path [0]) read into the
// same event as their JSON; messages the contract cannot read are
// rejected, naming the message.
func TestProtobufRecordsBecomeContractEvents(t *testing.T) {
	reg, c := newRegistry(t)
	enc, err := simulation.NewProtobuf(context.Background(), c, "payments", []int{2})
	if err != nil {
		t.Fatal(err)
	}
	js := firstValid(t)
	want, err := payment.Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	framed, err := enc.Encode(0, js)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(t, c, framed)
	if err != nil {
		t.Fatal(err)
	}
	extra := got.Extra
	got.Extra, want.Extra = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("protobuf: %+v\nJSON: %+v", got, want)
	}
	if tier, _ := simulation.V2Fields(want.TransactionID); tier != nil && !strings.Contains(string(extra), `"loyalty_tier":`) {
		t.Errorf("extra %s lacks version 2's fields", extra)
	}
	double := "syntax = \"proto3\";\nmessage P { string transaction_id = 1; double amount = 2; }\n"
	id, _, err := reg.RegisterSchema("payments-value", sr.Schema{Schema: double, Type: sr.TypeProtobuf})
	if err != nil {
		t.Fatal(err)
	}
	body := append([]byte{0, 0, 0, 0, byte(id), 0}, 0x0a, 1, 'x')
	if _, err := decode(t, c, body); payment.ReasonOf(err) != payment.ReasonSchemaMissingField {
		t.Errorf("a message without event_time: %v, want schema_missing_field", err)
	}
}

// firstValid is the simulator's first valid event, as JSON.
func firstValid(t testing.TB) []byte {
	t.Helper()
	g, err := simulation.NewGenerator(simulation.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for {
		if r := g.Next(); r.Kind == simulation.KindValid {
			return r.Value
		}
	}
}
