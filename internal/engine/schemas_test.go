package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/registry"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// avroOf rewrites a JSON payment record in Avro with the simulator's
// version 1 schema, registered under reg as schema ID id when it is not
// there yet.
type avroWriter struct {
	enc *simulation.Avro
}

// avroRegistry is a registry for topic, a client of it, and a writer
// whose schema it holds.
func avroRegistry(t *testing.T, topic string) (*srfake.Registry, *registry.Client, avroWriter) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	c, err := registry.New(registry.Options{URL: reg.URL(), Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	return reg, c, newAvroWriter(t, c)
}

func newAvroWriter(t *testing.T, c *registry.Client) avroWriter {
	t.Helper()
	enc, err := simulation.NewAvro(context.Background(), c, "schemas", []int{1})
	if err != nil {
		t.Fatal(err)
	}
	return avroWriter{enc: enc}
}

func (a avroWriter) record(t *testing.T, r *kgo.Record) *kgo.Record {
	t.Helper()
	v, err := a.enc.Encode(0, r.Value)
	if err != nil || !registry.Framed(v) {
		t.Fatalf("encode: %v", err)
	}
	r.Value = v
	return r
}

// TestSchemaIDsDecideAlikeWhateverTheRegistrySaysLater: the first batch
// meets records of a schema ID the registry does not know, and
// quarantines them; the registry learns that ID afterwards (restored from
// a backup, say). A worker that rebuilds the window for the second batch
// must still take those records as the first batch did, or the resend of
// one of them would be a duplicate on one worker and a load on another.
func TestSchemaIDsDecideAlikeWhateverTheRegistrySaysLater(t *testing.T) {
	const topic = "schemas"
	reg, c, w := avroRegistry(t, topic)
	reg.Reset() // the registry now lacks the writer's schema ID (1)
	var recs []*kgo.Record
	for i := range 200 {
		at := craftedStart.Add(time.Duration(i) * time.Second)
		id := fmt.Sprintf("a%d", i)
		if i == 150 {
			id = "a10" // a resend, in the second batch, of a record of the unknown schema
		}
		r := paymentRecord(id, at, at)
		if i < 50 {
			r = w.record(t, r)
		}
		recs = append(recs, r)
	}
	kafka := craftedLog(t, topic, recs)
	warm := New(Config{Kafka: kafka, Registry: c})
	first := contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 100}, AllowedLateness: time.Hour, FraudRules: contract.FraudRules,
		Schemas: contract.Schemas{Registry: true}}
	d1 := decideOn(t, warm, first)
	if d1.Invalid != 50 || d1.Loaded != 50 || !reflect.DeepEqual(d1.Schemas.Unknown, []contract.UnknownSchema{{ID: 1, From: 0, Until: 100}}) {
		t.Fatalf("first batch: %d invalid, %d loaded, schemas %+v; want the 50 Avro records quarantined and ID 1 recorded unknown", d1.Invalid, d1.Loaded, d1.Schemas)
	}
	rows, _, err := warm.BuildRows(context.Background(), contract.LoadInput{Spec: first, Decisions: d1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rows[contract.TableIngestErrors]); n != 50 {
		t.Fatalf("%d ingest_errors rows, want 50", n)
	}
	// The registry learns schema ID 1.
	reg.SeedSchema(topic+"-value", 1, 1, sr.Schema{Schema: avroSchemaV1(t, c), Type: sr.TypeAvro})

	recorded := first.Schemas.Clone()
	recorded.Merge(d1.Schemas)
	second := contract.Spec{Range: contract.Range{Topic: topic, Start: 100, End: 200}, Window: d1.Next, AllowedLateness: time.Hour, Schemas: recorded}
	got := map[string]contract.Decisions{
		"warm": decideOn(t, warm, second),
		"cold": decideOn(t, New(Config{Kafka: kafka, Registry: c, RebuildEveryBatch: true}), second),
	}
	if got["cold"].Loaded != 100 || len(got["cold"].DuplicateOffsets) != 0 {
		t.Errorf("cold worker: %d loaded, duplicates at %v; want the resend of a quarantined record loaded", got["cold"].Loaded, got["cold"].DuplicateOffsets)
	}
	if !reflect.DeepEqual(got["warm"], got["cold"]) {
		t.Errorf("warm %+v, cold %+v", got["warm"], got["cold"])
	}
	// Without the record, the registry's answer now would decide.
	second.Schemas = contract.Schemas{Registry: true}
	if d := decideOn(t, New(Config{Kafka: kafka, Registry: c, RebuildEveryBatch: true}), second); len(d.DuplicateOffsets) != 1 {
		t.Errorf("unrecorded: duplicates at %v; the test no longer shows what recording prevents", d.DuplicateOffsets)
	}
}

