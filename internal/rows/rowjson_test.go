package rows

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestRowJSONMatchesEncodingJSON checks each row type's columns, as load
// jobs get them (warehouse.AppendJSON), against encoding/json's reading of
// its JSON tags, on simulated payments, on strings that need escaping and
// on a row of every other table, by decoding both and comparing.
func TestRowJSONMatchesEncodingJSON(t *testing.T) {
	g, err := simulation.NewGenerator(simulation.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var events []payment.Event
	for len(events) < 2000 {
		r := g.Next()
		if e, err := payment.Parse(r.Value); err == nil {
			events = append(events, e)
		}
	}
	odd := events[0]
	odd.CustomerID = "a\"b\\c\u00e9\u2028\U0001F600 <&>"
	odd.MerchantID = "tab\tnew\nline\rbell\x07"
	odd.Extra = json.RawMessage(`{"note":"quote \" and \\ backslash","n":[1,2]}`)
	odd.DeviceID, odd.Region = "", ""
	events = append(events, odd)

	for i := range events {
		e := &events[i]
		score := fraud.Score{Score: uint8(i % 100), Reasons: uint16(i % 128)}
		loadedAt := time.Unix(1700000000, 123).UTC().Format(time.RFC3339Nano)
		tables := Tables{}
		tables.Loaded(e, nil, contract.Schemas{}, "batch/payments/0/0-10", kafkalog.Record{Partition: 3, Offset: int64(i)}, loadedAt, score)
		// The rows as the contract's JSON shape (payment.Wire) and the
		// tables' own columns, tagged, would be written by encoding/json.
		tx := txJSON{Wire: payment.ToWire(e), Extra: string(e.Extra), BatchID: "batch/payments/0/0-10", KafkaPartition: 3, KafkaOffset: int64(i), LoadedAt: loadedAt}
		reasons := score.ReasonCodes()
		if reasons == nil {
			reasons = []string{}
		}
		enriched := enrichedJSON{txJSON: tx, FraudScore: int(score.Score), FraudReasons: reasons, RiskLevel: score.RiskLevel()}
		for table, want := range map[string]any{contract.TableTransactions: tx, contract.TableEnriched: enriched} {
			r := tables[table][0]
			if _, ok := r.(warehouse.JSONRow); !ok {
				t.Fatalf("a %s row appends no JSON of its own", table)
			}
			sameJSON(t, warehouse.AppendJSON(nil, r), want)              // by hand
			sameJSON(t, warehouse.AppendJSON(nil, columnsOnly{r}), want) // through Columns, as Storage Write reads it
		}
	}
	at := "2026-12-06T10:00:00.5Z"
	for _, r := range []warehouse.Row{
		&metricRow{Minute: "2026-12-06T10:00:00Z", Currency: "EUR", Region: "eu", EventCount: 3, AmountSum: "12.30", FraudCount: 1, DuplicateCount: 2, BatchID: "b", KafkaPartition: 1, KafkaOffset: 7, LoadedAt: at},
		&dedupRow{TransactionID: "t", EventTime: at, KafkaPartition: 1, KafkaOffset: 9, DuplicateOfOffset: 4, IdenticalBytes: true, BatchID: "b", LoadedAt: at},
		&errorRow{KafkaTopic: "payments", KafkaOffset: 5, KafkaKey: "k", KafkaTimeMs: 1, Reason: "late", Detail: "d", Raw: "{}", RawEncoding: "utf8", TransactionID: "t", EventTime: at, BatchID: "b", LoadedAt: at},
		&errorRow{KafkaTopic: "payments", Reason: "malformed_json", Raw: "AAE=", RawEncoding: "base64", BatchID: "b", LoadedAt: at},
		&ledgerRow{BatchID: "b", KafkaTopic: "payments", KafkaPartition: 2, StartOffset: 10, EndOffset: 20, Records: 10, Loaded: 8, Duplicates: 1, Errors: 1,
			AmountByCurrency: []LedgerAmount{{Currency: "EUR", Amount: "1.00", Events: 1}, {Currency: "JPY", Amount: "5", Events: 2}},
			NextWindowStart:  3, NextWindowNewest: at, NextWindowFloors: []LedgerFloor{{FromOffset: 12, Floor: at}}, LatenessNS: 600e9, MaxWindowIDs: 5, LoadedAt: at},
		&ledgerRow{BatchID: "b", AmountByCurrency: []LedgerAmount{}, LoadedAt: at},
		&SchemaChange{Table: "transactions", Column: "tip", Type: "NUMERIC", Subject: "payments-value", Version: 2, SchemaID: 2, BatchID: "b", Topic: "payments", Partition: 1, FirstOffset: 9, LoadedAt: at},
		&SchemaChange{Table: "transactions", Column: "n", Type: "INT64", BatchID: "r", Topic: "payments", LoadedAt: at},
		&ReplayLedger{BatchID: "r", SourceBatchID: "b", KafkaTopic: "payments", Quarantined: 3, Loaded: 2, Duplicates: 1, AmountByCurrency: []LedgerAmount{{Currency: "EUR", Amount: "2.00", Events: 2}}, LoadedAt: at},
	} {
		sameJSON(t, warehouse.AppendJSON(nil, r), r)
	}
}

// columnsOnly hides a row's own JSON appender, so that it is encoded
// through its Columns.
type columnsOnly struct{ warehouse.Row }

// txJSON and enrichedJSON are the transactions and transactions_enriched
// rows as encoding/json would write them from their schema's names.
type txJSON struct {
	payment.Wire
	Extra          string `json:"extra,omitempty"`
	BatchID        string `json:"batch_id"`
	KafkaPartition int    `json:"kafka_partition"`
	KafkaOffset    int64  `json:"kafka_offset"`
	LoadedAt       string `json:"loaded_at"`
}

type enrichedJSON struct {
	txJSON
	FraudScore   int      `json:"fraud_score"`
	FraudReasons []string `json:"fraud_reasons"`
	RiskLevel    string   `json:"risk_level"`
}

func sameJSON(t *testing.T, got []byte, v any) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1] != '\n' {
		t.Fatalf("row %s does not end in a newline", got)
	}
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("hand-written row is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("rows differ:\nhand:          %s\nencoding/json: %s", got, want)
	}
}

