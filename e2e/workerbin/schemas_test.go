package workerbin

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/e2e"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// kill ends a worker process with SIGKILL.
func kill(t *testing.T, w *exec.Cmd) {
	t.Helper()
	if err := w.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w.Wait()
}

// schemaErrors counts ingest_errors rows whose reason begins schema_.
func schemaErrors(t *testing.T, f *e2e.Stack) int64 {
	t.Helper()
	cfg := f.Operator.Config
	q := f.Operator.BigQuery.Query(fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.ingest_errors` WHERE STARTS_WITH(reason, 'schema_')", cfg.BigQueryProject, cfg.BigQueryDataset))
	it, err := q.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var row []bigquery.Value
	if err := it.Next(&row); err != nil && err != iterator.Done {
		t.Fatal(err)
	}
	return row[0].(int64)
}

// TestSchemaEvolutionThroughKills is a schema's life on one topic, in
// both write modes and both registry formats: records of versions 1 and 2
// (2 adds two optional fields) interleaved, then a stretch where version
// 3 (one field's type changed) joins them, through two SIGKILLs of the
// worker and no restart for any schema; in load mode, the second worker
// runs during a Schema Registry outage, with nothing cached: its batches
// wait, and no record is quarantined for it. The new fields get typed columns
// holding version 2's values, NULL for version 1; version 3's records are
// quarantined as schema_type_changed while the others load; once the
// column is widened (ALTER COLUMN SET DATA TYPE, as an operator fixes it)
// replay-quarantine loads them once; the books balance to the cent.
func TestSchemaEvolutionThroughKills(t *testing.T) {
	for _, format := range []evolution{
		{format: "avro", tip: "tip", tipType: "NUMERIC", widened: "BIGNUMERIC", unit: big.NewRat(1, 1)},
		{format: "protobuf", tip: "tip_cents", tipType: "INT64", widened: "FLOAT64", unit: big.NewRat(100, 1)},
	} {
		for _, mode := range []string{config.WriteModeLoad, config.WriteModeStorageWrite} {
			t.Run(format.format+"_"+mode, func(t *testing.T) { schemaEvolution(t, format, mode) })
		}
	}
}

// evolution is a format's version 2 tip column and version 3's change.
type evolution struct {
	format       string
	tip, tipType string   // version 2's tip field and its column's type
	widened      string   // the type that takes version 3's tip too
	unit         *big.Rat // the tip field's value per unit of simulation.V2Fields's tip
}

func schemaEvolution(t *testing.T, ev evolution, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := e2e.BuildWorker(t)
	if mode == config.WriteModeStorageWrite {
		// BigQuery shows a new column to Storage Write streams minutes
		// later; the local one, 5 seconds later.
		t.Setenv("PAYSTREAM_EMULATOR_STREAM_SCHEMA_LAG", "5s")
	}
	f := e2e.Start(t, e2e.Options{Partitions: 2, Tuning: faultTuning(), NoWorker: true})
	f.Operator.Config.WriteMode = mode
	cfg := f.Operator.Config
	ds := fmt.Sprintf("`%s.%s", cfg.BigQueryProject, cfg.BigQueryDataset)
	count := func(sql string) int64 { return f.Query(t, sql)[0][0].(int64) }

	opts := simulation.DefaultOptions()
	opts.Seed = 31
	known := f.ProduceIn(t, ev.format, opts, 3000, 1, 2)
	// Then versions 1, 2 and 3 in turn (record n in version n%3+1), on
	// records without duplicates, so that every version 3 record is one
	// payment to replay.
	reg, err := cfg.Registry()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := simulation.NewEncoder(ctx, ev.format, reg, cfg.Topic, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	clean := simulation.DefaultOptions()
	clean.Seed, clean.DuplicateRatio, clean.MalformedRatio, clean.LateRatio = 32, 0, 0, 0
	clean.StartTime = opts.StartTime.Add(time.Hour)
	mixed, err := simulation.Produce(ctx, clean, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 600, Encoder: enc})
	if err != nil {
		t.Fatal(err)
	}
	v3 := int64(0)
	for n := range mixed.Records {
		if n%3 == 2 {
			v3++
		}
	}

	// Two workers killed along the way; the third finishes.
	done := func() int64 {
		st, err := f.Operator.Status(ctx)
		if err != nil {
			return 0
		}
		var n int64
		for _, p := range st {
			n += p.RecordsDone
		}
		return n
	}
	// The first worker dies (SIGKILL) right after its plan added the
	// typed columns to the tables, before the plan was recorded: the
	// next plan finds them there and records the same.
	w := f.WorkerProcess(t, bin, faults.EnvKillAt+"=columns")
	workers := []*exec.Cmd{w}
	if _, err := f.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitKilledAt(t, w, "columns")
	if mode == config.WriteModeLoad {
		registryOutage(t, f, bin, done) // its worker is the second SIGKILL
	} else {
		w = f.WorkerProcess(t, bin)
		workers = append(workers, w)
		// It takes the dead worker's partitions, plans them again and
		// waits out the streams' lag on the new columns: minutes under
		// -race on a shared machine (CI saw over 2).
		before := done()
		e2e.WaitFor(t, 5*time.Minute, 100*time.Millisecond, "a batch loaded", func() bool { return done() > before })
		kill(t, w)
	}
	w = f.WorkerProcess(t, bin)
	workers = append(workers, w)
	f.WaitCaughtUp(t, 5*time.Minute)
	if mode == config.WriteModeStorageWrite {
		// The batches that added the columns waited for the streams to see
		// them, and wrote then.
		waited := false
		for _, w := range workers {
			logged, err := os.ReadFile(w.Stdout.(*os.File).Name())
			if err != nil {
				t.Fatal(err)
			}
			waited = waited || strings.Contains(string(logged), "the Storage Write stream does not see the batch's new columns yet")
		}
		if !waited {
			t.Error("no worker waited for a stream to see the new columns; the local stack no longer shows BigQuery's lag")
		}
	}

	if n := count("SELECT COUNT(*) FROM " + ds + ".ingest_errors` WHERE reason = 'schema_type_changed' AND detail LIKE '%" + ev.tip + "%" + ev.tipType + "%'"); n != v3 {
		t.Fatalf("%d schema_type_changed rows naming %s and its column's %s, want the %d version 3 records", n, ev.tip, ev.tipType, v3)
	}
	if n := count("SELECT COUNT(*) FROM " + ds + ".transactions`"); n != int64(known.UniqueIDs+mixed.UniqueIDs)-v3 {
		t.Fatalf("%d transactions rows, want the %d unique records of versions 1 and 2", n, int64(known.UniqueIDs+mixed.UniqueIDs)-v3)
	}
	checkTypedColumns(t, f, ev, ev.tipType)
	for _, table := range contract.TypedTables {
		for col, typ := range map[string]string{"loyalty_tier": "STRING", ev.tip: ev.tipType} {
			if n := count(fmt.Sprintf("SELECT COUNT(*) FROM %s.schema_changes` WHERE table_name = '%s' AND column_name = '%s' AND column_type = '%s' AND schema_id > 0",
				ds, table, col, typ)); n == 0 {
				t.Errorf("schema_changes has no row for %s.%s %s", table, col, typ)
			}
		}
	}

	// The operator's fix: widen the column in both tables.
	for _, table := range contract.TypedTables {
		sql := fmt.Sprintf("ALTER TABLE %s.%s` ALTER COLUMN %s SET DATA TYPE %s", ds, table, ev.tip, ev.widened)
		if err := warehouse.Exec(ctx, f.Operator.BigQuery, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Records are replayed once behind the watermark (a resend inside
	// the window would load as new): two later waves put them there.
	var after simulation.Manifest
	produced := []simulation.Manifest{known, mixed}
	for i, n := range []int{2000, 200} {
		later := clean
		later.Seed, later.StartTime = uint64(33+i), clean.StartTime.Add(time.Duration(i+1)*time.Hour)
		m, err := simulation.Produce(ctx, later, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: n})
		if err != nil {
			t.Fatal(err)
		}
		after.UniqueIDs += m.UniqueIDs
		produced = append(produced, m)
	}
	f.WaitCaughtUp(t, 5*time.Minute)
	batches, err := f.Operator.Quarantined(ctx, string(payment.ReasonSchemaTypeChanged), nil, 0, 1<<62)
	if err != nil || len(batches) == 0 {
		t.Fatalf("quarantined batches: %v, %v", batches, err)
	}
	res, err := f.Operator.ReplayQuarantine(ctx, string(payment.ReasonSchemaTypeChanged), batches)
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, r := range res {
		loaded += r.Totals.Loaded
	}
	if int64(loaded) != v3 {
		t.Errorf("the replay loaded %d, want the %d version 3 records", loaded, v3)
	}
	again, err := f.Operator.ReplayQuarantine(ctx, string(payment.ReasonSchemaTypeChanged), batches)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if !r.Already {
			t.Errorf("a second replay replayed %s again", r.ReplayID)
		}
	}
	if n := count("SELECT COUNT(*) FROM " + ds + ".transactions`"); n != int64(known.UniqueIDs+mixed.UniqueIDs+after.UniqueIDs) {
		t.Errorf("%d transactions rows, want %d", n, known.UniqueIDs+mixed.UniqueIDs+after.UniqueIDs)
	}
	// Every payment produced is in transactions once, to the cent.
	want := map[string]*big.Rat{}
	for _, m := range produced {
		for cur, amount := range m.AmountByCurrency {
			r, ok := new(big.Rat).SetString(amount)
			if !ok {
				t.Fatalf("manifest amount %q", amount)
			}
			if want[cur] == nil {
				want[cur] = new(big.Rat)
			}
			want[cur].Add(want[cur], r)
		}
	}
	got := f.Query(t, "SELECT currency, CAST(SUM(amount) AS STRING) FROM "+ds+".transactions` GROUP BY currency")
	for _, row := range got {
		r, ok := new(big.Rat).SetString(row[1].(string))
		if w := want[row[0].(string)]; !ok || w == nil || r.Cmp(w) != 0 {
			t.Errorf("transactions %s: %s, want %v", row[0], row[1], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d currencies in transactions, want %d", len(got), len(want))
	}
	checkTypedColumns(t, f, ev, ev.widened)
	if n := count("SELECT COUNT(*) FROM " + ds + ".transactions` WHERE STARTS_WITH(batch_id, 'replay/schema_type_changed/') AND " + ev.tip + " IS NOT NULL"); n == 0 {
		t.Error("no replayed version 3 row has its tip in the typed column")
	}
	f.Reconcile(t, nil)

	// A column added by hand, which schema_changes does not explain, is a
	// mismatch of reconcile's.
	if _, err := warehouse.EnsureColumns(ctx, f.Operator.BigQuery.Dataset(cfg.BigQueryDataset).Table(contract.TableTransactions), map[string]string{"by_hand": "STRING"}); err != nil {
		t.Fatal(err)
	}
	report, err := f.Operator.Reconcile(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	report.Write(&out)
	if report.OK() || !strings.Contains(out.String(), "[by_hand STRING]") {
		t.Errorf("reconcile after a column was added by hand:\n%s", out.String())
	}
}

// registryOutage stops the Schema Registry and starts a worker, which has
// no schema cached: its batches wait for the registry, nothing is ingested
// and no record is quarantined for it. The worker is killed (SIGKILL)
// before the registry comes back.
func registryOutage(t *testing.T, f *e2e.Stack, bin string, done func() int64) {
	t.Helper()
	f.StopRegistry()
	during := f.WorkerProcess(t, bin)
	// A batch the killed worker finished may be counted seconds later,
	// once the pool has moved its partition: wait for the count to
	// settle, then watch it stand still.
	before, still := done(), 0
	for deadline := time.Now().Add(45 * time.Second); still < 5 && time.Now().Before(deadline); still++ {
		time.Sleep(time.Second)
		if n := done(); n != before {
			before, still = n, -1
		}
	}
	time.Sleep(8 * time.Second)
	if after := done(); after != before {
		t.Errorf("%d records ingested while the registry was down and no worker had its schemas", after-before)
	}
	if n := schemaErrors(t, f); n != 0 {
		t.Fatalf("%d ingest_errors rows with a schema_ reason during the registry outage", n)
	}
	kill(t, during)
	if err := f.StartRegistry(); err != nil {
		t.Fatal(err)
	}
}

// checkTypedColumns holds every row of both typed tables to the values
// its record carried: a record of version 2 or 3 has loyalty_tier and the
// tip in their columns (the tip column of type tipType), equal to what
// the simulator wrote (simulation.V2Fields) and to the record's extra; a
// version 1 record has NULL there. Both kinds must be present.
func checkTypedColumns(t *testing.T, f *e2e.Stack, ev evolution, tipType string) {
	t.Helper()
	cfg := f.Operator.Config
	for _, table := range contract.TypedTables {
		md, err := f.Operator.BigQuery.Dataset(cfg.BigQueryDataset).Table(table).Metadata(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]string{}
		for _, c := range md.Schema {
			types[c.Name] = warehouse.ColumnType(c)
		}
		if types["loyalty_tier"] != "STRING" || types[ev.tip] != tipType {
			t.Errorf("%s: loyalty_tier %s and %s %s, want STRING and %s", table, types["loyalty_tier"], ev.tip, types[ev.tip], tipType)
		}
		typed, null := 0, 0
		for _, row := range f.Query(t, fmt.Sprintf("SELECT transaction_id, loyalty_tier, CAST(%s AS STRING), extra FROM `%s.%s.%s`",
			ev.tip, cfg.BigQueryProject, cfg.BigQueryDataset, table)) {
			id, extra := row[0].(string), ""
			if row[3] != nil {
				extra = row[3].(string)
			}
			if !strings.Contains(extra, `"loyalty_tier"`) {
				if row[1] != nil || row[2] != nil {
					t.Fatalf("%s: %s has no new field in extra (%q) but typed %v, %v", table, id, extra, row[1], row[2])
				}
				null++
				continue
			}
			tier, tip := simulation.V2Fields(id)
			want := new(big.Rat).Mul(tip.(*big.Rat), ev.unit)
			got, ok := new(big.Rat), row[2] != nil
			if ok {
				_, ok = got.SetString(row[2].(string))
			}
			if row[1] != tier || (want.Sign() != 0 && (!ok || got.Cmp(want) != 0)) {
				t.Fatalf("%s: %s typed %v, %v; want %v, %s (extra %s)", table, id, row[1], row[2], tier, want.FloatString(2), extra)
			}
			typed++
		}
		if typed == 0 || null == 0 {
			t.Errorf("%s: %d rows with typed values, %d with NULL; want both", table, typed, null)
		}
	}
}
