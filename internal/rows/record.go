package rows

import (
	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
)

// Record is one record of a batch with what the parser made of it.
type Record struct {
	kafkalog.Record
	Event    payment.Event
	ParseErr error
	// Columns are its schema's new fields, each with its type (its value
	// is in Event.Extra); those the partition recorded a column for
	// (contract.Schemas.Columns) are written to it.
	Columns []contract.Column
}
