package payment

import (
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ok := encode(t, validFields())
	future := encode(t, with("event_time", ts.Add(25*time.Hour).Format(time.RFC3339)))
	nearFuture := encode(t, with("event_time", ts.Add(23*time.Hour).Format(time.RFC3339)))
	big := with("padding", strings.Repeat("x", MaxRecordBytes))
	cases := []struct {
		name   string
		key    []byte
		value  []byte
		ts     time.Time
		reason Reason
	}{
		{"valid", []byte("tx-0001"), ok, ts, ""},
		{"no key", nil, ok, ts, ReasonKeyMismatch},
		{"empty key", []byte{}, ok, ts, ReasonKeyMismatch},
		{"key is another id", []byte("tx-0002"), ok, ts, ReasonKeyMismatch},
		{"event_time a day ahead", []byte("tx-0001"), future, ts, ReasonInvalidField},
		{"event_time 23 h ahead", []byte("tx-0001"), nearFuture, ts, ""},
		{"no timestamp", []byte("tx-0001"), future, time.Time{}, ""},
		{"oversized", []byte("tx-0001"), encode(t, big), ts, ReasonOversized},
		{"empty value", []byte("tx-0001"), []byte{}, ts, ReasonMalformedJSON},
		{"bad value before key", nil, []byte("{"), ts, ReasonMalformedJSON},
	}
	for _, c := range cases {
		_, err := ParseRecord(c.key, c.value, c.ts)
		if got := ReasonOf(err); got != c.reason {
			t.Errorf("%s: reason %q (%v), want %q", c.name, got, err, c.reason)
		}
	}
}
