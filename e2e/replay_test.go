package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// checkQuarantineReplay replays the quarantine of an ingested stream in
// two steps (partition 0, then all, which replays partition 0 again) and
// checks it against the oracle: every late record whose transaction_id
// was not loaded on time is loaded exactly once, under its replay's ID,
// with the amounts the oracle sums; a second replay loads nothing; the
// replay ledger and reconciliation balance.
func checkQuarantineReplay(t *testing.T, e *Stack, m simulation.Manifest) {
	t.Helper()
	ctx := context.Background()
	cfg := e.Operator.Config

	// What the oracle expects: replays run in partition and offset order.
	oracle := simulation.NewOracle(cfg.AllowedLateness)
	wantLoaded, wantStay := 0, 0
	wantAmounts := map[string]payment.Amount{}
	for p := range m.Partitions {
		onTime, replayed := map[string]bool{}, map[string]bool{}
		var late []payment.Event
		err := kafkalog.ReadRange(ctx, cfg.Kafka(), cfg.Topic, p, 0, m.EndOffsets[p], func(r kafkalog.Record) error {
			switch v := oracle.Observe(p, r.Offset, r.Key, r.Value, r.Time); v.Outcome {
			case simulation.OutcomeLoaded:
				onTime[v.TransactionID] = true
			case simulation.OutcomeLate:
				late = append(late, v.Event)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range late {
			if onTime[ev.TransactionID] || replayed[ev.TransactionID] {
				wantStay++
				continue
			}
			replayed[ev.TransactionID] = true
			wantLoaded++
			sum := wantAmounts[ev.Currency]
			sum.Minor, sum.Scale = sum.Minor+ev.Amount.Minor, ev.Amount.Scale
			wantAmounts[ev.Currency] = sum
		}
	}
	if wantLoaded == 0 {
		t.Fatal("the stream has no late record to replay; the check would prove nothing")
	}

	first, err := e.Operator.Quarantined(ctx, contract.ReasonLate, []int{0}, 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Operator.ReplayQuarantine(ctx, contract.ReasonLate, first); err != nil {
		t.Fatal(err)
	}
	all, err := e.Operator.Quarantined(ctx, contract.ReasonLate, nil, 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	var lateInLedger int64
	for _, b := range all {
		lateInLedger += b.Records
	}
	if int(lateInLedger) != m.ErrorsByReason["late"] {
		t.Errorf("the ledger's batches hold %d late records, the manifest %d", lateInLedger, m.ErrorsByReason["late"])
	}
	res, err := e.Operator.ReplayQuarantine(ctx, contract.ReasonLate, all)
	if err != nil {
		t.Fatal(err)
	}
	gotLoaded, gotStay, already := 0, 0, 0
	for _, r := range res {
		if r.Already {
			already++
			continue
		}
		gotLoaded += r.Totals.Loaded
		gotStay += r.Totals.Duplicates
	}
	if already != len(first) {
		t.Errorf("the second replay found %d batches replayed before, want partition 0's %d", already, len(first))
	}
	// Partition 0's figures came with the first replay: read them all
	// from the replay ledger and the rows.
	ds := fmt.Sprintf("`%s.%s", e.Operator.BigQuery.Project(), cfg.BigQueryDataset)
	ledger := rows(t, e, "SELECT SUM(loaded), SUM(duplicates), SUM(quarantined), COUNT(*) FROM "+ds+".quarantine_replays`")[0]
	if ledger[0] != int64(wantLoaded) || ledger[1] != int64(wantStay) || ledger[2] != lateInLedger || ledger[3] != int64(len(all)) {
		t.Errorf("quarantine_replays: loaded %v, stayed %v, quarantined %v in %v replays; want %d, %d, %d in %d",
			ledger[0], ledger[1], ledger[2], ledger[3], wantLoaded, wantStay, lateInLedger, len(all))
	}
	if gotLoaded > wantLoaded || gotStay > wantStay {
		t.Errorf("the second replay loaded %d and left %d; the whole stream has only %d and %d", gotLoaded, gotStay, wantLoaded, wantStay)
	}
	t.Logf("quarantine replay: %d late records in %d batches; %d loaded, %d stay as duplicates (oracle: %d, %d)",
		lateInLedger, len(all), ledger[0], ledger[1], wantLoaded, wantStay)
	gotAmounts := map[string]string{}
	for _, row := range rows(t, e, "SELECT currency, CAST(SUM(amount) AS STRING), COUNT(*) FROM "+ds+".transactions` WHERE STARTS_WITH(batch_id, 'replay/') GROUP BY currency") {
		gotAmounts[row[0].(string)] = row[1].(string)
	}
	for _, cur := range slices.Sorted(maps.Keys(wantAmounts)) {
		// BigQuery writes NUMERIC without trailing zeros: compare values.
		got, ok := new(big.Rat).SetString(gotAmounts[cur])
		if !ok || got.Cmp(wantAmounts[cur].Rat()) != 0 {
			t.Errorf("replayed %s: %q, the oracle sums %s", cur, gotAmounts[cur], wantAmounts[cur])
		}
	}
	if len(gotAmounts) != len(wantAmounts) {
		t.Errorf("replayed currencies %v, the oracle's %v", slices.Sorted(maps.Keys(gotAmounts)), slices.Sorted(maps.Keys(wantAmounts)))
	}

	// Once more: nothing new.
	again, err := e.Operator.ReplayQuarantine(ctx, contract.ReasonLate, all)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if !r.Already {
			t.Errorf("a third replay replayed %s again", r.ReplayID)
		}
	}
	report, err := e.Operator.Reconcile(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Errorf("after the replay, reconciliation:\n%s", out.String())
	}
}
