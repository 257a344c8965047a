package payment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	r := fieldReader{fields: fields}
	e := Event{
		TransactionID:    r.str("transaction_id", required, checkID(maxTransactionIDLen)),
		EventTime:        r.timestamp("event_time"),
		Currency:         r.str("currency", required, checkCurrency),
		CustomerID:       r.str("customer_id", required, checkID(maxIDLen)),
		MerchantID:       r.str("merchant_id", required, checkID(maxIDLen)),
		MerchantCategory: r.str("merchant_category", optional, checkDigits(4)),
		CardID:           r.str("card_id", required, checkID(maxIDLen)),
		CardLast4:        r.str("card_last4", optional, checkDigits(4)),
		CardCountry:      r.str("card_country", optional, checkCountry),
		PaymentMethod:    r.str("payment_method", required, checkOneOf(PaymentMethods)),
		Status:           r.str("status", required, checkOneOf(Statuses)),
		Region:           r.str("region", optional, checkRegion),
		Country:          r.str("country", optional, checkCountry),
		DeviceID:         r.str("device_id", optional, checkID(maxIDLen)),
		DeviceType:       r.str("device_type", optional, checkOneOf(DeviceTypes)),
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
var knownFields = []string{
	"transaction_id", "event_time", "amount", "currency", "customer_id",
	"merchant_id", "merchant_category", "card_id", "card_last4",
	"card_country", "payment_method", "status", "region", "country",
	"device_id", "device_type", "ip_address",
}

// splitObject checks that raw is exactly one JSON object and returns its
// known fields' raw values and its unknown fields re-assembled as an object.
// A name that appears twice is rejected: which of two amounts was meant is
// not ours to guess.
func splitObject(raw []byte) (map[string]json.RawMessage, json.RawMessage, error) {
	malformed := func(detail string) error {
		return &Error{Reason: ReasonMalformedJSON, Detail: detail}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, malformed("not a JSON value")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, malformed("not a JSON object")
	}
	fields := make(map[string]json.RawMessage, len(knownFields))
	seen := make(map[string]bool, len(knownFields))
	var extra bytes.Buffer
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, malformed("broken object")
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, nil, malformed("broken value")
		}
		if seen[name] {
			return nil, nil, &Error{Reason: ReasonInvalidField, Field: name, Detail: "appears more than once"}
		}
		seen[name] = true
		if slices.Contains(knownFields, name) {
			fields[name] = value
			continue
		}
		if extra.Len() == 0 {
			extra.WriteByte('{')
		} else {
			extra.WriteByte(',')
		}
		key, _ := json.Marshal(name)
		extra.Write(key)
		extra.WriteByte(':')
		extra.Write(value)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, malformed("broken object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, malformed("data after the object")
	}
	if extra.Len() == 0 {
		return fields, nil, nil
	}
	extra.WriteByte('}')
	return fields, json.RawMessage(extra.Bytes()), nil
}

type presence bool

const (
	required presence = true
	optional presence = false
)

// fieldReader reads fields in a fixed order and keeps the first error, so
// a record with several problems always reports the same one.
type fieldReader struct {
	fields map[string]json.RawMessage
	err    error
}

func (r *fieldReader) fail(reason Reason, field, detail string) {
	if r.err == nil {
		r.err = &Error{Reason: reason, Field: field, Detail: detail}
	}
}

// raw returns the field's JSON value, or nil when absent or null.
func (r *fieldReader) raw(name string) json.RawMessage {
	v := r.fields[name]
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
	var s string
	if v[0] != '"' || json.Unmarshal(v, &s) != nil {
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

func (r *fieldReader) timestamp(name string) time.Time {
	s := r.str(name, required, func(s string) error {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return errors.New("must be an RFC 3339 timestamp")
		}
		// BigQuery's TIMESTAMP range; an offset can push year 0001 or
		// 9999 outside it once converted to UTC.
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return errors.New("outside years 0001-9999 in UTC")
		}
		return nil
	})
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t.UTC()
}

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
		if json.Unmarshal(v, &text) != nil {
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
