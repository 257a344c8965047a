package payment

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// validFields is a complete, valid event; each case below changes one field.
func validFields() map[string]any {
	return map[string]any{
		"transaction_id":    "tx-0001",
		"event_time":        "2026-03-01T12:34:56.789Z",
		"amount":            "12.50",
		"currency":          "USD",
		"customer_id":       "cust-1",
		"merchant_id":       "merch-1",
		"merchant_category": "5411",
		"card_id":           "tok_abc",
		"card_last4":        "4242",
		"card_country":      "US",
		"payment_method":    "card",
		"status":            "captured",
		"region":            "us-east",
		"country":           "US",
		"device_id":         "dev-9",
		"device_type":       "mobile",
		"ip_address":        "203.0.113.7",
	}
}

func encode(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func with(key string, value any) map[string]any {
	f := validFields()
	f[key] = value
	return f
}

func without(key string) map[string]any {
	f := validFields()
	delete(f, key)
	return f
}

func TestParseValid(t *testing.T) {
	e, err := Parse(encode(t, validFields()))
	if err != nil {
		t.Fatalf("valid event rejected: %v", err)
	}
	want := Event{
		TransactionID: "tx-0001", EventTime: time.Date(2026, 3, 1, 12, 34, 56, 789e6, time.UTC),
		Amount: Amount{Minor: 1250, Scale: 2}, Currency: "USD", CustomerID: "cust-1", MerchantID: "merch-1",
		MerchantCategory: "5411", CardID: "tok_abc", CardLast4: "4242", CardCountry: "US",
		PaymentMethod: "card", Status: "captured", Region: "us-east", Country: "US",
		DeviceID: "dev-9", DeviceType: "mobile", IPAddress: "203.0.113.7",
	}
	if !e.EventTime.Equal(want.EventTime) || e.EventTime.Location() != time.UTC {
		t.Errorf("event_time = %v, want %v in UTC", e.EventTime, want.EventTime)
	}
	e.EventTime = want.EventTime
	if e.TransactionID != want.TransactionID || e.Amount != want.Amount || e.Currency != want.Currency ||
		e.CustomerID != want.CustomerID || e.MerchantID != want.MerchantID || e.MerchantCategory != want.MerchantCategory ||
		e.CardID != want.CardID || e.CardLast4 != want.CardLast4 || e.CardCountry != want.CardCountry ||
		e.PaymentMethod != want.PaymentMethod || e.Status != want.Status || e.Region != want.Region ||
		e.Country != want.Country || e.DeviceID != want.DeviceID || e.DeviceType != want.DeviceType ||
		e.IPAddress != want.IPAddress || e.Extra != nil {
		t.Errorf("parsed\n %+v\nwant\n %+v", e, want)
	}
}

func TestParseOptionalFieldsMayBeAbsentOrNull(t *testing.T) {
	for _, name := range []string{"merchant_category", "card_last4", "card_country", "region", "country", "device_id", "device_type", "ip_address"} {
		for _, f := range []map[string]any{without(name), with(name, nil), with(name, "")} {
			if _, err := Parse(encode(t, f)); err != nil {
				t.Errorf("%s absent/null/empty: rejected: %v", name, err)
			}
		}
	}
}

func TestParseAmounts(t *testing.T) {
	cases := []struct {
		currency string
		amount   any // string, or json.Number for a JSON number literal
		want     string
		wantErr  string
	}{
		{"USD", "12.50", "12.50", ""},
		{"USD", "12.5", "12.50", ""},
		{"USD", "12", "12.00", ""},
		{"USD", "0.01", "0.01", ""},
		{"USD", json.Number("12.5"), "12.50", ""},
		{"USD", json.Number("7"), "7.00", ""},
		{"JPY", "1500", "1500", ""},
		{"KWD", "1.234", "1.234", ""},
		{"USD", "999999999999999.99", "999999999999999.99", ""},
		{"USD", "12.345", "", "has 3 decimals, the currency allows 2"},
		{"JPY", "1500.5", "", "has 1 decimals, the currency allows 0"},
		{"USD", "-5.00", "", "negative"},
		{"USD", json.Number("-5"), "", "negative"},
		{"USD", "0", "", "must be > 0"},
		{"USD", "0.00", "", "must be > 0"},
		{"USD", json.Number("1e3"), "", "plain decimal"},
		{"USD", "1,000.00", "", "plain decimal"},
		{"USD", ".50", "", "plain decimal"},
		{"USD", "5.", "", "plain decimal"},
		{"USD", "+5", "", "plain decimal"},
		{"USD", " 5", "", "plain decimal"},
		{"USD", "1000000000000000", "", "more than 15 integer digits"},
		{"USD", "", "", "missing_field"},
		{"USD", true, "", "must be a decimal string or number"},
		{"USD", map[string]any{"v": 1}, "", "must be a decimal string or number"},
	}
	for _, c := range cases {
		f := with("currency", c.currency)
		f["amount"] = c.amount
		e, err := Parse(encode(t, f))
		if c.wantErr == "" {
			if err != nil {
				t.Errorf("%s %v: rejected: %v", c.currency, c.amount, err)
			} else if got := e.Amount.String(); got != c.want {
				t.Errorf("%s %v: amount = %s, want %s", c.currency, c.amount, got, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s %v: error = %v, want one containing %q", c.currency, c.amount, err, c.wantErr)
		}
	}
}

func TestParseRejections(t *testing.T) {
	longID := strings.Repeat("x", 65)
	cases := []struct {
		name   string
		raw    []byte
		reason Reason
		field  string
	}{
		{"invalid utf-8", []byte("{\"transaction_id\":\"\xff\xfe\"}"), ReasonMalformedJSON, ""},
		{"truncated json", []byte(`{"transaction_id":"tx-1","amount":"1`), ReasonMalformedJSON, ""},
		{"not an object", []byte(`["tx-1"]`), ReasonMalformedJSON, ""},
		{"empty", []byte(``), ReasonMalformedJSON, ""},
		{"two objects", append(encode(t, validFields()), []byte(` {}`)...), ReasonMalformedJSON, ""},
		{"duplicate name", []byte(`{"amount":"1.00","amount":"1000.00"}`), ReasonInvalidField, "amount"},
		{"missing transaction_id", encode(t, without("transaction_id")), ReasonMissingField, "transaction_id"},
		{"null transaction_id", encode(t, with("transaction_id", nil)), ReasonMissingField, "transaction_id"},
		{"empty transaction_id", encode(t, with("transaction_id", "")), ReasonMissingField, "transaction_id"},
		{"long transaction_id", encode(t, with("transaction_id", longID)), ReasonInvalidField, "transaction_id"},
		{"control char in transaction_id", encode(t, with("transaction_id", "tx\n1")), ReasonInvalidField, "transaction_id"},
		{"padded transaction_id", encode(t, with("transaction_id", " tx-1")), ReasonInvalidField, "transaction_id"},
		{"numeric transaction_id", encode(t, with("transaction_id", 17)), ReasonInvalidField, "transaction_id"},
		{"missing event_time", encode(t, without("event_time")), ReasonMissingField, "event_time"},
		{"unparsable event_time", encode(t, with("event_time", "yesterday")), ReasonInvalidField, "event_time"},
		{"event_time without zone", encode(t, with("event_time", "2026-03-01T12:34:56")), ReasonInvalidField, "event_time"},
		{"numeric event_time", encode(t, with("event_time", 1700000000)), ReasonInvalidField, "event_time"},
		{"missing amount", encode(t, without("amount")), ReasonMissingField, "amount"},
		{"missing currency", encode(t, without("currency")), ReasonMissingField, "currency"},
		{"unknown currency", encode(t, with("currency", "XYZ")), ReasonInvalidField, "currency"},
		{"lower-case currency", encode(t, with("currency", "usd")), ReasonInvalidField, "currency"},
		{"missing customer_id", encode(t, without("customer_id")), ReasonMissingField, "customer_id"},
		{"missing merchant_id", encode(t, without("merchant_id")), ReasonMissingField, "merchant_id"},
		{"bad merchant_category", encode(t, with("merchant_category", "54")), ReasonInvalidField, "merchant_category"},
		{"missing card_id", encode(t, without("card_id")), ReasonMissingField, "card_id"},
		{"bad card_last4", encode(t, with("card_last4", "42a2")), ReasonInvalidField, "card_last4"},
		{"bad card_country", encode(t, with("card_country", "USA")), ReasonInvalidField, "card_country"},
		{"missing payment_method", encode(t, without("payment_method")), ReasonMissingField, "payment_method"},
		{"unknown payment_method", encode(t, with("payment_method", "cash")), ReasonInvalidField, "payment_method"},
		{"missing status", encode(t, without("status")), ReasonMissingField, "status"},
		{"unknown status", encode(t, with("status", "pending")), ReasonInvalidField, "status"},
		{"bad region", encode(t, with("region", "us east")), ReasonInvalidField, "region"},
		{"bad country", encode(t, with("country", "us")), ReasonInvalidField, "country"},
		{"bad device_id", encode(t, with("device_id", strings.Repeat("d", 129))), ReasonInvalidField, "device_id"},
		{"unknown device_type", encode(t, with("device_type", "toaster")), ReasonInvalidField, "device_type"},
		{"bad ip_address", encode(t, with("ip_address", "300.1.1.1")), ReasonInvalidField, "ip_address"},
		{"numeric status", encode(t, with("status", 1)), ReasonInvalidField, "status"},
	}
	for _, c := range cases {
		_, err := Parse(c.raw)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%s: error = %v, want a *payment.Error", c.name, err)
			continue
		}
		if pe.Reason != c.reason || pe.Field != c.field {
			t.Errorf("%s: got reason %q field %q (%v), want reason %q field %q", c.name, pe.Reason, pe.Field, err, c.reason, c.field)
		}
		if ReasonOf(err) != c.reason {
			t.Errorf("%s: ReasonOf = %q, want %q", c.name, ReasonOf(err), c.reason)
		}
	}
}

func TestParseIPv6(t *testing.T) {
	if _, err := Parse(encode(t, with("ip_address", "2001:db8::1"))); err != nil {
		t.Fatalf("IPv6 address rejected: %v", err)
	}
}

func TestParseKeepsUnknownFieldsInExtra(t *testing.T) {
	f := validFields()
	f["loyalty_tier"] = "gold"
	f["risk_hints"] = map[string]any{"vpn": true}
	e, err := Parse(encode(t, f))
	if err != nil {
		t.Fatalf("event with unknown fields rejected: %v", err)
	}
	var extra map[string]any
	if err := json.Unmarshal(e.Extra, &extra); err != nil {
		t.Fatalf("extra %q is not a JSON object: %v", e.Extra, err)
	}
	if len(extra) != 2 || extra["loyalty_tier"] != "gold" || extra["risk_hints"].(map[string]any)["vpn"] != true {
		t.Errorf("extra = %s, want both unknown fields", e.Extra)
	}
}

func TestParseErrorsNeverCarryValues(t *testing.T) {
	secret := "4111111111111111"
	for _, f := range []map[string]any{
		with("card_last4", secret), with("transaction_id", secret+strings.Repeat("9", 60)),
		with("amount", secret+".123"), with("ip_address", secret), with("customer_id", secret+"\x01"),
	} {
		_, err := Parse(encode(t, f))
		if err == nil {
			t.Fatalf("%v accepted", f)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q repeats the field value", err)
		}
	}
}

func TestAmountString(t *testing.T) {
	for _, c := range []struct {
		a    Amount
		want string
	}{
		{Amount{1250, 2}, "12.50"}, {Amount{5, 2}, "0.05"}, {Amount{1500, 0}, "1500"},
		{Amount{1, 3}, "0.001"}, {Amount{-1250, 2}, "-12.50"},
	} {
		if got := c.a.String(); got != c.want {
			t.Errorf("%+v.String() = %s, want %s", c.a, got, c.want)
		}
	}
}

// TestFieldsSayWhatParseRequires holds Fields, which judges registry
// schemas, to Parse, which judges records: a required field left out is
// missing_field, an optional one is not.
func TestFieldsSayWhatParseRequires(t *testing.T) {
	if len(Fields) != len(validFields()) {
		t.Fatalf("Fields has %d fields, the valid event %d", len(Fields), len(validFields()))
	}
	for _, f := range Fields {
		fields := validFields()
		if _, ok := fields[f.Name]; !ok {
			t.Fatalf("Fields names %s, which the contract's valid event lacks", f.Name)
		}
		delete(fields, f.Name)
		_, err := Parse(encode(t, fields))
		if f.Required != (ReasonOf(err) == ReasonMissingField) {
			t.Errorf("without %s: %v; Fields says required=%v", f.Name, err, f.Required)
		}
	}
}
