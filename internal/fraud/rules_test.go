package fraud

import (
	"slices"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/payment"
)

func TestRules(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := func() payment.Event {
		return payment.Event{TransactionID: "t", EventTime: t0, Amount: payment.Amount{Minor: 1234, Scale: 2}, Currency: "USD",
			CustomerID: "c1", CardID: "k1", Country: "US", CardCountry: "US", MerchantCategory: "5411", DeviceID: "d1"}
	}
	cases := []struct {
		name  string
		edit  func(*payment.Event)
		rules []string
		score uint8
		level string
	}{
		{"ordinary", func(*payment.Event) {}, nil, 0, "low"},
		{"large", func(e *payment.Event) { e.Amount.Minor = 250001 }, []string{LargeAmount}, 30, "medium"},
		{"very large and round", func(e *payment.Event) { e.Amount.Minor = 1000000 }, []string{LargeAmount, VeryLargeAmount, RoundAmount}, 65, "high"},
		{"yen threshold", func(e *payment.Event) { e.Currency, e.Amount = "JPY", payment.Amount{Minor: 300001} }, []string{LargeAmount}, 30, "medium"},
		{"country mismatch", func(e *payment.Event) { e.Country = "BR" }, []string{CountryMismatch}, 25, "low"},
		{"gambling", func(e *payment.Event) { e.MerchantCategory = "7995" }, []string{HighRiskMCC}, 20, "low"},
		{"everything", func(e *payment.Event) { e.Amount.Minor, e.Country, e.MerchantCategory = 1000000, "BR", "6051" },
			[]string{LargeAmount, VeryLargeAmount, RoundAmount, CountryMismatch, HighRiskMCC}, 100, "high"},
	}
	for _, c := range cases {
		e := base()
		c.edit(&e)
		s := NewScorer().Score(&e)
		if !slices.Equal(s.ReasonCodes(), c.rules) || s.Score != c.score || s.RiskLevel() != c.level {
			t.Errorf("%s: %v score %d %s, want %v %d %s", c.name, s.ReasonCodes(), s.Score, s.RiskLevel(), c.rules, c.score, c.level)
		}
	}
}

func TestVelocityAndNewDevice(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewScorer()
	var got [][]string
	for i, dev := range []string{"d1", "d1", "d2", "d1", "d1", "d1"} {
		e := payment.Event{EventTime: t0.Add(time.Duration(i*10) * time.Second), Amount: payment.Amount{Minor: 100, Scale: 2},
			Currency: "EUR", CustomerID: "c", CardID: "k", DeviceID: dev}
		got = append(got, s.Score(&e).ReasonCodes())
	}
	want := [][]string{nil, nil, {NewDevice}, {NewDevice}, {CardVelocity}, {CardVelocity}}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("payment %d: %v, want %v", i, got[i], want[i])
		}
	}
	// A minute later the card is quiet again.
	e := payment.Event{EventTime: t0.Add(5 * time.Minute), Amount: payment.Amount{Minor: 100, Scale: 2}, Currency: "EUR", CustomerID: "c", CardID: "k", DeviceID: "d1"}
	if r := s.Score(&e).ReasonCodes(); len(r) != 0 {
		t.Errorf("quiet card flagged %v", r)
	}
}
