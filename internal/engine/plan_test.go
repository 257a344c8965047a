package engine

import (
	"context"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
)

// TestPlanLingers: a batch short of MaxRecords waits up to Linger for
// more records, and is cut as soon as it is full.
func TestPlanLingers(t *testing.T) {
	ctx := context.Background()
	kafka, _ := simulatedLog(t, "plan", simulation.DefaultOptions(), 100)
	hw := logEnd(t, kafka, "plan")

	a := New(Config{Kafka: kafka})
	defer a.Close()
	// This worker has written a batch of the partition, in no time.
	a.pace.cut(contract.Range{Topic: "plan", Start: -2, End: -1}, time.Now())
	a.pace.loaded(contract.Range{Topic: "plan", Start: -2, End: -1}, time.Now())
	plan := func(in contract.PlanInput) (contract.PlanResult, time.Duration) {
		t.Helper()
		in.Topic, in.MaxBytes = "plan", 8<<20
		began := time.Now()
		res, err := a.Plan(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return res, time.Since(began)
	}

	// Without linger a short batch is cut at once.
	if res, _ := plan(contract.PlanInput{Next: 0, MaxRecords: 10 * int(hw), Linger: 0}); res.End != hw {
		t.Errorf("no linger: batch ends at %d, want the high watermark %d", res.End, hw)
	}
	// With linger, a log that is not growing (the end of a backlog) is
	// cut without waiting the linger out.
	if res, took := plan(contract.PlanInput{Next: 0, MaxRecords: 10 * int(hw), Linger: time.Minute}); res.End != hw || took > 30*time.Second {
		t.Errorf("linger, log not growing: batch ends at %d after %s, want %d at once", res.End, took, hw)
	}
	// While records keep arriving the batch waits, up to the linger or
	// until it is full, whichever comes first.
	trickle := func() (stop func()) {
		pctx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			// One paced producer: a send every 50 ms, well inside the
			// two 100 ms polls a quiet log gets.
			_, _ = simulation.Produce(pctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: kafka, Topic: "plan", Events: 1 << 30, Rate: 400})
		}()
		// Records are arriving once the log's end moves: the producer
		// looks the topic up before its first send.
		for before := logEnd(t, kafka, "plan"); logEnd(t, kafka, "plan") == before; {
			time.Sleep(10 * time.Millisecond)
		}
		return func() { cancel(); <-stopped }
	}
	stop := trickle()
	res, took := plan(contract.PlanInput{Next: 0, MaxRecords: int(hw) + 200, Linger: time.Minute})
	stop()
	if res.End != hw+200 || took > 30*time.Second {
		t.Errorf("records arriving: batch ends at %d after %s, want full at %d, well before the linger", res.End, took, hw+200)
	}
	// The linger counts from the first record's produce time: records
	// that have waited it already (a backlog after a restart) are cut at
	// once, however long it is and though more keep coming...
	hw = logEnd(t, kafka, "plan")
	time.Sleep(time.Second) // the records at 0 have waited the linger
	stop = trickle()
	res, took = plan(contract.PlanInput{Next: 0, MaxRecords: 100 * int(hw), Linger: time.Second})
	stop()
	if res.End < hw || took > 500*time.Millisecond {
		t.Errorf("records arriving after a backlog: batch ends at %d after %s, want at least %d at once", res.End, took, hw)
	}
	// ...and fresh ones wait it out, from the first one's production.
	hw = logEnd(t, kafka, "plan")
	linger := 500 * time.Millisecond
	stop = trickle() // returns once the record at hw is there
	began := time.Now()
	res, took = plan(contract.PlanInput{Next: hw, MaxRecords: 100 * int(hw), Linger: linger})
	stop()
	if res.End <= hw+1 || took < linger-100*time.Millisecond || time.Since(began) > linger+5*time.Second {
		t.Errorf("fresh records arriving, never full: batch ends at %d after %s, want past %d after about the linger %s", res.End, took, hw+1, linger)
	}
	// A partition whose batches took a while to write on this worker
	// waits that much less, so its records' latency stays near the linger.
	hw = logEnd(t, kafka, "plan")
	slow := contract.Range{Topic: "plan", Start: 0, End: 1}
	a.pace.cut(slow, time.Now().Add(-time.Second))
	a.pace.loaded(slow, time.Now())
	stop = trickle()
	res, took = plan(contract.PlanInput{Next: hw, MaxRecords: 100 * int(hw), Linger: 1500 * time.Millisecond})
	stop()
	if res.End <= hw+1 || took < 400*time.Millisecond || took > 1200*time.Millisecond {
		t.Errorf("after a batch that took 1 s to write, linger 1.5 s: batch ends at %d after %s, want past %d after about 0.5 s", res.End, took, hw+1)
	}
	// Caught up: an empty range after PollFor, whatever the linger.
	hw = logEnd(t, kafka, "plan")
	if res, _ := plan(contract.PlanInput{Next: hw, MaxRecords: 10, PollFor: 300 * time.Millisecond, Linger: time.Second}); res.End != hw {
		t.Errorf("caught up: batch ends at %d, want an empty range at %d", res.End, hw)
	}
}

