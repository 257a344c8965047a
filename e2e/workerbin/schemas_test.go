package workerbin

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/e2e"
	"github.com/paystream/paystream/internal/simulation"
)

// TestRegistryFormatsThroughKillsAndARegistryOutage: Avro records of two
// schema versions, then Protobuf ones, interleaved with JSON ones (the
// simulator's malformed records), through two SIGKILLs of the worker and
// a Schema Registry outage. The worker started during the outage has no
// schema cached: its batches wait for the registry, and no record is
// quarantined for it. Reconciliation is exact to the cent.
func TestRegistryFormatsThroughKillsAndARegistryOutage(t *testing.T) {
	for _, format := range []string{"avro", "protobuf"} {
		t.Run(format, func(t *testing.T) { registryFormatThroughFaults(t, format) })
	}
}

func registryFormatThroughFaults(t *testing.T, format string) {
	bin := e2e.BuildWorker(t)
	f := e2e.Start(t, e2e.Options{Partitions: 2, Tuning: faultTuning(), NoWorker: true})
	opts := simulation.DefaultOptions()
	opts.Seed = 29
	f.ProduceIn(t, format, opts, 6000, 1, 2)
	ctx := context.Background()
	first := f.WorkerProcess(t, bin)
	if _, err := f.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
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
	e2e.WaitFor(t, 2*time.Minute, 200*time.Millisecond, "some batches loaded", func() bool { return done() > 0 })
	kill(t, first)

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
	f.WorkerProcess(t, bin)
	reconcileAfter(t, f, &f.Manifest)
	if n := schemaErrors(t, f); n != 0 {
		t.Errorf("%d ingest_errors rows with a schema_ reason", n)
	}
}

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
