package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/payment"
)

// protoFile is a Protobuf schema: a .proto file whose messages records
// name by their message indexes (Confluent's wire format puts them after
// the schema ID). Each message is judged against the contract the first
// time a record names it.
type protoFile struct {
	file protoreflect.FileDescriptor
	mu   sync.Mutex
	msgs map[string]*protoMessage // by message index path
}

// protoMessage is one message of a schema, judged.
type protoMessage struct {
	desc    protoreflect.MessageDescriptor
	fields  []protoField
	reject  *payment.Error
	columns []contract.Column // the typed columns of its new fields
}

type protoField struct {
	desc     protoreflect.FieldDescriptor
	key      []byte // "name":
	contract int    // place in payment.FieldValues, -1 for the others
}

// compileProto compiles a registry's .proto schema text. Imports of
// Google's well-known types resolve; any other import is a reference the
// registry would have to serve, which paystream does not.
func compileProto(text string) (*protoFile, error) {
	const name = "schema.proto"
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		Accessor: protocompile.SourceAccessorFromMap(map[string]string{name: text}),
	})}
	files, err := c.Compile(context.Background(), name)
	if err != nil {
		return nil, err
	}
	if files[0].Messages().Len() == 0 {
		return nil, errors.New("the schema has no message")
	}
	return &protoFile{file: files[0], msgs: map[string]*protoMessage{}}, nil
}

// messageIndexes reads the message index path after the schema ID: a
// zig-zag varint count, then that many indexes; a count of 0 is [0].
func messageIndexes(b []byte) (path []int, n int, err error) {
	count, k := binary.Varint(b)
	if k <= 0 {
		return nil, 0, errors.New("no message indexes after the schema ID")
	}
	n = k
	if count == 0 {
		return []int{0}, n, nil
	}
	if count < 0 || count > 32 {
		return nil, 0, errors.New("a message index path of an impossible length")
	}
	for range count {
		i, k := binary.Varint(b[n:])
		if k <= 0 || i < 0 || i > math.MaxInt32 {
			return nil, 0, errors.New("a message index that does not read")
		}
		path, n = append(path, int(i)), n+k
	}
	return path, n, nil
}

// message is the judged message at path, nil when the file has none.
func (f *protoFile) message(path []int, schema string) *protoMessage {
	key := fmt.Sprint(path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.msgs[key]; ok {
		return m
	}
	msgs := f.file.Messages()
	var desc protoreflect.MessageDescriptor
	for _, i := range path {
		if i >= msgs.Len() {
			return nil
		}
		desc = msgs.Get(i)
		msgs = desc.Messages()
	}
	m := &protoMessage{desc: desc}
	fields := desc.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		place := -1
		if c, ok := payment.FieldIndex(string(fd.Name())); ok {
			place = c
		}
		m.fields = append(m.fields, protoField{desc: fd, key: append(appendJSONString(nil, string(fd.Name())), ':'), contract: place})
		if place < 0 && columnName(string(fd.Name())) {
			m.columns = append(m.columns, contract.Column{Name: string(fd.Name()), Type: protoColumnType(fd)})
		}
	}
	for _, f := range payment.Fields {
		fd := fields.ByName(protoreflect.Name(f.Name))
		if fd == nil {
			if f.Required {
				m.reject = &payment.Error{Reason: payment.ReasonSchemaMissingField, Field: f.Name,
					Detail: fmt.Sprintf("%s message %s has no field %s, which the contract requires", schema, desc.FullName(), f.Name)}
				break
			}
			continue
		}
		if t := protoTypeName(fd); !protoReadsAs(f.Kind, t) {
			m.reject = &payment.Error{Reason: payment.ReasonSchemaTypeChanged, Field: f.Name,
				Detail: fmt.Sprintf("%s message %s gives %s the type %s; the contract reads %s", schema, desc.FullName(), f.Name, t, kindName(f.Kind))}
			break
		}
	}
	f.msgs[key] = m
	return m
}

// protoColumnType is the BigQuery type of a field's typed column
// (docs/formats.md, "Typed columns").
func protoColumnType(fd protoreflect.FieldDescriptor) string {
	if fd.IsList() || fd.IsMap() {
		return "JSON"
	}
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.EnumKind:
		return "STRING"
	case protoreflect.BytesKind:
		return "BYTES"
	case protoreflect.BoolKind:
		return "BOOL"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind,
		protoreflect.Sfixed64Kind, protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "INT64"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "NUMERIC" // past INT64's range
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "FLOAT64"
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if fd.Message().FullName() == timestampName {
			return "TIMESTAMP"
		}
	}
	return "JSON"
}

func protoTypeName(fd protoreflect.FieldDescriptor) string {
	name := fd.Kind().String()
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		name = string(fd.Message().FullName())
	case protoreflect.EnumKind:
		name = "enum"
	}
	if fd.IsMap() {
		return "map"
	}
	if fd.IsList() {
		return "repeated " + name
	}
	return name
}

