package payment

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// maxIntegerDigits bounds the major-unit part of an amount. 15 digits keep
// every amount (times 1000 for three-decimal currencies) inside int64 and far
// inside BigQuery NUMERIC's 29 integer digits.
const maxIntegerDigits = 15

// Amount is an exact money amount: Minor units of a currency whose minor unit
// has Scale decimal digits. 12.50 USD is {Minor: 1250, Scale: 2}. It is never
// a float: payment totals must balance to the cent.
type Amount struct {
	Minor int64
	Scale int
}

// String formats the amount with exactly Scale decimals ("12.50", "1000"),
// the form BigQuery NUMERIC accepts in load jobs.
func (a Amount) String() string { return formatMinor(strconv.FormatInt(a.Minor, 10), a.Scale) }

// formatMinor places the decimal point scale digits from the right of a
// count of minor units.
func formatMinor(s string, scale int) string {
	if scale == 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if len(s) <= scale {
		s = strings.Repeat("0", scale-len(s)+1) + s
	}
	s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	if neg {
		s = "-" + s
	}
	return s
}

// Sum adds amounts of one currency exactly at any size: one amount fits
// int64 minor units, a hundred of the largest do not.
type Sum struct {
	minor big.Int
	scale int
}

// Add adds a to the sum.
func (s *Sum) Add(a Amount) {
	var m big.Int
	s.minor.Add(&s.minor, m.SetInt64(a.Minor))
	s.scale = a.Scale
}

// String formats the sum as Amount.String does.
func (s *Sum) String() string { return formatMinor(s.minor.String(), s.scale) }

// Rat returns the amount as an exact rational, for summing amounts of
// different scales without overflow.
func (a Amount) Rat() *big.Rat {
	return new(big.Rat).SetFrac(big.NewInt(a.Minor), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(a.Scale)), nil))
}

// parseAmount reads a plain decimal ("12", "12.5", "12.50") for a currency
// with scale minor digits. Signs, exponents and more decimals than the
// currency has are errors, never rounded.
func parseAmount(s string, scale int) (Amount, error) {
	if s == "" {
		return Amount{}, errors.New("is empty")
	}
	if s[0] == '-' {
		return Amount{}, errors.New("is negative, must be > 0")
	}
	intPart, fracPart, hasDot := strings.Cut(s, ".")
	if !allDigits(intPart) || (hasDot && !allDigits(fracPart)) {
		return Amount{}, errors.New("is not a plain decimal number")
	}
	if len(fracPart) > scale {
		return Amount{}, fmt.Errorf("has %d decimals, the currency allows %d", len(fracPart), scale)
	}
	intPart = strings.TrimLeft(intPart, "0")
	if len(intPart) > maxIntegerDigits {
		return Amount{}, fmt.Errorf("has more than %d integer digits", maxIntegerDigits)
	}
	digits := intPart + fracPart + strings.Repeat("0", scale-len(fracPart))
	var minor int64
	if digits != "" {
		var err error
		if minor, err = strconv.ParseInt(digits, 10, 64); err != nil {
			return Amount{}, errors.New("is out of range")
		}
	}
	if minor <= 0 {
		return Amount{}, errors.New("must be > 0")
	}
	return Amount{Minor: minor, Scale: scale}, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
