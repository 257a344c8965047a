package rows

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/warehouse"
)

// Row shapes of the tables (schema/*.sql). Optional strings are omitted
// when empty, which loads them as NULL.
//
// A transaction's row points at its parsed event rather than copying its
// fields: a batch's rows live until every table is written, and rows of
// strings would be tens of thousands of pointers for the garbage
// collector to scan on every cycle meanwhile.
type txRow struct {
	e *payment.Event
	// eventTime and amount are formatted once, for both tables.
	eventTime, amount string
	batchID, loadedAt string
	partition         int
	offset            int64
	typed             []typedValue // its new fields' typed columns
}

// typedValue is a typed column's value, as a load job's JSON string
// carries it (warehouse.Columns), or a JSON column's JSON text.
type typedValue struct {
	name, text string
	json       bool
}

// typedValues are the values of a record's typed columns, read from its
// extra fields (the schema's, written as JSON by the registry's reader):
// of its schema's new fields (columns), those with a column recorded for
// the record's offset.
// A field that is absent or null, or whose value its type cannot hold (a
// timestamp past year 9999, a decimal past its type's digits: a producer
// may write what its schema declares it will not), leaves its column NULL;
// the value stays in extra, and the rows, a pure function of the record,
// load.
func typedValues(extra []byte, columns []contract.Column, recorded contract.Schemas, offset int64) []typedValue {
	if len(columns) == 0 || len(extra) == 0 {
		return nil
	}
	out := make([]typedValue, 0, len(columns))
	eachField(extra, func(name, raw []byte) {
		i := slices.IndexFunc(columns, func(c contract.Column) bool { return c.Name == string(name) })
		if i < 0 || string(raw) == "null" || recorded.Column(columns[i].Name, offset) == "" {
			return
		}
		c := columns[i]
		if c.Type == "JSON" {
			out = append(out, typedValue{name: c.Name, text: string(raw), json: true})
			return
		}
		var text string
		switch {
		case raw[0] != '"':
			text = string(raw) // a number or a boolean
		case !slices.Contains(raw, '\\'):
			text = string(raw[1 : len(raw)-1])
		case json.Unmarshal(raw, &text) != nil:
			return
		}
		if fits(c.Type, text) {
			out = append(out, typedValue{name: c.Name, text: text})
		}
	})
	return out
}

// eachField calls fn with each top-level field of a JSON object, its name
// (without escapes: schema field names have none) and its value's JSON,
// by hand: encoding/json's map cost the Avro catch-up more than the rows'
// other work. The object is the registry's reader's, well-formed.
func eachField(obj []byte, fn func(name, raw []byte)) {
	i := 1 // past '{'
	for i < len(obj) && obj[i] == '"' {
		end := i + 1
		for end < len(obj) && obj[end] != '"' {
			end++
		}
		name := obj[i+1 : end]
		start := end + 2 // past '":'
		i = skipValue(obj, start)
		if i > len(obj) || start > i {
			return
		}
		fn(name, obj[start:i])
		i++ // past ',' or '}'
	}
}

// skipValue is the end of the JSON value starting at i.
func skipValue(b []byte, i int) int {
	depth, inString := 0, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
				if depth == 0 {
					return i + 1
				}
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i // the enclosing object's end
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case c == ',' && depth == 0:
			return i
		}
	}
	return i
}

// fits says whether a column of type typ holds text, a value as a load
// job's JSON string carries it.
func fits(typ, text string) bool {
	switch typ {
	case "INT64":
		_, err := strconv.ParseInt(text, 10, 64)
		return err == nil
	case "FLOAT64":
		_, err := strconv.ParseFloat(text, 64)
		return err == nil
	case "BOOL":
		return text == "true" || text == "false"
	case "NUMERIC":
		return decimalFits(text, 29, 9)
	case "BIGNUMERIC":
		return decimalFits(text, 38, 38)
	case "TIMESTAMP":
		t, err := time.Parse(time.RFC3339Nano, text)
		return err == nil && t.Year() >= 1 && t.Year() <= 9999
	case "DATE":
		_, err := time.Parse(time.DateOnly, text)
		return err == nil
	case "BYTES":
		_, err := base64.StdEncoding.DecodeString(text)
		return err == nil
	}
	return utf8.ValidString(text) // STRING
}

