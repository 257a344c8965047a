package rows

import (
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
)

// Record is one record of a batch with what the parser made of it.
type Record struct {
	kafkalog.Record
	Event    payment.Event
	ParseErr error
}
