package simulation

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paystream/paystream/internal/payment"
)

// protoSchema is the simulator's Protobuf payment schema of a version:
// event_time a Timestamp, the amount a decimal string (Protobuf has no
// decimal); version 2 adds loyalty_tier and tip_cents (the tip in minor
// units, an int64, as Protobuf producers write money); version 3 makes
// tip_cents a double, which an INT64 column cannot take until it is
// widened to FLOAT64.
func protoSchema(version int) string {
	var b strings.Builder
	b.WriteString("syntax = \"proto3\";\npackage paystream.simulator;\nimport \"google/protobuf/timestamp.proto\";\n\nmessage Payment {\n")
	b.WriteString("  google.protobuf.Timestamp event_time = 1;\n  string amount = 2;\n")
	n := 3
	for _, f := range payment.Fields {
		if f.Kind == payment.KindText {
			fmt.Fprintf(&b, "  string %s = %d;\n", f.Name, n)
			n++
		}
	}
	switch version {
	case 2:
		b.WriteString("  string loyalty_tier = 30;\n  int64 tip_cents = 31;\n")
	case 3:
		b.WriteString("  string loyalty_tier = 30;\n  double tip_cents = 31;\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// Protobuf writes the simulator's events as Protobuf records in the
// Schema Registry wire format, as Confluent's serializer does: the schema
// ID, the message index path ([0]: one zero byte), the message.
type Protobuf struct {
	versions []int
	msgs     map[int]protoreflect.MessageDescriptor
	ids      map[int]int
}

// NewProtobuf registers the schemas of versions under <topic>-value and
// returns an encoder that writes record n with versions[n % len].
func NewProtobuf(ctx context.Context, reg Registrar, topic string, versions []int) (*Protobuf, error) {
	p := &Protobuf{versions: versions, msgs: map[int]protoreflect.MessageDescriptor{}, ids: map[int]int{}}
	for _, v := range versions {
		if v < 1 || v > 3 {
			return nil, fmt.Errorf("no Protobuf schema version %d; the simulator writes %v", v, AvroVersions())
		}
		text := protoSchema(v)
		c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			Accessor: protocompile.SourceAccessorFromMap(map[string]string{"payment.proto": text}),
		})}
		files, err := c.Compile(ctx, "payment.proto")
		if err != nil {
			return nil, fmt.Errorf("protobuf schema version %d: %w", v, err)
		}
		id, err := reg.Register(ctx, topic+"-value", sr.Schema{Schema: text, Type: sr.TypeProtobuf})
		if err != nil {
			return nil, fmt.Errorf("register Protobuf schema version %d under %s-value: %w", v, topic, err)
		}
		p.msgs[v], p.ids[v] = files[0].Messages().Get(0), id
	}
	return p, nil
}

// Encode rewrites record n's JSON value as Protobuf when it is an event
// the contract parses; other records stay JSON, as Avro.Encode does.
func (p *Protobuf) Encode(n int, value []byte) ([]byte, error) {
	e, err := payment.Parse(value)
	if err != nil {
		return value, nil
	}
	v := p.versions[n%len(p.versions)]
	desc := p.msgs[v]
	msg := dynamicpb.NewMessage(desc)
	var fields map[string]string
	wire, _ := json.Marshal(payment.ToWire(&e)) // only strings: cannot fail
	if err := json.Unmarshal(wire, &fields); err != nil {
		return nil, err
	}
	delete(fields, "event_time")
	var cents *big.Rat
	if v >= 2 {
		if tier, tip := V2Fields(e.TransactionID); tier != nil {
			fields["loyalty_tier"] = tier.(string)
			cents = new(big.Rat).Mul(tip.(*big.Rat), big.NewRat(100, 1))
		}
	}
	for name, s := range fields {
		fd := desc.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return nil, fmt.Errorf("protobuf schema version %d has no field %s", v, name)
		}
		msg.Set(fd, protoreflect.ValueOfString(s))
	}
	msg.Set(desc.Fields().ByName("event_time"), protoreflect.ValueOfMessage(timestamppb.New(e.EventTime).ProtoReflect()))
	if cents != nil && cents.Sign() != 0 { // proto3: zero is absent
		if v == 3 {
			f, _ := cents.Float64()
			msg.Set(desc.Fields().ByName("tip_cents"), protoreflect.ValueOfFloat64(f))
		} else {
			msg.Set(desc.Fields().ByName("tip_cents"), protoreflect.ValueOfInt64(cents.Num().Int64()))
		}
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode Protobuf version %d: %w", v, err)
	}
	out := make([]byte, 6, 6+len(body)) // header, then the message index path [0]
	out[1], out[2], out[3], out[4] = byte(p.ids[v]>>24), byte(p.ids[v]>>16), byte(p.ids[v]>>8), byte(p.ids[v])
	return append(out, body...), nil
}
