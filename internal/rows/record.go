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
	// Columns are the typed columns its new fields go to, each with the
	// field's type (its value is in Event.Extra): those the partition
	// recorded (contract.Schemas.Columns) that take the field.
	Columns []contract.Column
}
