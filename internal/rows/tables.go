package rows

import (
	"bytes"
	"encoding/base64"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
)

// Row shapes of the tables (schema/*.sql). Optional strings are omitted
// when empty, which loads them as NULL.
type txRow struct {
	payment.Wire
	Extra          string `json:"extra,omitempty"`
	BatchID        string `json:"batch_id"`
	KafkaPartition int    `json:"kafka_partition"`
	KafkaOffset    int64  `json:"kafka_offset"`
	LoadedAt       string `json:"loaded_at"`
}

type enrichedRow struct {
	txRow
	FraudScore   int      `json:"fraud_score"`
	FraudReasons []string `json:"fraud_reasons"`
	RiskLevel    string   `json:"risk_level"`
}

type metricRow struct {
	Minute         string `json:"minute"`
	Currency       string `json:"currency"`
	Region         string `json:"region"`
	EventCount     int    `json:"event_count"`
	AmountSum      string `json:"amount_sum"`
	FraudCount     int    `json:"fraud_count"`
	DuplicateCount int    `json:"duplicate_count"`
	BatchID        string `json:"batch_id"`
	KafkaPartition int    `json:"kafka_partition"`
	KafkaOffset    int64  `json:"kafka_offset"`
	LoadedAt       string `json:"loaded_at"`
}

type dedupRow struct {
	TransactionID     string `json:"transaction_id"`
	EventTime         string `json:"event_time"`
	KafkaPartition    int    `json:"kafka_partition"`
	KafkaOffset       int64  `json:"kafka_offset"`
	DuplicateOfOffset int64  `json:"duplicate_of_offset"`
	IdenticalBytes    bool   `json:"identical_bytes"`
	BatchID           string `json:"batch_id"`
	LoadedAt          string `json:"loaded_at"`
}

type errorRow struct {
	KafkaTopic     string `json:"kafka_topic"`
	KafkaPartition int    `json:"kafka_partition"`
	KafkaOffset    int64  `json:"kafka_offset"`
	KafkaKey       string `json:"kafka_key,omitempty"`
	KafkaTimestamp string `json:"kafka_timestamp,omitempty"` // empty (NULL) when not one to trust
	KafkaTimeMs    int64  `json:"kafka_timestamp_ms"`
	Reason         string `json:"reason"`
	Detail         string `json:"detail,omitempty"`
	Raw            string `json:"raw"`
	RawEncoding    string `json:"raw_encoding"`
	TransactionID  string `json:"transaction_id,omitempty"`
	EventTime      string `json:"event_time,omitempty"`
	BatchID        string `json:"batch_id"`
	LoadedAt       string `json:"loaded_at"`
}

// LedgerAmount is one currency's total in a ledger row.
type LedgerAmount struct {
	Currency string `json:"currency"`
	Amount   string `json:"amount"`
	Events   int    `json:"events"`
}

type ledgerRow struct {
	BatchID          string         `json:"batch_id"`
	KafkaTopic       string         `json:"kafka_topic"`
	KafkaPartition   int            `json:"kafka_partition"`
	StartOffset      int64          `json:"start_offset"`
	EndOffset        int64          `json:"end_offset"`
	Records          int64          `json:"records"`
	Loaded           int            `json:"loaded"`
	Duplicates       int            `json:"duplicates"`
	Errors           int            `json:"errors"`
	Late             int            `json:"late"`
	Control          int            `json:"control"`
	Aborted          int            `json:"aborted"`
	Skipped          int64          `json:"skipped"`
	AmountByCurrency []LedgerAmount `json:"amount_by_currency"`
	NextWindowStart  int64          `json:"next_window_start"`
	NextWindowNewest string         `json:"next_window_newest,omitempty"`
	NextWindowFloors []LedgerFloor  `json:"next_window_floors,omitempty"`
	LatenessNS       int64          `json:"allowed_lateness_ns"`
	MaxWindowIDs     int            `json:"max_window_ids"`
	LoadedAt         string         `json:"loaded_at"`
}

// LedgerFloor is a raise of the dedup window's floor in a ledger row.
type LedgerFloor struct {
	FromOffset int64  `json:"from_offset"`
	Floor      string `json:"floor"` // RFC 3339, nanoseconds kept
}

type metricKey struct {
	minute           time.Time
	currency, region string
}

type metricAcc struct {
	events, fraud, dups int
	amount              payment.Sum
}

// AppendLoaded writes a loaded event's transactions and
// transactions_enriched rows, reusing buf.
func AppendLoaded(rows map[string]*bytes.Buffer, buf []byte, e *payment.Event, batchID string, r kafkalog.Record, loadedAt string, score fraud.Score) []byte {
	tx := toTxRow(e, batchID, r, loadedAt)
	buf = appendTxRow(buf[:0], &tx)
	rows[contract.TableTransactions].Write(buf)
	reasons := score.ReasonCodes()
	if reasons == nil {
		reasons = []string{}
	}
	enriched := enrichedRow{txRow: tx, FraudScore: int(score.Score), FraudReasons: reasons, RiskLevel: score.RiskLevel()}
	buf = appendEnrichedRow(buf[:0], &enriched)
	rows[contract.TableEnriched].Write(buf)
	return buf
}

// Amounts sums loaded amounts per currency, exactly.
type Amounts map[string]*metricAcc

// Add counts e's amount.
func (c Amounts) Add(e *payment.Event) {
	if c[e.Currency] == nil {
		c[e.Currency] = &metricAcc{}
	}
	c[e.Currency].events++
	c[e.Currency].amount.Add(e.Amount)
}

// Sums are the totals as ledger rows and as decimal strings by currency.
func (c Amounts) Sums() ([]LedgerAmount, map[string]string) {
	rows, byCurrency := []LedgerAmount{}, map[string]string{}
	for _, cur := range slices.Sorted(maps.Keys(c)) {
		amt := c[cur].amount.String()
		rows = append(rows, LedgerAmount{Currency: cur, Amount: amt, Events: c[cur].events})
		byCurrency[cur] = amt
	}
	return rows, byCurrency
}

func toTxRow(e *payment.Event, batchID string, r kafkalog.Record, loadedAt string) txRow {
	return txRow{Wire: payment.ToWire(e), Extra: string(e.Extra), BatchID: batchID, KafkaPartition: r.Partition, KafkaOffset: r.Offset, LoadedAt: loadedAt}
}

// toErrorRow keeps the record's bytes as they were: text when UTF-8,
// base64 otherwise, so nothing rejected is ever lost.
func toErrorRow(spec contract.Spec, r kafkalog.Record, reason, detail string, e *payment.Event, batchID, loadedAt string) errorRow {
	row := errorRow{KafkaTopic: spec.Topic, KafkaPartition: r.Partition, KafkaOffset: r.Offset, KafkaTimeMs: r.Time.UnixMilli(),
		Reason: reason, Detail: detail, Raw: string(r.Value), RawEncoding: "utf8", BatchID: batchID, LoadedAt: loadedAt}
	if ts, ok := payment.KafkaTime(r.Time); ok {
		row.KafkaTimestamp = ts.Format(time.RFC3339Nano)
	}
	if !utf8.Valid(r.Value) {
		row.Raw, row.RawEncoding = base64.StdEncoding.EncodeToString(r.Value), "base64"
	}
	if utf8.Valid(r.Key) {
		row.KafkaKey = string(r.Key)
	} else {
		row.KafkaKey = "base64:" + base64.StdEncoding.EncodeToString(r.Key)
	}
	if e != nil {
		row.TransactionID, row.EventTime = e.TransactionID, e.EventTime.Format(time.RFC3339Nano)
	}
	return row
}
