package pipeline_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
)

func reconcileOK(t *testing.T, e *env, m simulation.Manifest) {
	t.Helper()
	report, err := e.operator.Reconcile(context.Background(), &m)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Fatalf("reconciliation failed:\n%s", out.String())
	}
}

// TestTemporalRestartMidRun stops the Temporal server while batches are in
// flight and starts it again on the same state: the worker reconnects by
// itself and the books balance.
func TestTemporalRestartMidRun(t *testing.T) {
	ctx := context.Background()
	tuning := pipeline.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 500, time.Second
	e := startEnv(t, 2, tuning)
	cfg := e.operator.Config
	m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Brokers: cfg.KafkaBrokers, Topic: cfg.Topic, Events: 8000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := e.stack.RestartTemporal(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(t, 5*time.Minute)
	reconcileOK(t, e, m)
	checkAgainstOracle(t, e, m)
}

// TestTwoWorkersAndTwoStarters runs a second worker beside the first and
// two starters at once, then backfills what was ingested: still exactly once.
func TestTwoWorkersAndTwoStarters(t *testing.T) {
	ctx := context.Background()
	tuning := pipeline.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 600, time.Second
	e := startEnv(t, 3, tuning)
	cfg := e.operator.Config
	second, err := pipeline.NewWorker(ctx, cfg, e.operator.Temporal, pipeline.WorkerOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop)
	m, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Brokers: cfg.KafkaBrokers, Topic: cfg.Topic, Events: 8000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.operator.Start(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent start: %v", err)
		}
	}
	e.waitCaughtUp(t, 5*time.Minute)
	for p := range 3 {
		if _, err := e.operator.Backfill(ctx, p, 0, m.EndOffsets[p]); err != nil {
			t.Fatal(err)
		}
	}
	reconcileOK(t, e, m)
	checkAgainstOracle(t, e, m)
}