// TestPlanBatchFitsTheWorkersMemory: a worker with MaxBatchBytes cuts a
// batch where its parsed size would pass that bound, below the request's
// MaxRecords, and always takes at least one record.
func TestPlanBatchFitsTheWorkersMemory(t *testing.T) {
	ctx := context.Background()
	kafka, _ := simulatedLog(t, "fit", simulation.DefaultOptions(), 100)
	// The parsed size of the first ten records.
	tenCost := 0
	if err := kafkalog.ReadRange(ctx, kafka, "fit", 0, 0, 10, func(r kafkalog.Record) error {
		tenCost += recordCost(r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		maxBatchBytes int
		wantEnd       int64
	}{{tenCost, 10}, {1, 1}} {
		a := New(Config{Kafka: kafka, MaxBatchBytes: c.maxBatchBytes})
		res, err := a.Plan(ctx, contract.PlanInput{Topic: "fit", Next: 0, MaxRecords: 1000, MaxBytes: 8 << 20, AllowedLateness: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if res.End != c.wantEnd {
			t.Errorf("MaxBatchBytes %d: batch ends at %d, want %d", c.maxBatchBytes, res.End, c.wantEnd)
		}
		id := contract.Range{Topic: "fit", Partition: 0, Start: 0, End: res.End}.ID()
		if b, ok := a.batches.get(id); !ok || int64(len(b.recs)) != c.wantEnd {
			t.Errorf("MaxBatchBytes %d: %d records cached for %s (cached: %v), want %d", c.maxBatchBytes, len(b.recs), id, ok, c.wantEnd)
		}
		a.Close()
	}
}

// logEnd is the partition 0's end of a topic with no transactions.
func logEnd(t *testing.T, kc kafkalog.Cluster, topic string) int64 {
	t.Helper()
	b, err := kafkalog.BoundsOf(context.Background(), kc, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b.End
}

// TestPaceLeavesTheWriteItsShare: a partition's linger is shortened by the
// longest of its last batches' write times on this worker, never below a
// quarter, and a batch this worker did not cut teaches it nothing.
func TestPaceLeavesTheWriteItsShare(t *testing.T) {
	var p pace
	at := time.Unix(1000, 0)
	wrote := func(partition int, start int64, took time.Duration) {
		r := contract.Range{Topic: "t", Partition: partition, Start: start, End: start + 1}
		p.cut(r, at)
		p.loaded(r, at.Add(took))
	}
	if got := p.linger("t", 0, 4*time.Second); got != time.Second {
		t.Errorf("no batch written yet: linger %s, want the floor, a quarter", got)
	}
	wrote(0, -1, 0)
	if got := p.linger("t", 0, 4*time.Second); got != 4*time.Second {
		t.Errorf("a batch written in no time: linger %s, want the whole 4s", got)
	}
	wrote(0, 0, 500*time.Millisecond)
	wrote(0, 1, 1500*time.Millisecond)
	wrote(0, 2, 200*time.Millisecond)
	if got := p.linger("t", 0, 4*time.Second); got != 2500*time.Millisecond {
		t.Errorf("batches took 0.5, 1.5, 0.2 s: linger %s, want 4s - 1.5s = 2.5s", got)
	}
	if got := p.linger("t", 1, 4*time.Second); got != time.Second {
		t.Errorf("another partition, none written: linger %s, want the floor", got)
	}
	for i := int64(3); i < 3+paceSamples; i++ { // the 1.5 s batch drops out
		wrote(0, i, 300*time.Millisecond)
	}
	if got := p.linger("t", 0, 4*time.Second); got != 3700*time.Millisecond {
		t.Errorf("the 1.5 s batch is %d batches old: linger %s, want 3.7s", paceSamples, got)
	}
	wrote(0, 10, 10*time.Second)
	if got := p.linger("t", 0, 4*time.Second); got != time.Second {
		t.Errorf("a batch took 10 s: linger %s, want the floor of a quarter, 1s", got)
	}
	p.loaded(contract.Range{Topic: "t", Partition: 2, End: 5}, at)
	if got := p.linger("t", 2, 4*time.Second); got != time.Second {
		t.Errorf("a Load of a batch cut elsewhere taught this worker: linger %s, want the floor", got)
	}
}
