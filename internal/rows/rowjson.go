package rows

import (
	"strconv"

	"github.com/paystream/paystream/internal/warehouse"
)

// The transactions and transactions_enriched rows are most of what a
// worker writes, so they also append their JSON by hand
// (warehouse.JSONRow): through Columns, an interface call a column cost
// the discard sink's catch-up 13 %. rowjson_test holds each to its
// Columns and to encoding/json's reading of the schema's names.

func (tx *txRow) AppendJSON(b []byte) []byte {
	e := tx.e
	b = append(b, `{"transaction_id":`...)
	b = warehouse.AppendJSONString(b, e.TransactionID)
	b = appendStringField(b, "event_time", tx.eventTime, false)
	b = appendStringField(b, "amount", tx.amount, false)
	b = appendStringField(b, "currency", e.Currency, false)
	b = appendStringField(b, "customer_id", e.CustomerID, false)
	b = appendStringField(b, "merchant_id", e.MerchantID, false)
	b = appendStringField(b, "merchant_category", e.MerchantCategory, true)
	b = appendStringField(b, "card_id", e.CardID, false)
	b = appendStringField(b, "card_last4", e.CardLast4, true)
	b = appendStringField(b, "card_country", e.CardCountry, true)
	b = appendStringField(b, "payment_method", e.PaymentMethod, false)
	b = appendStringField(b, "status", e.Status, false)
	b = appendStringField(b, "region", e.Region, true)
	b = appendStringField(b, "country", e.Country, true)
	b = appendStringField(b, "device_id", e.DeviceID, true)
	b = appendStringField(b, "device_type", e.DeviceType, true)
	b = appendStringField(b, "ip_address", e.IPAddress, true)
	if len(e.Extra) > 0 {
		b = appendStringField(b, "extra", string(e.Extra), false)
	}
	for _, v := range tx.typed {
		if v.json {
			b = append(append(append(append(b, ',', '"'), v.name...), '"', ':'), v.text...)
		} else {
			b = appendStringField(b, v.name, v.text, false)
		}
	}
	b = appendStringField(b, "batch_id", tx.batchID, false)
	b = append(b, `,"kafka_partition":`...)
	b = strconv.AppendInt(b, int64(tx.partition), 10)
	b = append(b, `,"kafka_offset":`...)
	b = strconv.AppendInt(b, tx.offset, 10)
	b = appendStringField(b, "loaded_at", tx.loadedAt, false)
	return append(b, '}')
}

func (r *enrichedRow) AppendJSON(b []byte) []byte {
	b = r.tx.AppendJSON(b)
	b = append(b[:len(b)-1], `,"fraud_score":`...) // reopen the object
	b = strconv.AppendInt(b, int64(r.score.Score), 10)
	b = append(b, `,"fraud_reasons":[`...)
	for i, reason := range r.score.ReasonCodes() {
		if i > 0 {
			b = append(b, ',')
		}
		b = warehouse.AppendJSONString(b, reason)
	}
	b = append(b, ']')
	b = appendStringField(b, "risk_level", r.score.RiskLevel(), false)
	return append(b, '}')
}

// appendStringField appends `,"name":"value"`, or nothing when omitEmpty
// and value is empty (the column loads as NULL).
func appendStringField(b []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return warehouse.AppendJSONString(b, value)
}
