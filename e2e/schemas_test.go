package e2e

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/registry"
	"github.com/paystream/paystream/internal/simulation"
)

// TestUnknownSchemaQuarantinedThenReplayedOnce: a producer writes Avro
// with a schema ID the stack's registry does not have (registered in
// another registry). Its records land in ingest_errors as
// schema_unknown_id while the others load; once the schema is given to
// the registry under that ID, replay-quarantine --reason
// schema_unknown_id loads each of them once, to the cent, and a second
// replay loads nothing.
func TestUnknownSchemaQuarantinedThenReplayedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 700, time.Second
	e := Start(t, Options{Partitions: 2, Tuning: tuning})
	cfg := e.Operator.Config
	opts := simulation.DefaultOptions()
	opts.Seed = 41
	known := e.ProduceIn(t, "avro", opts, 3000, 1, 2)

	// Another registry, where the simulator's version 2 is schema ID 100.
	elsewhere := srfake.New()
	t.Cleanup(elsewhere.Close)
	v2 := schemaText(t, 2)
	elsewhere.SeedSchema(cfg.Topic+"-value", 7, 100, sr.Schema{Schema: v2, Type: sr.TypeAvro})
	other, err := registry.New(registry.Options{URL: elsewhere.URL(), Topic: cfg.Topic})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := simulation.NewAvro(ctx, other, cfg.Topic, []int{2})
	if err != nil {
		t.Fatal(err)
	}
	clean := simulation.DefaultOptions()
	clean.Seed, clean.DuplicateRatio, clean.MalformedRatio, clean.LateRatio = 42, 0, 0, 0
	unknown, err := simulation.Produce(ctx, clean, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 300, Encoder: enc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	ds := fmt.Sprintf("`%s.%s", e.Operator.BigQuery.Project(), cfg.BigQueryDataset)
	count := func(sql string) int64 { return rows(t, e, sql)[0][0].(int64) }
	if n := count("SELECT COUNT(*) FROM " + ds + ".ingest_errors` WHERE reason = 'schema_unknown_id'"); n != int64(unknown.Records) {
		t.Fatalf("%d schema_unknown_id rows, want the %d records of the unknown schema", n, unknown.Records)
	}
	if n := count("SELECT COUNT(*) FROM " + ds + ".transactions`"); n != int64(known.UniqueIDs) {
		t.Fatalf("%d transactions rows, want the %d unique valid records of the known schemas", n, known.UniqueIDs)
	}

	// Not listed while inside the dedup window: a resend there would be
	// taken as new.
	batches, err := e.Operator.Quarantined(ctx, string(payment.ReasonSchemaUnknownID), nil, 0, 1<<62)
	if err != nil || len(batches) != 0 {
		t.Fatalf("quarantined batches inside the window: %v, %v; want none listed", batches, err)
	}
	// Asked for all the same, a replay refuses: first because the
	// registry still lacks the schema, then, once it has it, because the
	// records are not behind the watermark. Nothing loads.
	var inside []operator.QuarantinedBatch
	for _, row := range rows(t, e, "SELECT DISTINCT l.kafka_partition, l.start_offset, l.end_offset FROM "+ds+".ingest_errors` AS x JOIN "+ds+
		".batch_ledger` AS l ON l.batch_id = x.batch_id WHERE x.reason = 'schema_unknown_id'") {
		inside = append(inside, operator.QuarantinedBatch{Range: contract.Range{Topic: cfg.Topic, Partition: int(row[0].(int64)), Start: row[1].(int64), End: row[2].(int64)}})
	}
	if _, err := e.Operator.ReplayQuarantine(ctx, string(payment.ReasonSchemaUnknownID), inside); err == nil || !strings.Contains(err.Error(), "schema ID 100") {
		t.Fatalf("a replay of records whose schema is still unknown: %v", err)
	}
	e.SchemaRegistry().SeedSchema(cfg.Topic+"-value", 99, 100, sr.Schema{Schema: v2, Type: sr.TypeAvro})
	if _, err := e.Operator.ReplayQuarantine(ctx, string(payment.ReasonSchemaUnknownID), inside); err == nil || !strings.Contains(err.Error(), "watermark") {
		t.Fatalf("a replay of records inside the window: %v", err)
	}
	if n := count("SELECT COUNT(*) FROM " + ds + ".transactions` WHERE STARTS_WITH(batch_id, 'replay/')"); n != 0 {
		t.Fatalf("the refused replays loaded %d rows", n)
	}

	// The window hands on its start at checkpoints (dedup.Window.Bounds),
	// so two waves: the first takes the records past a checkpoint, the
	// second puts the first behind the watermark.
	var after simulation.Manifest
	for i, n := range []int{2000, 200} {
		later := clean
		later.Seed, later.StartTime = uint64(43+i), clean.StartTime.Add(time.Duration(i+1)*time.Hour)
		m, err := simulation.Produce(ctx, later, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: n})
		if err != nil {
			t.Fatal(err)
		}
		after.UniqueIDs += m.UniqueIDs
	}
	e.WaitCaughtUp(t, 5*time.Minute)
	batches, err = e.Operator.Quarantined(ctx, string(payment.ReasonSchemaUnknownID), nil, 0, 1<<62)
	if err != nil || len(batches) != len(inside) {
		t.Fatalf("quarantined batches behind the window: %v, %v; want the %d", batches, err, len(inside))
	}

	// A replay that failed may run again (its workflow ID allows a
	// failed one's reuse).
	res, err := e.Operator.ReplayQuarantine(ctx, string(payment.ReasonSchemaUnknownID), batches)
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, r := range res {
		loaded += r.Totals.Loaded
	}
	if loaded != unknown.UniqueIDs {
		t.Errorf("replay loaded %d, want the %d records of the unknown schema", loaded, unknown.UniqueIDs)
	}
	got := map[string]string{}
	for _, row := range rows(t, e, "SELECT currency, CAST(SUM(amount) AS STRING) FROM "+ds+".transactions` WHERE STARTS_WITH(batch_id, 'replay/schema_unknown_id/') GROUP BY currency") {
		got[row[0].(string)] = row[1].(string)
	}
	for cur, want := range unknown.AmountByCurrency {
		g, ok1 := new(big.Rat).SetString(got[cur])
		w, ok2 := new(big.Rat).SetString(want)
		if !ok1 || !ok2 || g.Cmp(w) != 0 {
			t.Errorf("replayed %s: %q, want %s", cur, got[cur], want)
		}
	}
	if len(got) != len(unknown.AmountByCurrency) {
		t.Errorf("replayed currencies %d, want %d", len(got), len(unknown.AmountByCurrency))
	}
	again, err := e.Operator.ReplayQuarantine(ctx, string(payment.ReasonSchemaUnknownID), batches)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if !r.Already {
			t.Errorf("a second replay replayed %s again", r.ReplayID)
		}
	}
	if n := count("SELECT COUNT(*) FROM " + ds + ".transactions`"); n != int64(known.UniqueIDs+unknown.UniqueIDs+after.UniqueIDs) {
		t.Errorf("%d transactions rows, want %d", n, known.UniqueIDs+unknown.UniqueIDs+after.UniqueIDs)
	}
	e.Reconcile(t, nil)

	// The registry's verdict is in the partitions' histories, recorded
	// with the plan, and replays (workflows TestReplayRecordedHistories);
	// no card data is.
	for p := range 2 {
		id := contract.IngestID(cfg.Topic, p)
		raw := historyJSON(t, e.Operator.Temporal, id)
		if !strings.Contains(raw, `"Unknown":[{"ID":100`) {
			t.Errorf("history of %s records no verdict on schema ID 100", id)
		}
		// And so are the typed columns version 2's fields got.
		if !strings.Contains(raw, `"Columns":[{"Name":"loyalty_tier","Type":"STRING"`) || !strings.Contains(raw, `{"Name":"tip","Type":"NUMERIC"`) {
			t.Errorf("history of %s records no typed columns for version 2's fields", id)
		}
		if cardOrCustomer.MatchString(raw) {
			t.Errorf("history of %s holds card or customer data", id)
		}
		if dir := os.Getenv("PAYSTREAM_RECORD_HISTORY"); dir != "" && p == 0 {
			if err := os.WriteFile(dir+"/ingest_payments_0_schemas.json", []byte(raw[:strings.Index(raw, "\n")]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// cardOrCustomer matches the simulator's card and customer IDs.
var cardOrCustomer = regexp.MustCompile(`card_[0-9a-f]{16}|cust_[0-9]{6}`)

// schemaText is the simulator's Avro schema of version v, as it
// registers it.
func schemaText(t *testing.T, v int) string {
	t.Helper()
	reg := srfake.New()
	defer reg.Close()
	c, err := registry.New(registry.Options{URL: reg.URL(), Topic: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := simulation.NewAvro(context.Background(), c, "x", []int{v}); err != nil {
		t.Fatal(err)
	}
	s, ok := reg.GetSchema("x-value", 1)
	if !ok {
		t.Fatal("no schema registered")
	}
	return s.Schema.Schema
}
