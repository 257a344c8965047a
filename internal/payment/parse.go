package payment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// Field length limits. The dedup key is the tightest: it is also the Kafka
// record key and a BigQuery clustering column.
const (
	maxTransactionIDLen = 64
	maxIDLen            = 128
	maxRegionLen        = 64
)

// Parse reads one Kafka record value and validates it against the event
// contract. It is a pure function of the bytes: the same record always gets
// the same answer, which lets every retry of a batch decide identically.
// A rejection is an *Error with a Reason; no field value is ever in it.
func Parse(raw []byte) (Event, error) {
	if !utf8.Valid(raw) {
		return Event{}, &Error{Reason: ReasonMalformedJSON, Detail: "not valid UTF-8"}
	}
	fields, extra, err := splitObject(raw)
	if err != nil {
		return Event{}, err
	}
	return ParseFields(&fields, extra)
}

// FieldValues holds a record's contract fields as JSON values, by their place
// in Fields (FieldIndex); nil when absent. Formats other than JSON
// (package registry) fill it from their own bytes, so that one set of
// rules (ParseFields) judges every format.
type FieldValues = fieldValues

// FieldIndex is a contract field's place in FieldValues.
func FieldIndex(name string) (int, bool) {
	i, ok := knownIndex[name]
	return i, ok
}

// ParseFields validates a record's contract fields, each a JSON value,
// against the event contract; extra is the record's other fields as a
// JSON object, or nil. Parse is splitObject and then this.
func ParseFields(fields *FieldValues, extra json.RawMessage) (Event, error) {
	r := fieldReader{fields: fields}
	e := Event{
		TransactionID:    r.str("transaction_id", required, checkTransactionID),
		EventTime:        r.timestamp("event_time"),
		Currency:         r.str("currency", required, checkCurrency),
		CustomerID:       r.str("customer_id", required, checkOtherID),
		MerchantID:       r.str("merchant_id", required, checkOtherID),
		MerchantCategory: r.str("merchant_category", optional, checkFourDigits),
		CardID:           r.str("card_id", required, checkOtherID),
		CardLast4:        r.str("card_last4", optional, checkFourDigits),
		CardCountry:      r.str("card_country", optional, checkCountry),
		PaymentMethod:    r.str("payment_method", required, checkPaymentMethod),
		Status:           r.str("status", required, checkStatus),
		Region:           r.str("region", optional, checkRegion),
		Country:          r.str("country", optional, checkCountry),
		DeviceID:         r.str("device_id", optional, checkOtherID),
		DeviceType:       r.str("device_type", optional, checkDeviceType),
		IPAddress:        r.str("ip_address", optional, checkIP),
		Extra:            extra,
	}
	// The amount is read last because its rule depends on the currency.
	e.Amount = r.amount("amount", e.Currency)
	if r.err != nil {
		return Event{}, r.err
	}
	return e, nil
}

// knownFields are the contract's field names; anything else goes to Extra.
var knownFields = func() []string {
	names := make([]string, len(Fields))
	for i, f := range Fields {
		names[i] = f.Name
	}
	return names
}()

// knownIndex maps a known field's name to its place in knownFields.
var knownIndex = func() map[string]int {
	m := make(map[string]int, len(knownFields))
	for i, name := range knownFields {
		m[name] = i
	}
	return m
}()

// fieldValues holds each known field's raw JSON value by its index in
// knownFields; nil when absent.
type fieldValues [17]json.RawMessage

