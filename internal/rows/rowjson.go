package rows

import (
	"strconv"
	"unicode/utf8"
)

// The transactions and transactions_enriched rows are most of what a
// worker writes, so they are appended by hand: encoding/json's reflection
// cost more per row than parsing the record. rowjson_test checks that they
// decode to what encoding/json would have written.

func appendTxFields(b []byte, tx *txRow) []byte {
	w := tx.Wire
	b = append(b, `{"transaction_id":`...)
	b = appendJSONString(b, w.TransactionID)
	b = appendStringField(b, "event_time", w.EventTime, false)
	b = appendStringField(b, "amount", w.Amount, false)
	b = appendStringField(b, "currency", w.Currency, false)
	b = appendStringField(b, "customer_id", w.CustomerID, false)
	b = appendStringField(b, "merchant_id", w.MerchantID, false)
	b = appendStringField(b, "merchant_category", w.MerchantCategory, true)
	b = appendStringField(b, "card_id", w.CardID, false)
	b = appendStringField(b, "card_last4", w.CardLast4, true)
	b = appendStringField(b, "card_country", w.CardCountry, true)
	b = appendStringField(b, "payment_method", w.PaymentMethod, false)
	b = appendStringField(b, "status", w.Status, false)
	b = appendStringField(b, "region", w.Region, true)
	b = appendStringField(b, "country", w.Country, true)
	b = appendStringField(b, "device_id", w.DeviceID, true)
	b = appendStringField(b, "device_type", w.DeviceType, true)
	b = appendStringField(b, "ip_address", w.IPAddress, true)
	b = appendStringField(b, "extra", tx.Extra, true)
	b = appendStringField(b, "batch_id", tx.BatchID, false)
	b = append(b, `,"kafka_partition":`...)
	b = strconv.AppendInt(b, int64(tx.KafkaPartition), 10)
	b = append(b, `,"kafka_offset":`...)
	b = strconv.AppendInt(b, tx.KafkaOffset, 10)
	return appendStringField(b, "loaded_at", tx.LoadedAt, false)
}

// appendTxRow appends tx as one line of newline-delimited JSON.
func appendTxRow(b []byte, tx *txRow) []byte {
	return append(appendTxFields(b, tx), '}', '\n')
}

// appendEnrichedRow appends r as one line of newline-delimited JSON.
func appendEnrichedRow(b []byte, r *enrichedRow) []byte {
	b = appendTxFields(b, &r.txRow)
	b = append(b, `,"fraud_score":`...)
	b = strconv.AppendInt(b, int64(r.FraudScore), 10)
	b = append(b, `,"fraud_reasons":[`...)
	for i, reason := range r.FraudReasons {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, reason)
	}
	b = append(b, ']')
	b = appendStringField(b, "risk_level", r.RiskLevel, false)
	return append(b, '}', '\n')
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
	return appendJSONString(b, value)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. s is valid UTF-8 (the
// parser rejects anything else); invalid bytes would become U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
