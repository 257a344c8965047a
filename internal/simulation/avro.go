package simulation

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/big"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/paystream/paystream/internal/payment"
)

// The payment schemas the simulator writes Avro with, as payment teams'
// producers do: the amount a decimal, the event time a timestamp, the
// optional fields nullable. Version 2 adds two optional fields, the
// evolution a registry allows under BACKWARD compatibility; version 3
// changes tip's type, to a decimal that NUMERIC cannot hold (scale 12),
// a change the tables cannot take until tip is widened to BIGNUMERIC.
var avroSchemas = map[int]string{
	1: avroSchema(""),
	2: avroSchema(`,
  {"name":"loyalty_tier","type":["null","string"],"default":null},
  {"name":"tip","type":["null",{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}],"default":null}`),
	3: avroSchema(`,
  {"name":"loyalty_tier","type":["null","string"],"default":null},
  {"name":"tip","type":["null",{"type":"bytes","logicalType":"decimal","precision":40,"scale":12}],"default":null}`),
}

func avroSchema(more string) string {
	var b strings.Builder
	b.WriteString(`{"type":"record","name":"Payment","namespace":"paystream.simulator","fields":[
  {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}}`)
	for _, f := range payment.Fields {
		switch {
		case f.Kind != payment.KindText:
		case f.Required:
			fmt.Fprintf(&b, ",\n  {\"name\":%q,\"type\":\"string\"}", f.Name)
		default:
			fmt.Fprintf(&b, ",\n  {\"name\":%q,\"type\":[\"null\",\"string\"],\"default\":null}", f.Name)
		}
	}
	b.WriteString(more)
	b.WriteString("]}")
	return b.String()
}

// AvroVersions are the schema versions the simulator can write, in Avro
// and in Protobuf.
func AvroVersions() []int { return []int{1, 2, 3} }

// NewEncoder is NewAvro or NewProtobuf, by format.
func NewEncoder(ctx context.Context, format string, reg Registrar, topic string, versions []int) (Encoder, error) {
	switch format {
	case "avro":
		return NewAvro(ctx, reg, topic, versions)
	case "protobuf":
		return NewProtobuf(ctx, reg, topic, versions)
	}
	return nil, fmt.Errorf("no format %q: avro or protobuf", format)
}

// Registrar registers a schema under a subject and returns its ID
// (registry.Client).
type Registrar interface {
	Register(ctx context.Context, subject string, s sr.Schema) (int, error)
}

// Avro writes the simulator's events in the Schema Registry wire format,
// each version's schema registered under the topic's subject.
type Avro struct {
	versions []int
	schemas  map[int]avro.Schema
	ids      map[int]int
}

// NewAvro registers the schemas of versions with the registry cl under
// <topic>-value (a schema registered before keeps its ID) and returns an
// encoder that writes record n with versions[n % len(versions)].
func NewAvro(ctx context.Context, reg Registrar, topic string, versions []int) (*Avro, error) {
	a := &Avro{versions: versions, schemas: map[int]avro.Schema{}, ids: map[int]int{}}
	for _, v := range versions {
		text, ok := avroSchemas[v]
		if !ok {
			return nil, fmt.Errorf("no Avro schema version %d; the simulator writes %v", v, AvroVersions())
		}
		s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("avro schema version %d: %w", v, err)
		}
		id, err := reg.Register(ctx, topic+"-value", sr.Schema{Schema: text, Type: sr.TypeAvro})
		if err != nil {
			return nil, fmt.Errorf("register Avro schema version %d under %s-value: %w", v, topic, err)
		}
		a.schemas[v], a.ids[v] = s, id
	}
	return a, nil
}

// Encode rewrites record n's JSON value in Avro when it is an event the
// contract parses; other records (malformed, invalid) stay as they are,
// JSON beside Avro on one topic, as a producer mid-migration writes.
func (a *Avro) Encode(n int, value []byte) ([]byte, error) {
	e, err := payment.Parse(value)
	if err != nil {
		return value, nil
	}
	v := a.versions[n%len(a.versions)]
	amount, ok := new(big.Rat).SetString(e.Amount.String())
	if !ok {
		return nil, fmt.Errorf("amount %s is not a decimal", e.Amount)
	}
	// The contract's text fields, by their JSON names; an absent
	// optional one is null.
	var fields map[string]any
	wire, _ := json.Marshal(payment.ToWire(&e)) // only strings: cannot fail
	if err := json.Unmarshal(wire, &fields); err != nil {
		return nil, err
	}
	for _, f := range payment.Fields {
		if _, ok := fields[f.Name]; !ok {
			fields[f.Name] = nil
		}
	}
	fields["event_time"], fields["amount"] = e.EventTime, amount
	if v >= 2 {
		fields["loyalty_tier"], fields["tip"] = V2Fields(e.TransactionID)
	}
	body, err := avro.Marshal(a.schemas[v], fields)
	if err != nil {
		return nil, fmt.Errorf("encode Avro version %d: %w", v, err)
	}
	out := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(out[1:], uint32(a.ids[v]))
	return append(out, body...), nil
}

// V2Fields are the values a version 2 record of a transaction carries in
// the fields version 2 added: a pure function of its ID, so that a
// duplicate carries its original's. Every fifth has neither.
func V2Fields(transactionID string) (loyaltyTier any, tip any) {
	h := fnv.New32a()
	h.Write([]byte(transactionID))
	n := h.Sum32()
	if n%5 == 0 {
		return nil, nil
	}
	return []string{"bronze", "silver", "gold"}[n%3], big.NewRat(int64(n%1000), 100)
}
