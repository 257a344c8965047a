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
	// MaxFutureSkew is how far event_time may run ahead of the record's
	// Kafka timestamp (clock skew, time zones done wrong) before it is
	// rejected: a far-future event_time would drag the partition's
	// watermark forward and make every honest event late.
	MaxFutureSkew = 24 * time.Hour
)

// More reason codes, for records that fail as Kafka records.
const (
	// ReasonOversized: the value is larger than MaxRecordBytes.
	ReasonOversized Reason = "oversized"
	// ReasonKeyMismatch: the record key is missing or is not the
	// transaction_id, so duplicates could land in another partition.
	ReasonKeyMismatch Reason = "key_mismatch"
)

// ParseRecord judges a whole Kafka record: its size, then its value by
// Parse, then that its key is the transaction_id and that event_time is not
// more than MaxFutureSkew past its timestamp (skipped when the timestamp is
// zero). Like Parse it is a pure function of the record.
func ParseRecord(key, value []byte, timestamp time.Time) (Event, error) {
	if len(value) > MaxRecordBytes {
		return Event{}, &Error{Reason: ReasonOversized, Detail: fmt.Sprintf("value is %d bytes, over the %d byte limit", len(value), MaxRecordBytes)}
	}
	e, err := Parse(value)
	if err != nil {
		return Event{}, err
	}
	if len(key) == 0 {
		return Event{}, &Error{Reason: ReasonKeyMismatch, Detail: "record has no key; the key must be the transaction_id"}
	}
	if string(key) != e.TransactionID {
		return Event{}, &Error{Reason: ReasonKeyMismatch, Detail: "record key is not the transaction_id"}
	}
	if !timestamp.IsZero() && e.EventTime.After(timestamp.Add(MaxFutureSkew)) {
		return Event{}, &Error{Reason: ReasonInvalidField, Field: "event_time", Detail: fmt.Sprintf("more than %s after the record's Kafka timestamp", MaxFutureSkew)}
	}
	return e, nil
}