// avroSchemaV1 is the schema text the writer registered.
func avroSchemaV1(t *testing.T, c *registry.Client) string {
	t.Helper()
	reg := srfake.New()
	defer reg.Close()
	other, _ := registry.New(registry.Options{URL: reg.URL(), Topic: "x"})
	newAvroWriter(t, other)
	s, ok := reg.GetSchema("schemas-value", 1)
	if !ok {
		t.Fatal("no schema")
	}
	return s.Schema.Schema
}

// TestARegistryDownFailsTheReadAndQuarantinesNothing: records of the wire
// format wait for the registry, as for Kafka; none is rejected for it.
func TestARegistryDownFailsTheReadAndQuarantinesNothing(t *testing.T) {
	const topic = "schemas"
	reg := srfake.New()
	c, err := registry.New(registry.Options{URL: reg.URL(), Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	w := newAvroWriter(t, c)
	kafka := craftedLog(t, topic, []*kgo.Record{w.record(t, paymentRecord("d1", craftedStart, craftedStart))})
	reg.Close()
	spec := contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 1}, AllowedLateness: time.Hour, Schemas: contract.Schemas{Registry: true}}
	down, _ := registry.New(registry.Options{URL: reg.URL(), Topic: topic})
	_, err = New(Config{Kafka: kafka, Registry: down}).Decide(context.Background(), spec)
	if err == nil || errors.Is(err, registry.ErrUnknownSchema) || payment.ReasonOf(err) != "" {
		t.Fatalf("registry down: %v; want an error to retry", err)
	}
	_, err = New(Config{Kafka: kafka}).Decide(context.Background(), spec)
	if err == nil {
		t.Fatal("a worker without a registry decided a batch of Avro records")
	}
}

// TestAPartitionThatReadsNoRegistryJudgesFramedRecordsAsJSON: a record
// starting with a zero byte, on a partition started without a registry
// (or before the offset it started reading the wire format from), is
// malformed JSON, as before paystream read Avro: it neither waits for a
// registry nor is read differently by a worker that has one.
func TestAPartitionThatReadsNoRegistryJudgesFramedRecordsAsJSON(t *testing.T) {
	const topic = "schemas"
	_, c, w := avroRegistry(t, topic)
	var recs []*kgo.Record
	for i := range 4 {
		recs = append(recs, w.record(t, paymentRecord(fmt.Sprintf("j%d", i), craftedStart, craftedStart)))
	}
	kafka := craftedLog(t, topic, recs)
	for name, s := range map[string]contract.Schemas{"no registry": {}, "registry from offset 2": {Registry: true, From: 2}} {
		spec := contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 4}, AllowedLateness: time.Hour, Schemas: s}
		for _, eng := range []*Engine{New(Config{Kafka: kafka}), New(Config{Kafka: kafka, Registry: c})} {
			if s.Registry && eng.Registry == nil {
				// A worker without a registry waits for one that has it.
				if _, err := eng.Decide(context.Background(), spec); err == nil {
					t.Errorf("%s: a worker without a registry decided", name)
				}
				continue
			}
			d := decideOn(t, eng, spec)
			want := 4
			if s.Registry {
				want = 2
			}
			if d.Invalid != want || d.Loaded != 4-want {
				t.Errorf("%s, worker with registry %v: %d invalid, %d loaded; want %d records judged as JSON", name, eng.Registry != nil, d.Invalid, d.Loaded, want)
			}
		}
	}
}

// TestThePlanRecordsTheVerdictsItsBatchDecidesWith: the plan, recorded in
// the partition's history, asks the registry about its range's new
// schema IDs, even when no byte bound makes it read its records; a batch
// given those verdicts decides alike however often it runs, on any
// worker, whatever the registry answers by then.
func TestThePlanRecordsTheVerdictsItsBatchDecidesWith(t *testing.T) {
	const topic = "schemas"
	reg, c, w := avroRegistry(t, topic)
	text := avroSchemaV1(t, c)
	reg.Reset()
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, w.record(t, paymentRecord(fmt.Sprintf("p%d", i), craftedStart, craftedStart)))
	}
	kafka := craftedLog(t, topic, recs)
	in := contract.PlanInput{Topic: topic, Next: 0, MaxRecords: 10, AllowedLateness: time.Hour, Schemas: contract.Schemas{Registry: true}}
	plan, err := New(Config{Kafka: kafka, Registry: c}).Plan(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if want := []contract.UnknownSchema{{ID: 1, From: 0, Until: 10}}; plan.End != 10 || !reflect.DeepEqual(plan.Schemas.Unknown, want) {
		t.Fatalf("plan: end %d, verdicts %+v; want the range and ID 1 unknown over it", plan.End, plan.Schemas)
	}
	reg.SeedSchema(topic+"-value", 1, 1, sr.Schema{Schema: text, Type: sr.TypeAvro})
	spec := contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 10}, AllowedLateness: time.Hour, Schemas: in.Schemas.Clone()}
	spec.Schemas.Merge(plan.Schemas)
	for _, eng := range []*Engine{New(Config{Kafka: kafka, Registry: c}), New(Config{Kafka: kafka, Registry: c, RebuildEveryBatch: true})} {
		if d := decideOn(t, eng, spec); d.Invalid != 10 || d.Loaded != 0 {
			t.Errorf("a run after the registry learnt ID 1: %d invalid, %d loaded; the plan recorded it unknown", d.Invalid, d.Loaded)
		}
	}
}

