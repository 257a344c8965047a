// Package fraud scores payments with documented, deterministic rules. A
// score is 0–100, the sum of the weights of the rules that fire (capped);
// the risk level follows from the score. The same records in the same order
// always get the same scores, so a retried Enrich decides nothing new.
//
// Rules (code, weight):
//
//	large_amount       30  amount at or above the currency's threshold (about USD 2,000)
//	very_large_amount  25  at or above five times that threshold (adds to large_amount)
//	round_amount       10  at least the threshold/10 and a whole multiple of 100 major units
//	country_mismatch   25  payment country differs from the card's issuing country
//	high_risk_mcc      20  merchant category 7995 (gambling), 6051 (quasi-cash), 4829 (money transfer)
//	card_velocity      30  the card's 5th or later payment within 60 s of event time in the batch
//	new_device         10  the customer's device_id differs from the device seen earlier in the batch
//
// Risk level: high at 60 and above, medium at 30, low below.
package fraud

import (
	"fmt"
	"time"

	"github.com/paystream/paystream/internal/payment"
)

// Version names the newest rule set. A batch records the version it is
// scored with (contract.Spec.FraudRules) instead of its scores, and a
// worker scores a batch only with the version it names, so a retried Load
// scores as the first attempt did. Any change to a rule, weight or
// threshold therefore takes a new version, and the rules of every earlier
// version stay here (NewScorerFor): a batch started before a rolling
// update may run again on an upgraded worker, which must still score it
// as before. TestVersionOneScoresAsReleased pins version 1's scores.
const Version = 1

// Rule codes, as they appear in transactions_enriched.fraud_reasons.
const (
	LargeAmount     = "large_amount"
	VeryLargeAmount = "very_large_amount"
	RoundAmount     = "round_amount"
	CountryMismatch = "country_mismatch"
	HighRiskMCC     = "high_risk_mcc"
	CardVelocity    = "card_velocity"
	NewDevice       = "new_device"
)

// Rules lists every rule code in bit order: Score.Reasons bit i is Rules[i].
var Rules = []string{LargeAmount, VeryLargeAmount, RoundAmount, CountryMismatch, HighRiskMCC, CardVelocity, NewDevice}

var weights = map[string]int{
	LargeAmount: 30, VeryLargeAmount: 25, RoundAmount: 10, CountryMismatch: 25,
	HighRiskMCC: 20, CardVelocity: 30, NewDevice: 10,
}

// thresholdMajor is the large-amount threshold in major units per currency,
// roughly USD 2,000 each.
var thresholdMajor = map[string]int64{
	"USD": 2000, "EUR": 2000, "GBP": 1600, "CHF": 2000, "CAD": 2700, "AUD": 3000, "NZD": 3300,
	"SEK": 21000, "NOK": 21000, "DKK": 14000, "PLN": 8000, "CZK": 46000, "HUF": 720000,
	"JPY": 300000, "KRW": 2700000, "CNY": 14000, "HKD": 15600, "SGD": 2700, "INR": 166000,
	"BRL": 10000, "MXN": 34000, "ZAR": 37000, "KWD": 600, "BHD": 750, "OMR": 770, "JOD": 1400,
	"AED": 7300, "SAR": 7500, "TRY": 65000, "ILS": 7400, "THB": 72000, "IDR": 31000000,
}

// defaultThresholdMajor applies to currencies without their own threshold.
const defaultThresholdMajor = 2000

var highRiskMCC = map[string]bool{"7995": true, "6051": true, "4829": true}

const (
	velocityWindow = 60 * time.Second
	velocityCount  = 5
)

// Score is one payment's fraud decision.
type Score struct {
	Score   uint8  // 0..100
	Reasons uint16 // bit i set: Rules[i] fired
}

// ReasonCodes lists the rules that fired.
func (s Score) ReasonCodes() []string {
	var out []string
	for i, r := range Rules {
		if s.Reasons&(1<<i) != 0 {
			out = append(out, r)
		}
	}
	return out
}

// RiskLevel is "high", "medium" or "low".
func (s Score) RiskLevel() string {
	switch {
	case s.Score >= 60:
		return "high"
	case s.Score >= 30:
		return "medium"
	}
	return "low"
}

// Scorer scores a batch's loaded payments in offset order. Velocity and
// device history are the batch's own, so a batch's scores depend on nothing
// but its records.
type Scorer struct {
	cardTimes       map[string][]time.Time
	customerDevices map[string]string
}

// NewScorer returns a Scorer of the newest rules for one batch.
func NewScorer() *Scorer {
	return &Scorer{cardTimes: map[string][]time.Time{}, customerDevices: map[string]string{}}
}

// NewScorerFor returns a Scorer of the rule set version names, for one
// batch; an error for a version this build does not have (a newer one).
func NewScorerFor(version int) (*Scorer, error) {
	if version != 1 {
		return nil, fmt.Errorf("fraud rules version %d is not in this build (it has 1 to %d)", version, Version)
	}
	return NewScorer(), nil
}

// Score scores e, the next loaded payment of the batch.
func (s *Scorer) Score(e *payment.Event) Score {
	var sc Score
	fire := func(rule string) {
		for i, r := range Rules {
			if r == rule {
				sc.Reasons |= 1 << i
			}
		}
	}
	threshold := thresholdMajor[e.Currency]
	if threshold == 0 {
		threshold = defaultThresholdMajor
	}
	unit := pow10(e.Amount.Scale)
	if e.Amount.Minor >= threshold*unit {
		fire(LargeAmount)
	}
	if e.Amount.Minor >= 5*threshold*unit {
		fire(VeryLargeAmount)
	}
	if e.Amount.Minor >= threshold*unit/10 && e.Amount.Minor%(100*unit) == 0 {
		fire(RoundAmount)
	}
	if e.Country != "" && e.CardCountry != "" && e.Country != e.CardCountry {
		fire(CountryMismatch)
	}
	if highRiskMCC[e.MerchantCategory] {
		fire(HighRiskMCC)
	}
	recent := s.cardTimes[e.CardID][:0:0]
	for _, t := range s.cardTimes[e.CardID] {
		if d := e.EventTime.Sub(t); d >= 0 && d < velocityWindow {
			recent = append(recent, t)
		}
	}
	recent = append(recent, e.EventTime)
	s.cardTimes[e.CardID] = recent
	if len(recent) >= velocityCount {
		fire(CardVelocity)
	}
	if e.DeviceID != "" {
		if seen, ok := s.customerDevices[e.CustomerID]; ok && seen != e.DeviceID {
			fire(NewDevice)
		}
		s.customerDevices[e.CustomerID] = e.DeviceID
	}
	total := 0
	for _, r := range sc.ReasonCodes() {
		total += weights[r]
	}
	sc.Score = uint8(min(total, 100))
	return sc
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}
