// Package registry reads records in the Schema Registry wire format: a
// zero byte, the writer schema's 4-byte ID, then the record encoded with
// that schema (Avro). It fetches each schema by ID from a
// Confluent-compatible registry once, judges it against the event contract
// once, and turns each record into the JSON object the contract parses
// (payment.Parse), so one set of rules judges every format.
package registry

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/payment"
)

// headerLen is the wire format's header: the magic byte and the ID.
const headerLen = 5

// Framed says whether a record value is in the wire format. JSON records
// start with '{' (or space), never with a zero byte, so both can share a
// topic.
func Framed(value []byte) bool { return len(value) > 0 && value[0] == 0 }

// SchemaID reads a framed value's schema ID; ok is false when the value is
// shorter than the header.
func SchemaID(value []byte) (id int, ok bool) {
	if len(value) < headerLen {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(value[1:headerLen])), true
}

// ErrUnknownSchema: the registry answered that it has no schema of that
// ID. Any other failure to fetch a schema is the registry's trouble, not
// the record's, and is returned as it is, to be retried.
var ErrUnknownSchema = errors.New("the schema registry has no schema of this ID")

// Client fetches schemas by ID from a Schema Registry and keeps them: a
// registry never changes the schema of an ID, so one fetch serves the
// worker's life.
type Client struct {
	sr      *sr.Client
	subject string // <topic>-value: the version named in rejections
	mu      sync.Mutex
	byID    map[int]*Schema
}

// Options are how to reach a registry.
type Options struct {
	URL string
	// Username and Password are basic auth (Confluent Cloud: the API key
	// and secret); empty: none.
	Username, Password string
	// TLS, when set, is the TLS configuration of https URLs (a CA file's
	// roots).
	TLS *tls.Config
	// Topic names the subject whose versions rejections cite
	// (TopicNameStrategy: <topic>-value).
	Topic string
}

