package rows

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// TestRowJSONMatchesEncodingJSON checks the hand-written row encoders
// against encoding/json on simulated payments and on strings that need
// escaping, by decoding both and comparing.
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
		tx := toTxRow(e, "batch/payments/0/0-10", kafkalog.Record{Partition: 3, Offset: int64(i)}, time.Unix(1700000000, 123).UTC().Format(time.RFC3339Nano))
		score := fraud.Score{Score: uint8(i % 100), Reasons: uint16(i % 128)}
		reasons := score.ReasonCodes()
		if reasons == nil {
			reasons = []string{}
		}
		er := enrichedRow{txRow: tx, FraudScore: int(score.Score), FraudReasons: reasons, RiskLevel: score.RiskLevel()}
		sameJSON(t, appendTxRow(nil, &tx), tx)
		sameJSON(t, appendEnrichedRow(nil, &er), er)
	}
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
