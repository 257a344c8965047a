package payment

// minorUnits maps the ISO 4217 codes paystream accepts to their number of
// minor-unit digits (USD 2, JPY 0, KWD 3). An amount may not carry more
// decimals than its currency has: "12.345" USD is rejected, not rounded,
// because rounding money silently is exactly the loss we promise not to make.
var minorUnits = map[string]int{
	"AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2,
	"CHF": 2, "CLP": 0, "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2,
	"EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
	"ISK": 0, "JOD": 3, "JPY": 0, "KES": 2, "KRW": 0, "KWD": 3, "MAD": 2,
	"MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PEN": 2,
	"PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RWF": 0,
	"SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2,
	"UAH": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2,
}

// MinorUnits reports how many decimal digits the currency's minor unit has,
// and whether the code is one paystream knows.
func MinorUnits(currency string) (int, bool) {
	d, ok := minorUnits[currency]
	return d, ok
}
