package payment

import (
	"fmt"
	"time"
)

// Limits of a Kafka record that the event contract adds to its fields.
// They are constants, not settings: every attempt and every worker must
// judge the same record the same way, forever.
const (
	// MaxRecordBytes bounds a record's value. A payment event is a few
	// hundred bytes; anything this large is a producer bug, and loading it
	// would crowd out its batch.
	MaxRecordBytes = 256 << 10
)

// More reason codes, for records that fail as Kafka records.
const (
	// ReasonOversized: the value is larger than MaxRecordBytes.
	ReasonOversized Reason = "oversized"
	// ReasonKeyMismatch: the record key is missing or is not the
	// transaction_id, so duplicates could land in another partition.
	ReasonKeyMismatch Reason = "key_mismatch"
)

// Reasons of records in the Schema Registry wire format that their schema
// does not let paystream read; each detail names the schema's subject,
// version and ID. They are decided per schema ID, so every record of one
// schema gets the same answer.
const (
	// ReasonSchemaUnknownID: the registry does not know the record's
	// schema ID.
	ReasonSchemaUnknownID Reason = "schema_unknown_id"
	// ReasonSchemaUnsupported: the schema is not one paystream reads (a
	// JSON Schema, or an Avro schema that is not a record).
	ReasonSchemaUnsupported Reason = "schema_unsupported"
	// ReasonSchemaMissingField: the schema lacks a field the contract
	// requires.
	ReasonSchemaMissingField Reason = "schema_missing_field"
	// ReasonSchemaTypeChanged: a contract field has a type the contract
	// cannot read exactly (an amount as a double, say).
	ReasonSchemaTypeChanged Reason = "schema_type_changed"
	// ReasonSchemaUndecodable: the bytes do not decode with the schema.
	ReasonSchemaUndecodable Reason = "schema_undecodable"
)

// Kafka timestamps are producers' clocks in milliseconds, and they lie:
// -1 (none), 0, seconds or microseconds written as milliseconds, and
// clients that overflow converting those (kafka-go writes a year-58,000
// time as one in 2188). One is trusted only within this century; the rest
// count as no timestamp (KafkaTime). A fixed window, not the wall clock,
// keeps judging a record a pure function of the log.
var (
	minKafkaTime = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	maxKafkaTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// KafkaTime returns a record's Kafka timestamp if it is one to trust: in
// years 2001 to 2099, so none, zero, negative, seconds-as-milliseconds
// and microseconds-as-milliseconds are out (and a trusted one always fits
// BigQuery's TIMESTAMP); otherwise ok is false.
func KafkaTime(timestamp time.Time) (t time.Time, ok bool) {
	if timestamp.Before(minKafkaTime) || !timestamp.Before(maxKafkaTime) {
		return time.Time{}, false
	}
	return timestamp.UTC(), true
}

// WatermarkTime is how far a valid record may move its partition's
// newest event time, and so the watermark: its event_time, but never past
// its Kafka timestamp, and nowhere without a timestamp to trust. Honest
// records happen before they are produced, so they move it as far as
// their event_time; a record stamped in the future, or with no usable
// timestamp, cannot make the honest records after it late.
func WatermarkTime(e *Event, timestamp time.Time) time.Time {
	ts, ok := KafkaTime(timestamp)
	if !ok {
		return time.Time{}
	}
	if e.EventTime.After(ts) {
		return ts
	}
	return e.EventTime
}

// ParseRecord judges a whole Kafka record: its size, then its value by
// Parse, then that its key is the transaction_id and that event_time is not
// more than maxSkew (the allowed lateness) past its Kafka timestamp, when
// that timestamp is one to trust (KafkaTime). Like Parse it is a pure
// function of the record.
func ParseRecord(key, value []byte, timestamp time.Time, maxSkew time.Duration) (Event, error) {
	if len(value) > MaxRecordBytes {
		return Event{}, &Error{Reason: ReasonOversized, Detail: fmt.Sprintf("value is %d bytes, over the %d byte limit", len(value), MaxRecordBytes)}
	}
	e, err := Parse(value)
	if err != nil {
		return Event{}, err
	}
	return CheckRecord(e, key, timestamp, maxSkew)
}

// CheckRecord judges a parsed event as a Kafka record, as ParseRecord
// does after parsing: its key, and its event_time against its timestamp.
func CheckRecord(e Event, key []byte, timestamp time.Time, maxSkew time.Duration) (Event, error) {
	if len(key) == 0 {
		return Event{}, &Error{Reason: ReasonKeyMismatch, Detail: "record has no key; the key must be the transaction_id"}
	}
	if string(key) != e.TransactionID {
		return Event{}, &Error{Reason: ReasonKeyMismatch, Detail: "record key is not the transaction_id"}
	}
	if ts, ok := KafkaTime(timestamp); ok && e.EventTime.After(ts.Add(maxSkew)) {
		return Event{}, &Error{Reason: ReasonInvalidField, Field: "event_time", Detail: fmt.Sprintf("more than the allowed lateness (%s) after the record's Kafka timestamp", maxSkew)}
	}
	return e, nil
}
