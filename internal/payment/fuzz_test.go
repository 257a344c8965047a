package payment

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
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
		`[]`, `{`, ``, `null`, `{} {}`, `1x`, `{"a":truex}`, `{"a":1 "b":2}`, `{"a":1,}`, `{"a":1]`,
		`{"\u0061mount":"1","amount":"2"}`, `{"x":{"y":[1,{"z":"}"}]},"x":1}`, `{"a":-01}`, `{"a":1.e5}`, ` {"a":"\ud800"} `,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		sameAsReference(t, raw)
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

// sameAsReference checks the hand-written splitObject against the
// encoding/json version: same fields, same extra, same reason and field on
// a rejection. (Details may word a broken record differently.)
func sameAsReference(t *testing.T, raw []byte) {
	t.Helper()
	if !utf8.Valid(raw) {
		return // Parse rejects these before either runs
	}
	fields, extra, err := splitObject(raw)
	wantFields, wantExtra, wantErr := referenceSplitObject(raw)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("splitObject(%q): error %v, reference says %v", raw, err, wantErr)
	}
	if err != nil {
		var got, want *Error
		if !errors.As(err, &got) || !errors.As(wantErr, &want) || got.Reason != want.Reason || got.Field != want.Field {
			t.Fatalf("splitObject(%q): error %v, reference says %v", raw, err, wantErr)
		}
		return
	}
	for i, name := range knownFields {
		if !bytes.Equal(fields[i], wantFields[name]) || (fields[i] == nil) != (wantFields[name] == nil) {
			t.Fatalf("splitObject(%q): %s = %q, reference says %q", raw, name, fields[i], wantFields[name])
		}
	}
	if !bytes.Equal(extra, wantExtra) {
		t.Fatalf("splitObject(%q): extra = %q, reference says %q", raw, extra, wantExtra)
	}
}
