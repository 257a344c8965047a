package activities

import (
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/simulation"
)

// TestBatchLogLinesNameTheirRun: a batch's log lines carry the fields an
// operator searches by (topic, partition, batch_id) and those that lead to
// the run in the web UI (workflow_id, run_id).
func TestBatchLogLinesNameTheirRun(t *testing.T) {
	kafka, _ := simulatedLog(t, "logged", simulation.DefaultOptions(), 500)
	core, logs := observer.New(zap.InfoLevel)
	a := &Activities{Kafka: kafka, Log: zap.New(core)}
	defer Close(a)
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