// TestTypedColumnsFromExtra checks a record's typed columns: each takes
// its field's value from extra as a load job's JSON string carries it,
// the same by hand and through Columns; a null or absent field leaves its
// column out (NULL), and a field without a column stays in extra only.
func TestTypedColumnsFromExtra(t *testing.T) {
	g, err := simulation.NewGenerator(simulation.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var e payment.Event
	for e.TransactionID == "" {
		e, _ = payment.Parse(g.Next().Value)
	}
	e.Extra = json.RawMessage(`{"tier":"gold \"vip\"","tip":"1.5","n":5,"flag":true,"obj":{"a":[1]},"word":"abc","gone":null,"untyped":"x",` +
		`"far":"56000-01-01T00:00:00Z","wide":"12345678901234567890123456789012.5","at":"2026-12-06T10:00:00Z"}`)
	cols := []contract.Column{{Name: "tier", Type: "STRING"}, {Name: "tip", Type: "NUMERIC"}, {Name: "n", Type: "INT64"},
		{Name: "flag", Type: "BOOL"}, {Name: "obj", Type: "JSON"}, {Name: "word", Type: "JSON"}, {Name: "gone", Type: "STRING"}, {Name: "absent", Type: "DATE"},
		{Name: "far", Type: "TIMESTAMP"}, {Name: "wide", Type: "NUMERIC"}, {Name: "at", Type: "TIMESTAMP"}}
	tables := Tables{}
	tables.Loaded(&e, cols, contract.Schemas{Columns: cols}, "b", kafkalog.Record{Offset: 1}, "2026-12-06T10:00:00Z", fraud.Score{})
	// A JSON column takes the value itself (an object, the string "abc");
	// values their type cannot hold (year 56000, 32 whole digits in a
	// NUMERIC) are NULL, kept in extra.
	want := map[string]any{"tier": `gold "vip"`, "tip": "1.5", "n": "5", "flag": "true", "obj": map[string]any{"a": []any{1.0}}, "word": "abc",
		"at": "2026-12-06T10:00:00Z"}
	for _, table := range contract.TypedTables {
		r := tables[table][0]
		for _, b := range [][]byte{warehouse.AppendJSON(nil, r), warehouse.AppendJSON(nil, columnsOnly{r})} {
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s: %v: %s", table, err, b)
			}
			for name, v := range want {
				if !reflect.DeepEqual(got[name], v) {
					t.Errorf("%s: column %s = %#v, want %#v", table, name, got[name], v)
				}
			}
			for _, name := range []string{"gone", "absent", "untyped", "far", "wide"} {
				if _, ok := got[name]; ok {
					t.Errorf("%s: column %s written, want NULL", table, name)
				}
			}
			if got["extra"] != string(e.Extra) {
				t.Errorf("%s: extra = %v, want the record's extra fields whole", table, got["extra"])
			}
		}
	}
}

// TestEachFieldReadsAsEncodingJSON holds the hand scan of extra to
// encoding/json's reading, on values of every kind, nested, escaped.
func TestEachFieldReadsAsEncodingJSON(t *testing.T) {
	for _, obj := range []string{
		`{}`,
		`{"a":1}`,
		`{"a":"x,y}","b":{"c":[1,{"d":"]}"}],"e":"\""},"f":-1.5e3,"g":true,"h":null,"i":[],"j":"\\"}`,
		`{"tier":"gold","tip":"1.5","n":[[1,2],[3]],"m":{"k":{"k":{}}},"s":"a\\\"b"}`,
	} {
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(obj), &want); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		eachField([]byte(obj), func(name, raw []byte) { got[string(name)] = string(raw) })
		if len(got) != len(want) {
			t.Errorf("%s: fields %v, want %d", obj, got, len(want))
		}
		for k, v := range want {
			if got[k] != string(v) {
				t.Errorf("%s: field %s = %q, want %q", obj, k, got[k], v)
			}
		}
	}
}
