// Package workerbin holds the end-to-end tests that run the worker binary
// itself, as a container would: killed at every stage of a batch, started
// with its servers down, several in one pool, beside transactional
// producers. They use the e2e fixture; apart from e2e's own tests so that
// the two run at once.
package workerbin

import (
	"context"
	"fmt"
	"github.com/paystream/paystream/e2e"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/simulation"
)

// faultTuning makes batches small and plans poll briefly, so that a test
// of a few thousand events runs many batches across its faults.
func faultTuning() operator.Tuning {
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 700, time.Second
	return tuning
}

// newFaultEnv is a stack with no worker in this process and events
// produced with seed.
func newFaultEnv(t *testing.T, partitions, events int, seed uint64) *e2e.Stack {
	t.Helper()
	s := e2e.Start(t, e2e.Options{Partitions: partitions, Tuning: faultTuning(), NoWorker: true})
	opts := simulation.DefaultOptions()
	opts.Seed = seed
	s.Produce(t, opts, events)
	return s
}

// reconcileAfter waits until caught up and reconciles against m when it
// is set, naming what the pool and the batches hold when it does not
// catch up.
func reconcileAfter(t *testing.T, f *e2e.Stack, m *simulation.Manifest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := f.Operator.WaitCaughtUp(ctx, nil); err != nil {
		st, _ := f.Operator.Status(context.Background())
		t.Fatalf("%v: %+v\npool: %+v\nbatches running: %v", err, st, poolState(t, f), runningBatches(t, f))
	}
	f.Reconcile(t, m)
}

// TestWorkerKilledAtEveryStage kills the worker process with SIGKILL at
// each stage of a batch in turn — reading Kafka, inside Dedup, while
// Load scores the batch, between the load of one table and the next, after the loads but
// before the offset commit — then starts a fresh worker: the books must
// balance to the cent.
func TestWorkerKilledAtEveryStage(t *testing.T) {
	killAtEveryStage(t, config.WriteModeLoad, []string{"read:3", "dedup:2", "enrich:2", "load:transactions", "load:transactions_enriched:2",
		"load:dedup_audit", "load:ingest_errors:2", "load:batch_ledger", "commit:2"})
}

// TestStorageWriteWorkerKilledAtEveryStage is the same in storagewrite
// mode, on the local Storage Write API that keeps BigQuery's documented
// offsets (internal/warehouse TestLocalStorageWriteKeepsTheDocumentedOffsets):
// the retried appends of the killed worker's batch must land once.
func TestStorageWriteWorkerKilledAtEveryStage(t *testing.T) {
	killAtEveryStage(t, config.WriteModeStorageWrite, []string{"read:3", "dedup:2", "load:transactions", "load:ingest_errors:2",
		"load:batch_ledger", "commit:2"})
}

func killAtEveryStage(t *testing.T, writeMode string, points []string) {
	bin := e2e.BuildWorker(t)
	for i, point := range points {
		t.Run(strings.ReplaceAll(point, ":", "_"), func(t *testing.T) {
			f := newFaultEnv(t, 2, 3000, uint64(10+i))
			f.Operator.Config.WriteMode = writeMode
			doomed := f.WorkerProcess(t, bin, faults.EnvKillAt+"="+point)
			if _, err := f.Operator.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitKilledAt(t, doomed, point)
			replacement := f.WorkerProcess(t, bin)
			reconcileAfter(t, f, &f.Manifest)
			if point == "dedup:2" {
				// Killed inside Dedup after the batch's snapshot: the
				// retry starts from it and replays nothing.
				logged, err := os.ReadFile(replacement.Stdout.(*os.File).Name())
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(logged), `"msg":"dedup window loaded from its snapshot"`) {
					t.Errorf("the replacement worker did not load the killed one's dedup snapshot; its log:\n%s", logged)
				}
			}
		})
	}
}

// waitKilledAt waits for a worker armed with faults.EnvKillAt to die
// there, by SIGKILL.
func waitKilledAt(t *testing.T, w *exec.Cmd, point string) {
	t.Helper()
	died := make(chan error, 1)
	go func() { died <- w.Wait() }()
	select {
	case <-died:
		if ws, ok := w.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("worker ended with %v, not killed at %s", w.ProcessState, point)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("worker never reached %s", point)
	}
}

// TestWorkerKilledAtRandom kills the worker from outside at random moments
// while a longer stream is ingested, restarting it each time. `make soak`
// runs it for minutes (PAYSTREAM_SOAK=10m); CI runs a short round.
func TestWorkerKilledAtRandom(t *testing.T) {
	duration := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("PAYSTREAM_SOAK")); err == nil {
		duration = d
	}
	events := 6000 + int(duration.Seconds())*300
	bin := e2e.BuildWorker(t)
	f := newFaultEnv(t, 4, events, 99)
	if _, err := f.Operator.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	for end := time.Now().Add(duration); time.Now().Before(end); kills++ {
		w := f.WorkerProcess(t, bin)
		time.Sleep(time.Duration(500+rng.IntN(4000)) * time.Millisecond)
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
	}
	t.Logf("killed the worker %d times over %s of a %d-record stream", kills, duration, events)
	f.WorkerProcess(t, bin)
	reconcileAfter(t, f, &f.Manifest)
	fmt.Fprintf(os.Stderr, "soak: %d kills, %d records, reconciled\n", kills, f.Manifest.Records)
}

// TestZombieLoadWakesAfterItsRetry stalls a Load attempt without heartbeats
// after its first table, past its heartbeat timeout: Temporal retries it,
// and the retry finishes the batch (on the partition's worker, whose other
// goroutines still run); then the stalled attempt wakes and carries on
// writing the remaining tables. The job IDs it walks are the retry's, so
// nothing lands twice.
func TestZombieLoadWakesAfterItsRetry(t *testing.T) {
	bin := e2e.BuildWorker(t)
	f := newFaultEnv(t, 1, 2000, 77)
	zombie := f.WorkerProcess(t, bin, faults.EnvStallAt+"=load:transactions", faults.EnvStallFor+"=35s")
	if _, err := f.Operator.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// While the zombie's Load stalls, the batch's records show as under
	// way, not yet committed: the progress bar moves before batches end.
	var ing operator.Ingested
	for deadline := time.Now().Add(20 * time.Second); ing.UnderWay == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var err error
		if ing, err = f.Operator.Ingested(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if size := int64(f.Operator.Tuning.MaxRecords); ing.Committed != 0 || ing.UnderWay != size || ing.Stable < 2000 {
		t.Fatalf("while the first batch loads: %+v, want its %d records under way and none committed", ing, size)
	}
	time.Sleep(3 * time.Second) // the zombie takes the first batch
	f.WorkerProcess(t, bin)
	reconcileAfter(t, f, &f.Manifest)
	// Let the zombie wake and write, then check again.
	time.Sleep(40 * time.Second)
	if zombie.ProcessState != nil {
		t.Fatalf("the stalled worker exited: %v", zombie.ProcessState)
	}
	reconcileAfter(t, f, &f.Manifest)
}
