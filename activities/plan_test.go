package activities

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/testsuite"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
)

// TestPlanBatchLingers: a batch short of MaxRecords waits up to Linger for
// more records, and is cut as soon as it is full.
func TestPlanBatchLingers(t *testing.T) {
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "plan"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kafka := kafkalog.Plain(cluster.ListenAddrs())
	produce := func(n int) {
		t.Helper()
		if _, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: kafka, Topic: "plan", Events: n}); err != nil {
			t.Fatal(err)
		}
	}
	produce(100)
	_, hw, err := kafkalog.Bounds(ctx, kafka, "plan", 0)
	if err != nil {
		t.Fatal(err)
	}

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := &Activities{Kafka: kafka}
	env.RegisterActivity(a)
	plan := func(in PlanInput) (PlanResult, time.Duration) {
		t.Helper()
		in.Topic, in.MaxBytes = "plan", 8<<20
		began := time.Now()
		v, err := env.ExecuteActivity(a.PlanBatch, in)
		if err != nil {
			t.Fatal(err)
		}
		var res PlanResult
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res, time.Since(began)
	}

	// Without linger a short batch is cut at once.
	if res, _ := plan(PlanInput{Next: 0, MaxRecords: 10 * int(hw)}); res.End != hw {
		t.Errorf("no linger: batch ends at %d, want the high watermark %d", res.End, hw)
	}
	// With linger and nothing more arriving, it waits the linger out and
	// takes what there is.
	linger := 400 * time.Millisecond
	if res, took := plan(PlanInput{Next: 0, MaxRecords: 10 * int(hw), Linger: linger}); res.End != hw || took < linger {
		t.Errorf("linger %s, nothing new: batch ends at %d after %s, want %d after at least the linger", linger, res.End, took, hw)
	}
	// Records arriving during the linger fill the batch, which is cut at
	// MaxRecords without waiting the rest of a long linger.
	go func() {
		time.Sleep(200 * time.Millisecond)
		produce(2 * int(hw))
	}()
	res, took := plan(PlanInput{Next: 0, MaxRecords: 2 * int(hw), Linger: time.Minute})
	if res.End != 2*hw {
		t.Errorf("batch filled during the linger ends at %d, want MaxRecords later at %d", res.End, 2*hw)
	}
	if took >= 30*time.Second {
		t.Errorf("a full batch waited %s: the linger should end when it fills", took)
	}
	// Caught up: an empty range after PollFor, whatever the linger.
	_, hw, err = kafkalog.Bounds(ctx, kafka, "plan", 0)
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := plan(PlanInput{Next: hw, MaxRecords: 10, PollFor: 300 * time.Millisecond, Linger: time.Second}); res.End != hw {
		t.Errorf("caught up: batch ends at %d, want an empty range at %d", res.End, hw)
	}
}
