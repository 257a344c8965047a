package payment

import (
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 40, 0, 0, time.UTC) // after validFields' event_time
	ok := encode(t, validFields())
	lateness := 10 * time.Minute
	future := encode(t, with("event_time", ts.Add(lateness+time.Second).Format(time.RFC3339)))
	nearFuture := encode(t, with("event_time", ts.Add(lateness).Format(time.RFC3339)))
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
		{"event_time past the lateness ahead", []byte("tx-0001"), future, ts, ReasonInvalidField},
		{"event_time the lateness ahead", []byte("tx-0001"), nearFuture, ts, ""},
		{"no timestamp", []byte("tx-0001"), future, time.Time{}, ""},
		{"timestamp -1", []byte("tx-0001"), future, time.UnixMilli(-1), ""},
		{"timestamp 0", []byte("tx-0001"), future, time.UnixMilli(0), ""},
		{"timestamp in microseconds", []byte("tx-0001"), future, time.UnixMilli(ts.UnixMicro()), ""},
		{"oversized", []byte("tx-0001"), encode(t, big), ts, ReasonOversized},
		{"empty value", []byte("tx-0001"), []byte{}, ts, ReasonMalformedJSON},
		{"bad value before key", nil, []byte("{"), ts, ReasonMalformedJSON},
	}
	for _, c := range cases {
		_, err := ParseRecord(c.key, c.value, c.ts, lateness)
		if got := ReasonOf(err); got != c.reason {
			t.Errorf("%s: reason %q (%v), want %q", c.name, got, err, c.reason)
		}
	}
}

// TestWatermarkTime: a record moves the watermark at most to its Kafka
// timestamp, and not at all without one to trust.
func TestWatermarkTime(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := Event{EventTime: ts.Add(-time.Minute)}
	ahead := Event{EventTime: ts.Add(2 * time.Hour)}
	cases := []struct {
		name string
		e    Event
		ts   time.Time
		want time.Time
	}{
		{"honest", e, ts, e.EventTime},
		{"ahead of its timestamp", ahead, ts, ts},
		{"timestamp -1", e, time.UnixMilli(-1), time.Time{}},
		{"timestamp 0", e, time.UnixMilli(0), time.Time{}},
		{"seconds as milliseconds", e, time.UnixMilli(ts.Unix()), time.Time{}},
		{"microseconds as milliseconds", e, time.UnixMilli(ts.UnixMicro()), time.Time{}},
	}
	for _, c := range cases {
		if got := WatermarkTime(&c.e, c.ts); !got.Equal(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSumIsExactPastInt64: a hundred of the largest USD amounts overflow
// int64 minor units (93 do); their Sum is exact.
func TestSumIsExactPastInt64(t *testing.T) {
	var s Sum
	for range 100 {
		s.Add(Amount{Minor: 99999999999999999, Scale: 2})
	}
	if got := s.String(); got != "99999999999999999.00" {
		t.Errorf("sum %s, want 99999999999999999.00", got)
	}
}
