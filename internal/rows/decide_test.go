package rows

import (
	"strconv"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// TestDecideAgreesWithTheOracle: one partition's simulated records, with
// duplicates, malformed and late records at several times the default
// ratios, decided in batches of each size, get the verdict the simulator's
// oracle gives each offset; and the tally adds up.
func TestDecideAgreesWithTheOracle(t *testing.T) {
	const lateness = time.Minute
	opts := simulation.DefaultOptions()
	opts.Partitions, opts.AllowedLateness = 1, lateness
	opts.DuplicateRatio, opts.MalformedRatio, opts.LateRatio = 0.15, 0.05, 0.05
	g, err := simulation.NewGenerator(opts)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	oracle := simulation.NewOracle(lateness)
	want := map[int64]simulation.Outcome{}
	for i := range 3000 {
		r := g.Next()
		// Kafka's timestamp: the produce time, which the simulator's
		// event times follow at EventRate.
		at := opts.StartTime.Add(time.Duration(float64(i) / opts.EventRate * float64(time.Second)))
		kr := kafkalog.Record{Offset: int64(i), Key: r.Key, Value: r.Value, Time: at}
		e, perr := payment.ParseRecord(r.Key, r.Value, at, lateness)
		recs = append(recs, Record{Record: kr, Event: e, ParseErr: perr})
		want[int64(i)] = oracle.Observe(0, int64(i), r.Key, r.Value, at).Outcome
	}
	for _, size := range []int{3000, 700, 64, 1} {
		t.Run("batches of "+strconv.Itoa(size), func(t *testing.T) {
			w := dedup.New(lateness, 0, time.Time{})
			got := map[int64]simulation.Outcome{}
			var loaded, records int
			for start := 0; start < len(recs); start += size {
				end := min(start+size, len(recs))
				spec := contract.Spec{Range: contract.Range{Topic: "payments", Start: int64(start), End: int64(end)}, AllowedLateness: lateness}
				d, raised, err := Decide(w, spec, recs[start:end], kafkalog.Tally{})
				if err != nil {
					t.Fatal(err)
				}
				if raised != nil {
					t.Fatalf("floor raised without a bound: %+v", raised)
				}
				if d.Records != end-start || d.Loaded+d.Invalid+len(d.DuplicateOffsets)+len(d.ConflictOffsets)+len(d.LateOffsets) != d.Records {
					t.Fatalf("batch %d-%d: tally %+v does not add up", start, end, d)
				}
				records, loaded = records+d.Records, loaded+d.Loaded
				for i := start; i < end; i++ {
					got[int64(i)] = simulation.OutcomeLoaded
					if recs[i].ParseErr != nil {
						got[int64(i)] = simulation.OutcomeRejected
					}
				}
				for _, off := range d.DuplicateOffsets {
					got[off] = simulation.OutcomeDuplicate
				}
				for _, off := range d.ConflictOffsets {
					got[off] = simulation.OutcomeRejected
				}
				for _, off := range d.LateOffsets {
					got[off] = simulation.OutcomeLate
				}
				if next, _ := w.Bounds(); d.Next.Start != next {
					t.Fatalf("next window starts at %d, the window at %d", d.Next.Start, next)
				}
			}
			kinds := map[simulation.Outcome]int{}
			for off, o := range want {
				kinds[o]++
				if got[off] != o {
					t.Errorf("offset %d: %s, the oracle says %s", off, got[off], o)
				}
			}
			if kinds[simulation.OutcomeDuplicate] == 0 || kinds[simulation.OutcomeLate] == 0 || kinds[simulation.OutcomeRejected] == 0 {
				t.Fatalf("the stream lacks a kind of record: %v", kinds)
			}
			if records != len(recs) || loaded != kinds[simulation.OutcomeLoaded] {
				t.Errorf("%d records, %d loaded; want %d, %d", records, loaded, len(recs), kinds[simulation.OutcomeLoaded])
			}
		})
	}
}
