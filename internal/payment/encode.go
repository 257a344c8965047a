package payment

import (
	"bytes"
	"encoding/json"
	"time"
)

// Wire is the contract's JSON shape, field for field; the BigQuery
// transactions table uses the same names for its columns.
type Wire struct {
	TransactionID    string `json:"transaction_id"`
	EventTime        string `json:"event_time"`
	Amount           string `json:"amount"`
	Currency         string `json:"currency"`
	CustomerID       string `json:"customer_id"`
	MerchantID       string `json:"merchant_id"`
	MerchantCategory string `json:"merchant_category,omitempty"`
	CardID           string `json:"card_id"`
	CardLast4        string `json:"card_last4,omitempty"`
	CardCountry      string `json:"card_country,omitempty"`
	PaymentMethod    string `json:"payment_method"`
	Status           string `json:"status"`
	Region           string `json:"region,omitempty"`
	Country          string `json:"country,omitempty"`
	DeviceID         string `json:"device_id,omitempty"`
	DeviceType       string `json:"device_type,omitempty"`
	IPAddress        string `json:"ip_address,omitempty"`
}

// ToWire returns e's fields in their JSON form: event_time in RFC 3339
// UTC, the amount as a decimal string.
func ToWire(e *Event) Wire {
	return Wire{
		TransactionID: e.TransactionID, EventTime: e.EventTime.UTC().Format(time.RFC3339Nano),
		Amount: e.Amount.String(), Currency: e.Currency, CustomerID: e.CustomerID,
		MerchantID: e.MerchantID, MerchantCategory: e.MerchantCategory, CardID: e.CardID,
		CardLast4: e.CardLast4, CardCountry: e.CardCountry, PaymentMethod: e.PaymentMethod,
		Status: e.Status, Region: e.Region, Country: e.Country, DeviceID: e.DeviceID,
		DeviceType: e.DeviceType, IPAddress: e.IPAddress,
	}
}

// Encode writes e in the contract's JSON form, amount as a decimal string
// and unknown fields from Extra appended. Parse(Encode(e)) returns e.
func Encode(e Event) []byte {
	b, err := json.Marshal(ToWire(&e))
	if err != nil {
		// Only strings go in; json.Marshal cannot fail on them.
		panic(err)
	}
	if extra := bytes.TrimSpace(e.Extra); len(extra) > 2 && extra[0] == '{' {
		b = append(b[:len(b)-1], ',')
		b = append(b, extra[1:]...)
	}
	return b
}
