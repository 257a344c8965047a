// Package payment holds the payment event of the Kafka topic contract
// (docs/design.md §2): its fields, how a record's bytes are parsed and validated, and
// the reason codes a rejected record is filed under in ingest_errors.
package payment

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event is one accepted payment event. Strings that are optional in the
// contract are "" when absent.
type Event struct {
	TransactionID    string
	EventTime        time.Time // UTC
	Amount           Amount
	Currency         string
	CustomerID       string
	MerchantID       string
	MerchantCategory string
	CardID           string
	CardLast4        string
	CardCountry      string
	PaymentMethod    string
	Status           string
	Region           string
	Country          string
	DeviceID         string
	DeviceType       string
	IPAddress        string

	// Extra holds the record's unknown fields as a JSON object, nil when
	// there are none. Producers may add fields before we know them; keeping
	// them loses nothing and rejects nobody.
	Extra json.RawMessage
}

// Reason is the code a rejected record is filed under in ingest_errors.
// Operators filter and alert on these, so they never change meaning.
type Reason string

const (
	// ReasonMalformedJSON: the bytes are not one UTF-8 JSON object.
	ReasonMalformedJSON Reason = "malformed_json"
	// ReasonMissingField: a required field is absent, null or empty.
	ReasonMissingField Reason = "missing_field"
	// ReasonInvalidField: a field has the wrong type or breaks its rule.
	ReasonInvalidField Reason = "invalid_field"
	// ReasonLate: event_time behind the partition's watermark (docs/design.md §4);
	// quarantined, replayable by an operator.
	ReasonLate Reason = "late"
	// ReasonConflict: a transaction_id seen again inside the window with
	// another amount or currency.
	ReasonConflict Reason = "conflict"
)

// Error says why a record was rejected. Field is "" for whole-record
// problems. The message never includes field values, so it is safe to log:
// card and customer data must not reach logs.
type Error struct {
	Reason Reason
	Field  string
	Detail string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Reason, e.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", e.Reason, e.Field, e.Detail)
}

// ReasonOf returns the reason code of a parse error, or "" when err is not
// a rejection.
func ReasonOf(err error) Reason {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}

// Allowed values of the enumerated fields.
var (
	PaymentMethods = []string{"card", "wallet", "bank_transfer"}
	Statuses       = []string{"authorized", "captured", "declined", "refunded"}
	DeviceTypes    = []string{"mobile", "desktop", "tablet", "pos", "other"}
)

// FieldKind is what a contract field holds, whatever the record's format:
// the rules a schema's type for the field must meet (package registry).
type FieldKind int

const (
	KindText   FieldKind = iota // a string
	KindAmount                  // a decimal string or number, exact
	KindTime                    // an RFC 3339 string or a timestamp
)

// Field is one field of the event contract.
type Field struct {
	Name     string
	Required bool
	Kind     FieldKind
}

// Fields are the contract's fields, as Parse reads them.
var Fields = []Field{
	{"transaction_id", true, KindText}, {"event_time", true, KindTime}, {"amount", true, KindAmount},
	{"currency", true, KindText}, {"customer_id", true, KindText}, {"merchant_id", true, KindText},
	{"merchant_category", false, KindText}, {"card_id", true, KindText}, {"card_last4", false, KindText},
	{"card_country", false, KindText}, {"payment_method", true, KindText}, {"status", true, KindText},
	{"region", false, KindText}, {"country", false, KindText}, {"device_id", false, KindText},
	{"device_type", false, KindText}, {"ip_address", false, KindText},
}