const timestampName = "google.protobuf.Timestamp"

func protoReadsAs(k payment.FieldKind, t string) bool {
	switch k {
	case payment.KindAmount:
		return t == "string"
	case payment.KindTime:
		return t == "string" || t == timestampName
	default:
		return t == "string" || t == "enum"
	}
}

// read reads a record's Protobuf message into the contract's fields and
// the others as a JSON object, as avroRecord.fields does. A field a
// message does not hold (proto3: at its default) is absent.
func (m *protoMessage) read(b []byte) (*payment.FieldValues, []byte, error) {
	msg := dynamicpb.NewMessage(m.desc)
	if err := (proto.UnmarshalOptions{RecursionLimit: maxDepth}).Unmarshal(b, msg); err != nil {
		return nil, nil, err
	}
	var out payment.FieldValues
	var extra []byte
	for _, f := range m.fields {
		if !msg.Has(f.desc) && !(f.contract >= 0 && f.desc.Kind() == protoreflect.EnumKind && !f.desc.HasPresence()) {
			// Absent, or a proto3 scalar at its default: an empty
			// string is a missing one. A contract enum at its default
			// is its first value, which may be a real one (USD = 0).
			continue
		}
		if f.contract >= 0 {
			v, err := appendProto(nil, f.desc, msg.Get(f.desc))
			if err != nil {
				return nil, nil, fmt.Errorf("field %s: %w", f.desc.Name(), err)
			}
			out[f.contract] = v
			continue
		}
		if len(extra) == 0 {
			extra = append(extra, '{')
		} else {
			extra = append(extra, ',')
		}
		extra = append(extra, f.key...)
		var err error
		if extra, err = appendProto(extra, f.desc, msg.Get(f.desc)); err != nil {
			return nil, nil, fmt.Errorf("field %s: %w", f.desc.Name(), err)
		}
	}
	if len(extra) > 0 {
		extra = append(extra, '}')
	}
	return &out, extra, nil
}

// appendProto appends a field's value as JSON: the values of Avro's table
// in docs/formats.md, a Timestamp as RFC 3339, other messages as
// protojson objects.
func appendProto(out []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	switch {
	case fd.IsMap():
		out = append(out, '{')
		var err error
		first := true
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			if !first {
				out = append(out, ',')
			}
			first = false
			out = appendJSONString(out, k.String())
			out = append(out, ':')
			out, err = appendScalar(out, fd.MapValue(), mv)
			return err == nil
		})
		return append(out, '}'), err
	case fd.IsList():
		out = append(out, '[')
		l := v.List()
		for i := range l.Len() {
			if i > 0 {
				out = append(out, ',')
			}
			var err error
			if out, err = appendScalar(out, fd, l.Get(i)); err != nil {
				return nil, err
			}
		}
		return append(out, ']'), nil
	}
	return appendScalar(out, fd, v)
}

func appendScalar(out []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return appendJSONString(out, v.String()), nil
	case protoreflect.BytesKind:
		return appendBase64(out, v.Bytes()), nil
	case protoreflect.BoolKind:
		return strconv.AppendBool(out, v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(out, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(out, v.Uint(), 10), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.AppendQuote(out, strconv.FormatFloat(f, 'g', -1, 64)), nil
		}
		return strconv.AppendFloat(out, f, 'g', -1, 64), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendJSONString(out, string(ev.Name())), nil
		}
		return strconv.AppendInt(out, int64(v.Enum()), 10), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		msg := v.Message()
		if msg.Descriptor().FullName() == timestampName {
			fields := msg.Descriptor().Fields()
			secs, nanos := msg.Get(fields.ByName("seconds")).Int(), msg.Get(fields.ByName("nanos")).Int()
			if nanos < 0 || nanos >= 1e9 {
				return nil, errors.New("a Timestamp's nanos out of range")
			}
			return appendTime(out, time.Unix(secs, nanos)), nil
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg.Interface())
		if err != nil {
			return nil, err
		}
		return append(out, b...), nil
	}
	return nil, fmt.Errorf("the Protobuf kind %s is not supported", fd.Kind())
}

// protoEvent reads a framed Protobuf record: its message indexes, then the
// message they name.
func (s *Schema) protoEvent(value []byte) (*payment.FieldValues, []byte, []contract.Column, error) {
	body := value[headerLen:]
	path, n, err := messageIndexes(body)
	if err != nil {
		return nil, nil, nil, err
	}
	m := s.proto.message(path, s.String())
	if m == nil {
		return nil, nil, nil, fmt.Errorf("message index path %v is not in the schema", strings.Trim(fmt.Sprint(path), "[]"))
	}
	if m.reject != nil {
		return nil, nil, nil, m.reject
	}
	fields, extra, err := m.read(body[n:])
	return fields, extra, m.columns, err
}