// splitObject checks that raw is exactly one JSON object and returns its
// known fields' raw values and its unknown fields re-assembled as an object.
// A name that appears twice is rejected: which of two amounts was meant is
// not ours to guess.
//
// It scans the bytes by hand: the parser runs for every record of every
// batch, and encoding/json's Decoder cost ~60µs and ~280 allocations a
// record. The fuzzer checks it against that first version
// (referenceSplitObject). The values it returns alias raw.
func splitObject(raw []byte) (fieldValues, json.RawMessage, error) {
	var fields fieldValues
	malformed := func(detail string) (fieldValues, json.RawMessage, error) {
		return fieldValues{}, nil, &Error{Reason: ReasonMalformedJSON, Detail: detail}
	}
	s := scanner{b: raw}
	s.skipSpace()
	if !s.more() {
		return malformed("not a JSON value")
	}
	if s.b[s.i] != '{' {
		if !s.value() {
			return malformed("not a JSON value")
		}
		return malformed("not a JSON object")
	}
	s.i++
	var (
		seen  map[string]bool // unknown names, only when there are any
		extra []byte
	)
	s.skipSpace()
	if s.more() && s.b[s.i] == '}' {
		s.i++
	} else {
		for {
			s.skipSpace()
			key, escaped, ok := s.str()
			if !ok {
				return malformed("broken object")
			}
			s.skipSpace()
			if !s.more() || s.b[s.i] != ':' {
				return malformed("broken value")
			}
			s.i++
			s.skipSpace()
			valueStart := s.i
			if !s.value() {
				return malformed("broken value")
			}
			value := json.RawMessage(s.b[valueStart:s.i])
			var name string
			if escaped {
				name, _ = unquote(key) // str validated it
			}
			idx, known := 0, false
			if escaped {
				idx, known = knownIndex[name]
			} else {
				idx, known = knownIndex[string(key[1:len(key)-1])]
			}
			switch {
			case known && fields[idx] != nil:
				return fieldValues{}, nil, &Error{Reason: ReasonInvalidField, Field: knownFields[idx], Detail: "appears more than once"}
			case known:
				fields[idx] = value
			default:
				if !escaped {
					name = string(key[1 : len(key)-1])
				}
				if seen[name] {
					return fieldValues{}, nil, &Error{Reason: ReasonInvalidField, Field: name, Detail: "appears more than once"}
				}
				if seen == nil {
					seen = map[string]bool{}
				}
				seen[name] = true
				if extra == nil {
					extra = append(extra, '{')
				} else {
					extra = append(extra, ',')
				}
				quoted, _ := json.Marshal(name)
				extra = append(extra, quoted...)
				extra = append(extra, ':')
				extra = append(extra, value...)
			}
			s.skipSpace()
			if !s.more() {
				return malformed("broken object")
			}
			if s.b[s.i] == ',' {
				s.i++
				continue
			}
			if s.b[s.i] != '}' {
				return malformed("broken object")
			}
			s.i++
			break
		}
	}
	s.skipSpace()
	if s.more() {
		return malformed("data after the object")
	}
	if extra == nil {
		return fields, nil, nil
	}
	return fields, append(extra, '}'), nil
}