// New makes a client. It does not dial: a registry that is down now is
// waited for by the batches that need it.
func New(o Options) (*Client, error) {
	if o.URL == "" {
		return nil, errors.New("schema registry: no URL")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = o.TLS
	opts := []sr.ClientOpt{sr.URLs(o.URL), sr.UserAgent("paystream"),
		sr.HTTPClient(&http.Client{Transport: transport, Timeout: 10 * time.Second})}
	if o.Username != "" || o.Password != "" {
		opts = append(opts, sr.BasicAuth(o.Username, o.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	return &Client{sr: cl, subject: o.Topic + "-value", byID: map[int]*Schema{}}, nil
}

// Schema is one writer schema, judged against the event contract.
type Schema struct {
	ID      int
	Subject string // "" when the registry names none
	Version int
	Type    string // AVRO, PROTOBUF or JSON
	// reject, when set, is every record's rejection: the schema lacks a
	// required field, gives one a type the contract cannot read, or is of
	// a kind paystream does not read.
	reject *payment.Error
	avro   avroRecord
	proto  *protoFile // a Protobuf schema; nil for Avro
}

// Schema returns the schema of id: from the worker's cache, else from the
// registry. ErrUnknownSchema when the registry has none of that ID; any
// other error is transient.
func (c *Client) Schema(ctx context.Context, id int) (*Schema, error) {
	c.mu.Lock()
	s, ok := c.byID[id]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	got, err := c.sr.SchemaByID(ctx, id)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("schema ID %d: %w", id, ErrUnknownSchema)
		}
		return nil, fmt.Errorf("schema registry: schema ID %d: %w", id, err)
	}
	s = &Schema{ID: id, Type: got.Type.String()}
	// The subject and version only name the schema in rejections; a
	// registry without this endpoint (older ones) still serves the schema.
	if versions, err := c.sr.SchemaVersionsByID(ctx, id); err == nil {
		s.Subject, s.Version = pickVersion(versions, c.subject)
	}
	s.judge(got)
	c.mu.Lock()
	c.byID[id] = s
	c.mu.Unlock()
	return s, nil
}

// Register registers s under subject, as a producer does before writing
// with it, and returns its ID; a schema registered before keeps its ID.
func (c *Client) Register(ctx context.Context, subject string, s sr.Schema) (int, error) {
	got, err := c.sr.CreateSchema(ctx, subject, s)
	if err != nil {
		return 0, fmt.Errorf("schema registry: register under %s: %w", subject, err)
	}
	return got.ID, nil
}

// pickVersion is the topic's subject's version of a schema, else the
// first the registry lists.
func pickVersion(versions []sr.SubjectVersion, subject string) (string, int) {
	if len(versions) == 0 {
		return "", 0
	}
	if i := slices.IndexFunc(versions, func(v sr.SubjectVersion) bool { return v.Subject == subject }); i >= 0 {
		return versions[i].Subject, versions[i].Version
	}
	return versions[0].Subject, versions[0].Version
}

func notFound(err error) bool {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	// 40403: schema not found. A 404 without a registry error code is a
	// wrong URL or a proxy, which must not turn records into rejections.
	return re.StatusCode == http.StatusNotFound && re.ErrorCode == 40403
}

// String names the schema in rejections and logs: subject, version, ID.
func (s *Schema) String() string {
	if s.Subject == "" {
		return fmt.Sprintf("schema ID %d", s.ID)
	}
	return fmt.Sprintf("%s version %d (schema ID %d)", s.Subject, s.Version, s.ID)
}

// judge decides, once per schema, whether its records can meet the
// contract: every required field present, every contract field of a type
// read exactly.
func (s *Schema) judge(got sr.Schema) {
	if got.Type != sr.TypeAvro && got.Type != sr.TypeProtobuf {
		s.reject = &payment.Error{Reason: payment.ReasonSchemaUnsupported, Detail: fmt.Sprintf("%s is a %s schema; paystream reads Avro, Protobuf and JSON records", s, got.Type)}
		return
	}
	if len(got.References) > 0 {
		s.reject = &payment.Error{Reason: payment.ReasonSchemaUnsupported, Detail: fmt.Sprintf("%s references other schemas, which paystream does not resolve", s)}
		return
	}
	if got.Type == sr.TypeProtobuf {
		// Its messages are judged one by one, as records name them.
		var err error
		if s.proto, err = compileProto(got.Schema); err != nil {
			s.reject = &payment.Error{Reason: payment.ReasonSchemaUnsupported, Detail: fmt.Sprintf("%s: %v", s, err)}
		}
		return
	}
	rec, err := parseAvro(got.Schema)
	if err != nil {
		s.reject = &payment.Error{Reason: payment.ReasonSchemaUnsupported, Detail: fmt.Sprintf("%s: %v", s, err)}
		return
	}
	if s.avro, err = compileAvro(rec); err != nil {
		s.reject = &payment.Error{Reason: payment.ReasonSchemaUnsupported, Detail: fmt.Sprintf("%s: %v", s, err)}
		return
	}
	for _, f := range payment.Fields {
		field := fieldNamed(rec, f.Name)
		if field == nil {
			if f.Required {
				s.reject = &payment.Error{Reason: payment.ReasonSchemaMissingField, Field: f.Name,
					Detail: fmt.Sprintf("%s has no field %s, which the contract requires", s, f.Name)}
				return
			}
			continue
		}
		if t := avroTypeName(field.Type()); !readsAs(f.Kind, t) {
			s.reject = &payment.Error{Reason: payment.ReasonSchemaTypeChanged, Field: f.Name,
				Detail: fmt.Sprintf("%s gives %s the type %s; the contract reads %s", s, f.Name, t, kindName(f.Kind))}
			return
		}
	}
}

func fieldNamed(rec *avro.RecordSchema, name string) *avro.Field {
	for _, f := range rec.Fields() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}

// avroTypeName names a field's type as the contract judges it: a nullable
// union by its other branch (null is then an absent value), a logical
// type as base.logical.
func avroTypeName(s avro.Schema) string {
	if u, ok := s.(*avro.UnionSchema); ok {
		types := u.Types()
		if u.Nullable() && len(types) == 2 {
			_, i := u.Indices()
			return avroTypeName(types[i])
		}
		names := make([]string, len(types))
		for i, t := range types {
			names[i] = avroTypeName(t)
		}
		return "union[" + strings.Join(names, ",") + "]"
	}
	if r, ok := s.(*avro.RefSchema); ok {
		return avroTypeName(r.Schema())
	}
	name := string(s.Type())
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		name += "." + string(l.Logical().Type())
	}
	return name
}

// readsAs says whether the contract reads a kind of field exactly from an
// Avro type.
func readsAs(k payment.FieldKind, t string) bool {
	switch k {
	case payment.KindAmount:
		return t == "string" || t == "bytes.decimal" || t == "fixed.decimal"
	case payment.KindTime:
		return t == "string" || t == "long.timestamp-millis" || t == "long.timestamp-micros"
	default:
		return t == "string" || t == "string.uuid" || t == "enum"
	}
}

func kindName(k payment.FieldKind) string {
	switch k {
	case payment.KindAmount:
		return "string or decimal"
	case payment.KindTime:
		return "string or timestamp-millis/micros"
	default:
		return "string or enum"
	}
}

// Event reads a framed record into the event contract (Read, without
// its columns).
func (s *Schema) Event(value []byte) (payment.Event, error) {
	ev, _, err := s.Read(value)
	return ev, err
}

// Read reads a framed record into the event contract, judged by its
// rules (payment.ParseFields): the contract's fields by name, the
// schema's other fields kept in Extra, and the typed columns those
// fields have (contract.Column, From unset). A rejection is a
// *payment.Error.
func (s *Schema) Read(value []byte) (payment.Event, []contract.Column, error) {
	if s.reject != nil {
		return payment.Event{}, nil, s.reject
	}
	var fields *payment.FieldValues
	var extra []byte
	var err error
	columns := s.avro.columns
	if s.proto != nil {
		fields, extra, columns, err = s.protoEvent(value)
	} else {
		fields, extra, err = s.avro.fields(value[headerLen:])
	}
	var pe *payment.Error
	if errors.As(err, &pe) {
		return payment.Event{}, nil, pe // the message the record names cannot be read
	}
	if err != nil {
		return payment.Event{}, nil, &payment.Error{Reason: payment.ReasonSchemaUndecodable, Detail: fmt.Sprintf("does not decode with %s: %v", s, err)}
	}
	ev, err := payment.ParseFields(fields, extra)
	return ev, columns, err
}

// columnName says whether a schema's field of this name may have a typed
// column: not one of the DDL's (nor one differing only in case, which
// BigQuery takes for the same column), and a name BigQuery allows.
func columnName(name string) bool {
	if name == "" || len(name) > 300 || slices.ContainsFunc(contract.DDLColumns, func(c string) bool { return strings.EqualFold(c, name) }) {
		return false
	}
	lower := strings.ToLower(name)
	for _, reserved := range []string{"_table_", "_file_", "_partition", "_row_timestamp", "__root__", "_colidentifier"} {
		if strings.HasPrefix(lower, reserved) {
			return false
		}
	}
	for i, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// decimalType is the BigQuery type that holds a decimal of precision and
// scale exactly: NUMERIC (38 digits, 9 after the point) when it fits,
// else BIGNUMERIC.
func decimalType(precision, scale int) string {
	if scale <= 9 && precision-scale <= 29 {
		return "NUMERIC"
	}
	return "BIGNUMERIC"
}
