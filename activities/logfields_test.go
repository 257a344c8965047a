package activities

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/engine"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/testtier"
)

// TestBatchLogLinesNameTheirRun: a batch's log lines carry the fields an
// operator searches by (topic, partition, batch_id) and those that lead to
// the run in the web UI (workflow_id, run_id).
func TestBatchLogLinesNameTheirRun(t *testing.T) {
	testtier.NeedsServers(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "logged"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kafka := kafkalog.Plain(cluster.ListenAddrs())
	if _, err := simulation.Produce(context.Background(), simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: kafka, Topic: "logged", Events: 500}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	a := &Activities{Engine: engine.New(engine.Config{Kafka: kafka, Log: zap.New(core)})}
	defer a.Engine.Close()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	spec := contract.Spec{Range: contract.Range{Topic: "logged", Start: 0, End: 500}, AllowedLateness: time.Minute}
	if _, err := env.ExecuteActivity(a.Dedup, spec); err != nil {
		t.Fatal(err)
	}
	done := logs.FilterMessage("dedup done").All()
	if len(done) != 1 {
		t.Fatalf("want one \"dedup done\" line; logs %v", logs.All())
	}
	f := done[0].ContextMap()
	for _, key := range []string{"topic", "partition", "batch_id", "workflow_id", "run_id"} {
		if v, ok := f[key]; !ok || v == "" {
			t.Errorf("the line lacks %s: %v", key, f)
		}
	}
	if f["topic"] != "logged" || f["batch_id"] != spec.ID() {
		t.Errorf("fields %v, want topic logged and batch %s", f, spec.ID())
	}
}
