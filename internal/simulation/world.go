package simulation

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
)

// country is where customers live and merchants sell.
type country struct {
	code     string
	currency string
	region   string
	// ipPrefix is the first two octets of the addresses we hand out there,
	// so country and ip_address agree (and disagree on purpose for fraud).
	ipPrefix [2]byte
	// typical is the median purchase in major units of the currency.
	typical float64
	weight  int
}

// countries: at least eight currencies with their real minor units
// (JPY/KRW 0, KWD 3), weighted roughly like a European-American acquirer.
var countries = []country{
	{"US", "USD", "us-east", [2]byte{23, 10}, 45, 30},
	{"CA", "CAD", "us-east", [2]byte{24, 20}, 55, 5},
	{"GB", "GBP", "eu-west", [2]byte{51, 30}, 35, 12},
	{"DE", "EUR", "eu-central", [2]byte{46, 40}, 40, 10},
	{"FR", "EUR", "eu-west", [2]byte{62, 50}, 40, 8},
	{"NL", "EUR", "eu-west", [2]byte{77, 60}, 40, 4},
	{"SE", "SEK", "eu-north", [2]byte{78, 70}, 400, 3},
	{"CH", "CHF", "eu-central", [2]byte{85, 80}, 60, 3},
	{"JP", "JPY", "apac", [2]byte{126, 90}, 5000, 7},
	{"KR", "KRW", "apac", [2]byte{121, 100}, 50000, 3},
	{"SG", "SGD", "apac", [2]byte{103, 110}, 60, 2},
	{"IN", "INR", "apac", [2]byte{49, 120}, 2500, 4},
	{"BR", "BRL", "latam", [2]byte{177, 130}, 150, 4},
	{"MX", "MXN", "latam", [2]byte{187, 140}, 700, 2},
	{"KW", "KWD", "mea", [2]byte{37, 150}, 15, 1},
	{"ZA", "ZAR", "mea", [2]byte{41, 160}, 600, 2},
}

// merchantCategories are MCCs with their share; 7995 (gambling), 6051
// (quasi-cash) and 4829 (money transfer) are the high-risk ones fraud rules
// look for.
var merchantCategories = []struct {
	mcc    string
	weight int
}{
	{"5411", 25}, {"5812", 15}, {"5999", 10}, {"5732", 6}, {"4121", 8},
	{"5541", 8}, {"5311", 8}, {"4511", 3}, {"7011", 4}, {"5912", 6},
	{"5814", 10}, {"7995", 1}, {"6051", 1}, {"4829", 1},
}

var deviceTypes = []struct {
	name   string
	weight int
}{{"mobile", 55}, {"desktop", 25}, {"tablet", 8}, {"pos", 10}, {"other", 2}}

type customer struct {
	id      string
	home    int // index into countries
	cards   []card
	devices []device
}

type card struct {
	id      string
	last4   string
	country string
}

type device struct {
	id   string
	kind string
	ip   netip.Addr
}

type merchant struct {
	id      string
	country int
	mcc     string
}

// world is the fixed population of one seed: customers with their cards
// and devices, and merchants. Events are drawn from it.
type world struct {
	customers []customer
	merchants []merchant
	countryW  []int
	mccW      []int
	deviceW   []int
}

func newWorld(rng *rand.Rand, customers, merchants int) *world {
	w := &world{}
	for _, c := range countries {
		w.countryW = append(w.countryW, c.weight)
	}
	for _, m := range merchantCategories {
		w.mccW = append(w.mccW, m.weight)
	}
	for _, d := range deviceTypes {
		w.deviceW = append(w.deviceW, d.weight)
	}
	for i := range customers {
		home := pick(rng, w.countryW)
		c := customer{id: fmt.Sprintf("cust_%06d", i), home: home}
		for range 1 + rng.IntN(2) {
			c.cards = append(c.cards, card{
				id:      fmt.Sprintf("card_%016x", rng.Uint64()),
				last4:   fmt.Sprintf("%04d", rng.IntN(10000)),
				country: countries[home].code,
			})
		}
		for range 1 + rng.IntN(2) {
			c.devices = append(c.devices, device{
				id:   fmt.Sprintf("dev_%012x", rng.Uint64()>>16),
				kind: deviceTypes[pick(rng, w.deviceW)].name,
				ip:   ipIn(rng, home),
			})
		}
		w.customers = append(w.customers, c)
	}
	for i := range merchants {
		w.merchants = append(w.merchants, merchant{
			id:      fmt.Sprintf("merch_%05d", i),
			country: pick(rng, w.countryW),
			mcc:     merchantCategories[pick(rng, w.mccW)].mcc,
		})
	}
	return w
}

func ipIn(rng *rand.Rand, countryIndex int) netip.Addr {
	p := countries[countryIndex].ipPrefix
	return netip.AddrFrom4([4]byte{p[0], p[1], byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
}

// pick returns an index drawn with the given weights.
func pick(rng *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

// typicalAmount draws a log-normal purchase around the country's median,
// in minor units of its currency (at least one minor unit).
func typicalAmount(rng *rand.Rand, median float64, scale int) int64 {
	major := median * math.Exp(rng.NormFloat64()*0.9)
	minor := int64(math.Round(major * math.Pow10(scale)))
	return max(minor, 1)
}