// TestTypedColumnsAreAFunctionOfTheRecordedColumns: which records load
// with typed columns, and which are schema_type_changed, follows from the
// columns the partition recorded (Spec.Schemas.Columns) and the records
// alone, never from the table as a worker finds it: a warm worker and a
// cold one decide and build alike with no BigQuery at all, and a column
// recorded as widened from an offset on takes the changed type from there.
func TestTypedColumnsAreAFunctionOfTheRecordedColumns(t *testing.T) {
	const topic = "schemas"
	_, c, _ := avroRegistry(t, topic)
	enc, err := simulation.NewAvro(context.Background(), c, topic, []int{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 40 {
		at := craftedStart.Add(time.Duration(i) * time.Second)
		r := paymentRecord(fmt.Sprintf("t%d", i), at, at)
		if r.Value, err = enc.Encode(i, r.Value); err != nil { // even: version 2, odd: version 3
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	kafka := craftedLog(t, topic, recs)
	tip := func(typ string, from int64) contract.Column {
		return contract.Column{Name: "tip", Type: typ, From: from}
	}
	for _, tc := range []struct {
		name    string
		columns []contract.Column
		loaded  int
	}{
		{"tip NUMERIC", []contract.Column{{Name: "loyalty_tier", Type: "STRING"}, tip("NUMERIC", 0)}, 20},
		{"tip widened at 30", []contract.Column{{Name: "loyalty_tier", Type: "STRING"}, tip("NUMERIC", 0), tip("BIGNUMERIC", 30)}, 25},
		{"no columns", nil, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := contract.Spec{Range: contract.Range{Topic: topic, Start: 0, End: 40}, AllowedLateness: time.Hour, FraudRules: contract.FraudRules,
				Schemas: contract.Schemas{Registry: true, Known: []contract.KnownSchema{{ID: 1}, {ID: 2}}, Columns: tc.columns}}
			var built []string
			for _, eng := range []*Engine{New(Config{Kafka: kafka, Registry: c}), New(Config{Kafka: kafka, Registry: c, RebuildEveryBatch: true})} {
				d := decideOn(t, eng, spec)
				if d.Loaded != tc.loaded || d.Invalid != 40-tc.loaded {
					t.Fatalf("%d loaded, %d invalid; want %d loaded", d.Loaded, d.Invalid, tc.loaded)
				}
				tables, _, err := eng.BuildRows(context.Background(), contract.LoadInput{Spec: spec, Decisions: d}, craftedStart)
				if err != nil {
					t.Fatal(err)
				}
				var b []byte
				for _, table := range []string{contract.TableTransactions, contract.TableIngestErrors} {
					for _, r := range tables[table] {
						b = warehouse.AppendJSON(b, r)
					}
				}
				built = append(built, string(b))
				// Every loaded row whose extra holds a tip has it typed too.
				withTip, inExtra := strings.Count(string(b), `"tip":"`), strings.Count(string(b), `\"tip\":`)
				if want := map[bool]int{true: inExtra, false: 0}[len(tc.columns) > 0]; withTip != want || inExtra < tc.loaded/2 {
					t.Errorf("%d rows with a typed tip, want %d (%d with one in extra, of %d loaded)", withTip, want, inExtra, tc.loaded)
				}
				if changed := strings.Count(string(b), `"reason":"schema_type_changed"`); changed != 40-tc.loaded {
					t.Errorf("%d schema_type_changed rows, want %d", changed, 40-tc.loaded)
				}
			}
			if built[0] != built[1] {
				t.Errorf("warm and cold workers built different rows:\n%s\n%s", built[0], built[1])
			}
		})
	}
}
