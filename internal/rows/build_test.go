package rows

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// validRecords are n valid payments of one partition at offsets 0..n-1.
func validRecords(t *testing.T, n int) []Record {
	t.Helper()
	opts := simulation.DefaultOptions()
	opts.Partitions, opts.DuplicateRatio, opts.MalformedRatio, opts.LateRatio = 1, 0, 0, 0
	g, err := simulation.NewGenerator(opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for len(out) < n {
		r := g.Next()
		at := opts.StartTime.Add(time.Hour)
		kr := kafkalog.Record{Partition: 0, Offset: int64(len(out)), Key: r.Key, Value: r.Value, Time: at}
		e, err := payment.ParseRecord(r.Key, r.Value, at, 10*time.Minute)
		if err != nil {
			t.Fatalf("a generated valid record does not parse: %v", err)
		}
		out = append(out, Record{Record: kr, Event: e})
	}
	return out
}

// lines encodes a table's rows as a load job's JSON and decodes each.
func lines(t *testing.T, rows []warehouse.Row) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(warehouse.NDJSON(nil, rows)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("row %q: %v", sc.Text(), err)
		}
		out = append(out, row)
	}
	return out
}

func TestBuildAppliesTheRecordedDecisions(t *testing.T) {
	recs := validRecords(t, 6)
	// Offset 4 does not parse.
	recs[4].Value, recs[4].ParseErr = []byte("{"), &payment.Error{Reason: payment.ReasonMalformedJSON, Detail: "unexpected end"}
	scores := func(n int) contract.Enrichment {
		e := contract.Enrichment{Scores: make([]uint8, n), Reasons: make([]uint16, n)}
		if n > 0 {
			e.Scores[0] = 90 // high risk
		}
		return e
	}
	for _, c := range []struct {
		name      string
		recs      []Record
		end       int64 // the range's end; past the records: markers
		d         contract.Decisions
		enr       contract.Enrichment
		tally     kafkalog.Tally
		wantRows  map[string]int
		wantTotal contract.Totals
		wantErr   string
	}{
		{
			name: "all loaded", recs: recs[:3], end: 3,
			d: contract.Decisions{Records: 3, Loaded: 3}, enr: scores(3),
			wantRows:  map[string]int{contract.TableTransactions: 3, contract.TableEnriched: 3, contract.TableBatchLedger: 1},
			wantTotal: contract.Totals{Records: 3, Loaded: 3, HighRisk: 1},
		},
		{
			name: "each outcome", recs: recs, end: 6,
			d: contract.Decisions{Records: 6, Loaded: 2, Invalid: 1,
				DuplicateOffsets: contract.Offsets{1}, DuplicateOf: contract.Offsets{0}, DuplicateIdentical: contract.Flags{true},
				LateOffsets: contract.Offsets{2}, ConflictOffsets: contract.Offsets{3}, ConflictOf: contract.Offsets{0}},
			enr:       scores(2),
			wantRows:  map[string]int{contract.TableTransactions: 2, contract.TableEnriched: 2, contract.TableDedupAudit: 1, contract.TableIngestErrors: 3, contract.TableBatchLedger: 1},
			wantTotal: contract.Totals{Records: 6, Loaded: 2, Duplicates: 1, Errors: 2, Late: 1, HighRisk: 1},
		},
		{
			name: "transaction markers", recs: recs[:2], end: 4,
			d: contract.Decisions{Records: 2, Loaded: 2, Control: 2}, enr: scores(2), tally: kafkalog.Tally{Control: 2},
			wantRows:  map[string]int{contract.TableTransactions: 2, contract.TableEnriched: 2, contract.TableBatchLedger: 1},
			wantTotal: contract.Totals{Records: 2, Loaded: 2, Control: 2, HighRisk: 1},
		},
		{
			name: "an offset compacted away", recs: recs[:2], end: 3,
			d: contract.Decisions{Records: 2, Loaded: 2}, enr: scores(2),
			wantRows:  map[string]int{contract.TableTransactions: 2, contract.TableEnriched: 2, contract.TableBatchLedger: 1},
			wantTotal: contract.Totals{Records: 2, Loaded: 2, Skipped: 1, HighRisk: 1},
		},
		{name: "fewer scores than loaded records", recs: recs[:3], end: 3, d: contract.Decisions{Records: 3, Loaded: 3}, enr: scores(2), wantErr: "more loaded records than scores"},
		{name: "more scores than loaded records", recs: recs[:3], end: 3, d: contract.Decisions{Records: 3, Loaded: 3}, enr: scores(4), wantErr: "4 scores"},
		{name: "markers the decisions did not count", recs: recs[:2], end: 3, d: contract.Decisions{Records: 2, Loaded: 2}, enr: scores(2), tally: kafkalog.Tally{Control: 1}, wantErr: "1 markers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := contract.Spec{Range: contract.Range{Topic: "payments", Partition: 0, Start: 0, End: c.end}}
			steps := 0
			rows, totals, err := Build(contract.LoadInput{Spec: spec, Decisions: c.d, Enrichment: c.enr}, c.recs, c.tally,
				time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), func(int) { steps++ })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if steps != len(c.recs) {
				t.Errorf("%d steps for %d records", steps, len(c.recs))
			}
			for _, table := range contract.LoadOrder {
				if got := len(lines(t, rows[table])); got != c.wantRows[table] && table != contract.TableMetricsMinute {
					t.Errorf("%s: %d rows, want %d", table, got, c.wantRows[table])
				}
			}
			want := c.wantTotal
			if totals.Records != want.Records || totals.Loaded != want.Loaded || totals.Duplicates != want.Duplicates || totals.Errors != want.Errors ||
				totals.Late != want.Late || totals.Control != want.Control || totals.Skipped != want.Skipped || totals.HighRisk != want.HighRisk {
				t.Errorf("totals %+v, want %+v", totals, want)
			}
			// The ledger explains every offset, and its amounts are the
			// loaded records', exactly.
			ledger := lines(t, rows[contract.TableBatchLedger])[0]
			var explained float64
			for _, k := range []string{"loaded", "duplicates", "errors", "late", "control", "aborted", "skipped"} {
				explained += ledger[k].(float64)
			}
			if explained != float64(c.end) || ledger["records"].(float64) != float64(c.end) {
				t.Errorf("ledger %v explains %v of %d offsets", ledger, explained, c.end)
			}
			sums := map[string]*big.Rat{}
			for _, tx := range lines(t, rows[contract.TableTransactions]) {
				cur := tx["currency"].(string)
				amt, ok := new(big.Rat).SetString(tx["amount"].(string))
				if !ok {
					t.Fatalf("amount %v", tx["amount"])
				}
				if sums[cur] == nil {
					sums[cur] = new(big.Rat)
				}
				sums[cur].Add(sums[cur], amt)
			}
			for cur, s := range totals.AmountByCurrency {
				want, _ := new(big.Rat).SetString(s)
				if sums[cur] == nil || sums[cur].Cmp(want) != 0 {
					t.Errorf("%s: rows sum to %v, ledger says %s", cur, sums[cur], s)
				}
			}
			if len(sums) != len(totals.AmountByCurrency) {
				t.Errorf("currencies in rows %d, in totals %d", len(sums), len(totals.AmountByCurrency))
			}
		})
	}
}