// scanner is a cursor over one record's bytes, which are valid UTF-8.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) more() bool { return s.i < len(s.b) }

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str scans the JSON string at the cursor and returns it with its quotes,
// and whether it holds escapes.
func (s *scanner) str() (raw []byte, escaped, ok bool) {
	start := s.i
	if !s.more() || s.b[s.i] != '"' {
		return nil, false, false
	}
	for s.i++; s.i < len(s.b); {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start:s.i], escaped, true
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) || !isHex4(s.b[s.i+2:s.i+6]) {
					return nil, false, false
				}
				s.i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			s.i++
		}
	}
	return nil, false, false
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// value scans one JSON value at the cursor.
func (s *scanner) value() bool {
	if !s.more() {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '{' || c == '[':
		// Nested values are rare in payments (unknown fields only):
		// find the extent, then let encoding/json validate it.
		end := s.nestedEnd()
		if end < 0 || !json.Valid(s.b[s.i:end]) {
			return false
		}
		s.i = end
		return true
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// number scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	digits := func() bool {
		from := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > from
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return true
}

// nestedEnd returns the offset just past the object or array at the
// cursor, matching brackets outside strings, or -1.
func (s *scanner) nestedEnd() int {
	depth := 0
	for i := s.i; i < len(s.b); i++ {
		switch s.b[i] {
		case '"':
			for i++; i < len(s.b) && s.b[i] != '"'; i++ {
				if s.b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

type presence bool

const (
	required presence = true
	optional presence = false
)

// fieldReader reads fields in a fixed order and keeps the first error, so
// a record with several problems always reports the same one.
type fieldReader struct {
	fields *fieldValues
	err    error
}

func (r *fieldReader) fail(reason Reason, field, detail string) {
	if r.err == nil {
		r.err = &Error{Reason: reason, Field: field, Detail: detail}
	}
}

// raw returns the field's JSON value, or nil when absent or null.
func (r *fieldReader) raw(name string) json.RawMessage {
	v := r.fields[knownIndex[name]]
	if bytes.Equal(v, []byte("null")) {
		return nil
	}
	return v
}

func (r *fieldReader) str(name string, p presence, check func(string) error) string {
	if r.err != nil {
		return ""
	}
	v := r.raw(name)
	if v == nil {
		if p == required {
			r.fail(ReasonMissingField, name, "required")
		}
		return ""
	}
	s, ok := unquote(v)
	if !ok {
		r.fail(ReasonInvalidField, name, "must be a string")
		return ""
	}
	if s == "" {
		if p == required {
			r.fail(ReasonMissingField, name, "required, is empty")
		}
		return ""
	}
	if err := check(s); err != nil {
		r.fail(ReasonInvalidField, name, err.Error())
		return ""
	}
	return s
}

// unquote returns the JSON string v holds, for a v splitObject scanned.
func unquote(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true // no escapes to undo
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func (r *fieldReader) timestamp(name string) time.Time {
	s := r.str(name, required, acceptAny)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		r.fail(ReasonInvalidField, name, "must be an RFC 3339 timestamp")
		return time.Time{}
	}
	// BigQuery's TIMESTAMP range; an offset can push year 0001 or 9999
	// outside it once converted to UTC.
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		r.fail(ReasonInvalidField, name, "outside years 0001-9999 in UTC")
		return time.Time{}
	}
	return t.UTC()
}

func acceptAny(string) error { return nil }

// amount accepts a decimal string ("12.50") or a JSON number (12.5); the
// number's literal text is used, never a float conversion.
func (r *fieldReader) amount(name, currency string) Amount {
	if r.err != nil {
		return Amount{}
	}
	v := r.raw(name)
	if v == nil {
		r.fail(ReasonMissingField, name, "required")
		return Amount{}
	}
	var text string
	switch {
	case v[0] == '"':
		var ok bool
		if text, ok = unquote(v); !ok {
			r.fail(ReasonInvalidField, name, "must be a decimal string or number")
			return Amount{}
		}
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		text = string(v)
	default:
		r.fail(ReasonInvalidField, name, "must be a decimal string or number")
		return Amount{}
	}
	if text == "" {
		r.fail(ReasonMissingField, name, "required, is empty")
		return Amount{}
	}
	scale, _ := MinorUnits(currency)
	a, err := parseAmount(text, scale)
	if err != nil {
		r.fail(ReasonInvalidField, name, err.Error())
		return Amount{}
	}
	return a
}

// The field checks, built once: they run for every record.
var (
	checkTransactionID = checkID(maxTransactionIDLen)
	checkOtherID       = checkID(maxIDLen)
	checkFourDigits    = checkDigits(4)
	checkPaymentMethod = checkOneOf(PaymentMethods)
	checkStatus        = checkOneOf(Statuses)
	checkDeviceType    = checkOneOf(DeviceTypes)
)

func checkID(maxLen int) func(string) error {
	return func(s string) error {
		if n := utf8.RuneCountInString(s); n > maxLen {
			return fmt.Errorf("longer than %d characters", maxLen)
		}
		for _, c := range s {
			if unicode.IsControl(c) {
				return errors.New("contains a control character")
			}
		}
		first, _ := utf8.DecodeRuneInString(s)
		last, _ := utf8.DecodeLastRuneInString(s)
		if unicode.IsSpace(first) || unicode.IsSpace(last) {
			return errors.New("has leading or trailing white space")
		}
		return nil
	}
}

func checkCurrency(s string) error {
	if _, ok := MinorUnits(s); !ok {
		return errors.New("not a known ISO 4217 code")
	}
	return nil
}

func checkDigits(n int) func(string) error {
	return func(s string) error {
		if len(s) != n || !allDigits(s) {
			return fmt.Errorf("must be %d digits", n)
		}
		return nil
	}
}

func checkCountry(s string) error {
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return errors.New("must be an ISO 3166 alpha-2 code")
	}
	return nil
}

func checkRegion(s string) error {
	if len(s) > maxRegionLen {
		return fmt.Errorf("longer than %d characters", maxRegionLen)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return errors.New("may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

func checkIP(s string) error {
	if _, err := netip.ParseAddr(s); err != nil {
		return errors.New("not an IP address")
	}
	return nil
}

func checkOneOf(allowed []string) func(string) error {
	return func(s string) error {
		if !slices.Contains(allowed, s) {
			return fmt.Errorf("must be one of %v", allowed)
		}
		return nil
	}
}
