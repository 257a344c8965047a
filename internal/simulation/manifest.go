package simulation

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/paystream/paystream/internal/payment"
)

// Manifest is what a run generated: the expected answer for
// reconciliation. Amounts are decimal strings, exact to the minor unit.
type Manifest struct {
	Seed            uint64    `json:"seed"`
	Topic           string    `json:"topic,omitempty"`
	Partitions      int       `json:"partitions"`
	StartTime       time.Time `json:"start_time"`
	AllowedLateness string    `json:"allowed_lateness"`

	Records            int            `json:"records"`
	RecordsByKind      map[Kind]int   `json:"records_by_kind"`
	RecordsByPartition []int          `json:"records_by_partition"`
	Duplicates         int            `json:"duplicates"`
	ErrorsByReason     map[string]int `json:"errors_by_reason"` // ingest_errors rows expected, by reason

	// UniqueIDs counts the unique valid on-time transactions: exactly the
	// rows transactions must hold. The per-currency figures are over them.
	UniqueIDs        int               `json:"unique_ids"`
	CountByCurrency  map[string]int    `json:"count_by_currency"`
	AmountByCurrency map[string]string `json:"amount_by_currency"`

	// Suspicious counts patterns among the valid events, so fraud rules can
	// be checked for finding something.
	Suspicious map[string]int `json:"suspicious"`

	// StartOffsets and EndOffsets are each partition's high watermark
	// before and after the run, filled in by the simulator when it was the
	// topic's only producer: [start, end) holds exactly these records.
	StartOffsets []int64 `json:"start_offsets,omitempty"`
	EndOffsets   []int64 `json:"end_offsets,omitempty"`

	sumByCurrency map[string]*payment.Sum
	cardWindow    map[string][]time.Time
}

func newManifest(o Options) Manifest {
	return Manifest{
		Seed:               o.Seed,
		Partitions:         o.Partitions,
		StartTime:          o.StartTime,
		AllowedLateness:    o.AllowedLateness.String(),
		RecordsByKind:      map[Kind]int{},
		RecordsByPartition: make([]int, o.Partitions),
		ErrorsByReason:     map[string]int{},
		CountByCurrency:    map[string]int{},
		AmountByCurrency:   map[string]string{},
		Suspicious:         map[string]int{},
		sumByCurrency:      map[string]*payment.Sum{},
		cardWindow:         map[string][]time.Time{},
	}
}

func (m *Manifest) add(r Record) {
	m.Records++
	m.RecordsByKind[r.Kind]++
	m.RecordsByPartition[r.Partition]++
	if r.Kind.IsDuplicate() {
		m.Duplicates++
	}
	if reason := r.Kind.ExpectedReason(); reason != "" {
		m.ErrorsByReason[reason]++
	}
}

func (m *Manifest) addValid(e payment.Event) {
	m.UniqueIDs++
	m.CountByCurrency[e.Currency]++
	sum := m.sumByCurrency[e.Currency]
	if sum == nil {
		sum = &payment.Sum{}
		m.sumByCurrency[e.Currency] = sum
	}
	sum.Add(e.Amount)
	m.AmountByCurrency[e.Currency] = sum.String()

	if e.Country != "" && e.CardCountry != "" && e.Country != e.CardCountry {
		m.Suspicious["country_mismatch"]++
	}
	if e.Amount.Minor >= 1000*pow10(e.Amount.Scale) && e.Amount.Minor == roundToOneDigit(e.Amount.Minor) {
		m.Suspicious["large_round_amount"]++
	}
	switch e.MerchantCategory {
	case "7995", "6051", "4829":
		m.Suspicious["high_risk_mcc"]++
	}
	// A card's fifth payment within a minute counts as a velocity burst.
	w := m.cardWindow[e.CardID]
	kept := w[:0]
	for _, t := range w {
		if e.EventTime.Sub(t) < time.Minute {
			kept = append(kept, t)
		}
	}
	kept = append(kept, e.EventTime)
	if len(kept) == 5 {
		m.Suspicious["card_velocity"]++
	}
	m.cardWindow[e.CardID] = kept
}

func (m Manifest) clone() Manifest {
	c := m
	c.RecordsByKind = maps.Clone(m.RecordsByKind)
	c.RecordsByPartition = append([]int(nil), m.RecordsByPartition...)
	c.ErrorsByReason = maps.Clone(m.ErrorsByReason)
	c.CountByCurrency = maps.Clone(m.CountByCurrency)
	c.AmountByCurrency = maps.Clone(m.AmountByCurrency)
	c.Suspicious = maps.Clone(m.Suspicious)
	c.StartOffsets = append([]int64(nil), m.StartOffsets...)
	c.EndOffsets = append([]int64(nil), m.EndOffsets...)
	c.sumByCurrency, c.cardWindow = nil, nil
	return c
}

// AllowedLatenessDuration is AllowedLateness parsed (0 when unreadable).
func (m Manifest) AllowedLatenessDuration() time.Duration {
	d, _ := time.ParseDuration(m.AllowedLateness)
	return d
}

// WriteFile writes the manifest as indented JSON.
func (m Manifest) WriteFile(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadManifest reads a manifest written by WriteFile.
func ReadManifest(path string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(b, &m)
	return m, err
}

// WriteReport writes the manifest as a short table.
func (m Manifest) WriteReport(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "records sent\t%d\t\n", m.Records)
	for _, k := range Kinds {
		fmt.Fprintf(tw, "  %s\t%d\t\n", k, m.RecordsByKind[k])
	}
	fmt.Fprintf(tw, "unique valid on-time IDs\t%d\t\n", m.UniqueIDs)
	for _, c := range slices.Sorted(maps.Keys(m.AmountByCurrency)) {
		fmt.Fprintf(tw, "  %s\t%d events\t%s\t\n", c, m.CountByCurrency[c], m.AmountByCurrency[c])
	}
	tw.Flush()
}