// decimalFits says whether text is a decimal of at most whole digits
// before the point and frac after it.
func decimalFits(text string, whole, frac int) bool {
	text = strings.TrimPrefix(text, "-")
	w, f, _ := strings.Cut(text, ".")
	if w == "" || len(w) > whole || len(f) > frac {
		return false
	}
	for _, r := range w + f {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

type enrichedRow struct {
	tx    *txRow
	score fraud.Score
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

// Each row type gives its columns as its JSON tags name them (rowjson_test
// holds them to encoding/json's reading of the tags); an optional column
// left empty is NULL.

func (tx *txRow) Columns(c warehouse.Columns) {
	e := tx.e
	c.String("transaction_id", e.TransactionID)
	c.String("event_time", tx.eventTime)
	c.String("amount", tx.amount)
	c.String("currency", e.Currency)
	c.String("customer_id", e.CustomerID)
	c.String("merchant_id", e.MerchantID)
	optional(c, "merchant_category", e.MerchantCategory)
	c.String("card_id", e.CardID)
	optional(c, "card_last4", e.CardLast4)
	optional(c, "card_country", e.CardCountry)
	c.String("payment_method", e.PaymentMethod)
	c.String("status", e.Status)
	optional(c, "region", e.Region)
	optional(c, "country", e.Country)
	optional(c, "device_id", e.DeviceID)
	optional(c, "device_type", e.DeviceType)
	optional(c, "ip_address", e.IPAddress)
	if len(e.Extra) > 0 {
		c.String("extra", string(e.Extra))
	}
	for _, v := range tx.typed {
		if v.json {
			c.JSON(v.name, v.text)
		} else {
			c.String(v.name, v.text)
		}
	}
	c.String("batch_id", tx.batchID)
	c.Int("kafka_partition", int64(tx.partition))
	c.Int("kafka_offset", tx.offset)
	c.String("loaded_at", tx.loadedAt)
}

func (r *enrichedRow) Columns(c warehouse.Columns) {
	r.tx.Columns(c)
	c.Int("fraud_score", int64(r.score.Score))
	reasons := r.score.ReasonCodes()
	if reasons == nil {
		reasons = []string{}
	}
	c.Strings("fraud_reasons", reasons)
	c.String("risk_level", r.score.RiskLevel())
}

func (r *metricRow) Columns(c warehouse.Columns) {
	c.String("minute", r.Minute)
	c.String("currency", r.Currency)
	c.String("region", r.Region)
	c.Int("event_count", int64(r.EventCount))
	c.String("amount_sum", r.AmountSum)
	c.Int("fraud_count", int64(r.FraudCount))
	c.Int("duplicate_count", int64(r.DuplicateCount))
	c.String("batch_id", r.BatchID)
	c.Int("kafka_partition", int64(r.KafkaPartition))
	c.Int("kafka_offset", r.KafkaOffset)
	c.String("loaded_at", r.LoadedAt)
}

func (r *dedupRow) Columns(c warehouse.Columns) {
	c.String("transaction_id", r.TransactionID)
	c.String("event_time", r.EventTime)
	c.Int("kafka_partition", int64(r.KafkaPartition))
	c.Int("kafka_offset", r.KafkaOffset)
	c.Int("duplicate_of_offset", r.DuplicateOfOffset)
	c.Bool("identical_bytes", r.IdenticalBytes)
	c.String("batch_id", r.BatchID)
	c.String("loaded_at", r.LoadedAt)
}

func (r *errorRow) Columns(c warehouse.Columns) {
	c.String("kafka_topic", r.KafkaTopic)
	c.Int("kafka_partition", int64(r.KafkaPartition))
	c.Int("kafka_offset", r.KafkaOffset)
	optional(c, "kafka_key", r.KafkaKey)
	optional(c, "kafka_timestamp", r.KafkaTimestamp)
	c.Int("kafka_timestamp_ms", r.KafkaTimeMs)
	c.String("reason", r.Reason)
	optional(c, "detail", r.Detail)
	c.String("raw", r.Raw)
	c.String("raw_encoding", r.RawEncoding)
	optional(c, "transaction_id", r.TransactionID)
	optional(c, "event_time", r.EventTime)
	c.String("batch_id", r.BatchID)
	c.String("loaded_at", r.LoadedAt)
}

func (r *ledgerRow) Columns(c warehouse.Columns) {
	c.String("batch_id", r.BatchID)
	c.String("kafka_topic", r.KafkaTopic)
	c.Int("kafka_partition", int64(r.KafkaPartition))
	c.Int("start_offset", r.StartOffset)
	c.Int("end_offset", r.EndOffset)
	c.Int("records", r.Records)
	c.Int("loaded", int64(r.Loaded))
	c.Int("duplicates", int64(r.Duplicates))
	c.Int("errors", int64(r.Errors))
	c.Int("late", int64(r.Late))
	c.Int("control", int64(r.Control))
	c.Int("aborted", int64(r.Aborted))
	c.Int("skipped", r.Skipped)
	c.Records("amount_by_currency", AmountRows(r.AmountByCurrency))
	c.Int("next_window_start", r.NextWindowStart)
	optional(c, "next_window_newest", r.NextWindowNewest)
	if len(r.NextWindowFloors) > 0 {
		floors := make([]warehouse.Row, len(r.NextWindowFloors))
		for i := range r.NextWindowFloors {
			floors[i] = &r.NextWindowFloors[i]
		}
		c.Records("next_window_floors", floors)
	}
	c.Int("allowed_lateness_ns", r.LatenessNS)
	c.Int("max_window_ids", int64(r.MaxWindowIDs))
	optional(c, "schemas", r.Schemas)
	c.String("loaded_at", r.LoadedAt)
}

func (a *LedgerAmount) Columns(c warehouse.Columns) {
	c.String("currency", a.Currency)
	c.String("amount", a.Amount)
	c.Int("events", int64(a.Events))
}

// AmountRows are a ledger's amounts as the rows of its RECORD column.
func AmountRows(amounts []LedgerAmount) []warehouse.Row {
	out := make([]warehouse.Row, len(amounts))
	for i := range amounts {
		out[i] = &amounts[i]
	}
	return out
}

func (f *LedgerFloor) Columns(c warehouse.Columns) {
	c.Int("from_offset", f.FromOffset)
	c.String("floor", f.Floor)
}

// SchemaChange is a row of schema_changes: a typed column a batch or a
// replay recorded (contract.Column).
type SchemaChange struct {
	Table       string `json:"table_name"`
	Column      string `json:"column_name"`
	Type        string `json:"column_type"`
	Subject     string `json:"schema_subject,omitempty"`
	Version     int    `json:"schema_version,omitempty"`
	SchemaID    int    `json:"schema_id,omitempty"`
	BatchID     string `json:"batch_id"`
	Topic       string `json:"kafka_topic"`
	Partition   int    `json:"kafka_partition"`
	FirstOffset int64  `json:"first_offset"`
	LoadedAt    string `json:"loaded_at"`
}

func (r *SchemaChange) Columns(c warehouse.Columns) {
	c.String("table_name", r.Table)
	c.String("column_name", r.Column)
	c.String("column_type", r.Type)
	optional(c, "schema_subject", r.Subject)
	if r.SchemaID > 0 {
		c.Int("schema_version", int64(r.Version))
		c.Int("schema_id", int64(r.SchemaID))
	}
	c.String("batch_id", r.BatchID)
	c.String("kafka_topic", r.Topic)
	c.Int("kafka_partition", int64(r.Partition))
	c.Int("first_offset", r.FirstOffset)
	c.String("loaded_at", r.LoadedAt)
}

// SchemaChanges adds the schema_changes rows of columns, one per typed
// table each.
func (t Tables) SchemaChanges(columns []contract.Column, batchID, topic string, partition int, loadedAt string) {
	for _, col := range columns {
		for _, table := range contract.TypedTables {
			t.Add(contract.TableSchemaChanges, &SchemaChange{Table: table, Column: col.Name, Type: col.Type, Subject: col.Subject, Version: col.Version,
				SchemaID: col.SchemaID, BatchID: batchID, Topic: topic, Partition: partition, FirstOffset: col.From, LoadedAt: loadedAt})
		}
	}
}

// Order is the order to write t's tables in: order, with schema_changes
// before the last (the ledger) when t has rows for it.
func (t Tables) Order(order []string) []string {
	if len(t[contract.TableSchemaChanges]) == 0 {
		return order
	}
	return slices.Insert(slices.Clone(order), len(order)-1, contract.TableSchemaChanges)
}

func optional(c warehouse.Columns, name, v string) {
	if v != "" {
		c.String(name, v)
	}
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
	Schemas          string         `json:"schemas,omitempty"` // contract.Schemas as JSON
	LoadedAt         string         `json:"loaded_at"`
}

// ReplayLedger is a quarantine replay's row in quarantine_replays.
type ReplayLedger struct {
	BatchID          string         `json:"batch_id"`
	SourceBatchID    string         `json:"source_batch_id"`
	KafkaTopic       string         `json:"kafka_topic"`
	KafkaPartition   int            `json:"kafka_partition"`
	Quarantined      int            `json:"quarantined"`
	Loaded           int            `json:"loaded"`
	Duplicates       int            `json:"duplicates"`
	AmountByCurrency []LedgerAmount `json:"amount_by_currency"`
	LoadedAt         string         `json:"loaded_at"`
}

func (r *ReplayLedger) Columns(c warehouse.Columns) {
	c.String("batch_id", r.BatchID)
	c.String("source_batch_id", r.SourceBatchID)
	c.String("kafka_topic", r.KafkaTopic)
	c.Int("kafka_partition", int64(r.KafkaPartition))
	c.Int("quarantined", int64(r.Quarantined))
	c.Int("loaded", int64(r.Loaded))
	c.Int("duplicates", int64(r.Duplicates))
	c.Records("amount_by_currency", AmountRows(r.AmountByCurrency))
	c.String("loaded_at", r.LoadedAt)
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

// Loaded adds a loaded event's transactions and transactions_enriched
// rows to t.
func (t Tables) Loaded(e *payment.Event, columns []contract.Column, recorded contract.Schemas, batchID string, r kafkalog.Record, loadedAt string, score fraud.Score) {
	var l loadedRows
	l.add(e, columns, recorded, batchID, r, loadedAt, score)
	l.into(t)
}

// loadedRows holds a batch's transactions and transactions_enriched rows,
// one slice of each for the batch rather than two allocations a record.
// A row is never changed once added, so a pointer into an array that
// append has since outgrown still reads the same row.
type loadedRows struct {
	txs      []txRow
	enriched []enrichedRow
	rows     [2][]warehouse.Row // the two tables' rows, in order
}

func newLoadedRows(n int) loadedRows {
	return loadedRows{txs: make([]txRow, 0, n), enriched: make([]enrichedRow, 0, n),
		rows: [2][]warehouse.Row{make([]warehouse.Row, 0, n), make([]warehouse.Row, 0, n)}}
}

func (l *loadedRows) add(e *payment.Event, columns []contract.Column, recorded contract.Schemas, batchID string, r kafkalog.Record, loadedAt string, score fraud.Score) {
	l.txs = append(l.txs, txRow{e: e, eventTime: e.EventTime.UTC().Format(time.RFC3339Nano), amount: e.Amount.String(),
		batchID: batchID, loadedAt: loadedAt, partition: r.Partition, offset: r.Offset, typed: typedValues(e.Extra, columns, recorded, r.Offset)})
	tx := &l.txs[len(l.txs)-1]
	l.enriched = append(l.enriched, enrichedRow{tx: tx, score: score})
	l.rows[0] = append(l.rows[0], tx)
	l.rows[1] = append(l.rows[1], &l.enriched[len(l.enriched)-1])
}

// into appends the rows to their tables in t.
func (l *loadedRows) into(t Tables) {
	t[contract.TableTransactions] = append(t[contract.TableTransactions], l.rows[0]...)
	t[contract.TableEnriched] = append(t[contract.TableEnriched], l.rows[1]...)
}

// Tables are a batch's rows by table, typed; each sink encodes them in
// its own format.
type Tables map[string][]warehouse.Row

// Add appends a row to table.
func (t Tables) Add(table string, r warehouse.Row) { t[table] = append(t[table], r) }

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

// toErrorRow keeps the record's bytes as they were: text when UTF-8,
// base64 otherwise, so nothing rejected is ever lost.
func toErrorRow(spec contract.Spec, r kafkalog.Record, reason, detail string, e *payment.Event, batchID, loadedAt string) *errorRow {
	row := &errorRow{KafkaTopic: spec.Topic, KafkaPartition: r.Partition, KafkaOffset: r.Offset, KafkaTimeMs: r.Time.UnixMilli(),
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
