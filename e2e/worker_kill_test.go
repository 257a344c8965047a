package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/testtier"
	"github.com/paystream/paystream/internal/warehouse"
)

// buildWorker compiles this command once per test binary.
func buildWorker(t *testing.T) string {
	t.Helper()
	testtier.NeedsServers(t)
	bin := filepath.Join(t.TempDir(), "worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build worker: %v\n%s", err, out)
	}
	return bin
}

// workerProcess runs the worker binary against f's stack, with extra
// environment. Every worker of a test shares one state directory, as
// restarts of a container share its pod's emptyDir: a restarted worker
// loads the dedup windows the killed one wrote.
func workerProcess(t *testing.T, bin string, f *faultEnv, env ...string) *exec.Cmd {
	t.Helper()
	cfg := f.stack.ClientConfig()
	cmd := exec.Command(bin, "--temporal-address", cfg.TemporalAddress, "--kafka-brokers", strings.Join(cfg.KafkaBrokers, ","),
		"--bigquery-endpoint", cfg.BigQueryEndpoint, "--bigquery-storage-endpoint", cfg.BigQueryStorageEndpoint, "--log-level", "info", "--snapshot-dir", f.snapshotDir, "--http-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	// A test binary killed by its timeout must not leave workers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logFile, err := os.CreateTemp("/tmp", "worker-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})
	return cmd
}

// faultEnv is a stack with a stream produced and an operator.
type faultEnv struct {
	stack       *devstack.Stack
	operator    *operator.Operator
	manifest    simulation.Manifest
	snapshotDir string
}

func newFaultEnv(t *testing.T, partitions, events int, seed uint64) *faultEnv {
	t.Helper()
	ctx := context.Background()
	s := devstacktest.Start(t, devstacktest.Config(t, partitions))
	cfg := s.ClientConfig()
	opts := simulation.DefaultOptions()
	opts.Seed = seed
	m, err := simulation.Produce(ctx, opts, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	f := faultEnvOn(t, s)
	f.manifest = m
	return f
}

// faultEnvOn is a faultEnv on a running stack, with nothing produced.
func faultEnvOn(t *testing.T, s *devstack.Stack) *faultEnv {
	t.Helper()
	ctx := context.Background()
	cfg := s.ClientConfig()
	tc, err := pipeline.DialTemporal(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bq.Close() })
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 700, time.Second
	return &faultEnv{stack: s, snapshotDir: t.TempDir(), operator: &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: tuning}}
}

// reconcile waits until caught up and checks every figure against the
// manifest: nothing lost, nothing doubled.
func (f *faultEnv) reconcile(t *testing.T) {
	t.Helper()
	f.reconcileWith(t, &f.manifest)
}

// reconcileWith waits until caught up and checks the books, and against
// m when it is set.
func (f *faultEnv) reconcileWith(t *testing.T, m *simulation.Manifest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := f.operator.WaitCaughtUp(ctx, nil); err != nil {
		st, _ := f.operator.Status(context.Background())
		t.Fatalf("%v: %+v\npool: %+v\nbatches running: %v", err, st, poolState(t, f), runningBatches(t, f))
	}
	report, err := f.operator.Reconcile(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Fatalf("after recovery, reconciliation failed:\n%s", out.String())
	}
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
	bin := buildWorker(t)
	for i, point := range points {
		t.Run(strings.ReplaceAll(point, ":", "_"), func(t *testing.T) {
			f := newFaultEnv(t, 2, 3000, uint64(10+i))
			f.operator.Config.WriteMode = writeMode
			doomed := workerProcess(t, bin, f, faults.EnvKillAt+"="+point)
			if _, err := f.operator.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			died := make(chan error, 1)
			go func() { died <- doomed.Wait() }()
			select {
			case <-died:
				if ws, ok := doomed.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("worker ended with %v, not killed at %s", doomed.ProcessState, point)
				}
			case <-time.After(3 * time.Minute):
				t.Fatalf("worker never reached %s", point)
			}
			replacement := workerProcess(t, bin, f)
			f.reconcile(t)
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

// TestWorkerKilledAtRandom kills the worker from outside at random moments
// while a longer stream is ingested, restarting it each time. `make soak`
// runs it for minutes (PAYSTREAM_SOAK=10m); CI runs a short round.
func TestWorkerKilledAtRandom(t *testing.T) {
	duration := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("PAYSTREAM_SOAK")); err == nil {
		duration = d
	}
	events := 6000 + int(duration.Seconds())*300
	bin := buildWorker(t)
	f := newFaultEnv(t, 4, events, 99)
	if _, err := f.operator.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	kills := 0
	for end := time.Now().Add(duration); time.Now().Before(end); kills++ {
		w := workerProcess(t, bin, f)
		time.Sleep(time.Duration(500+rng.IntN(4000)) * time.Millisecond)
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
	}
	t.Logf("killed the worker %d times over %s of a %d-record stream", kills, duration, events)
	workerProcess(t, bin, f)
	f.reconcile(t)
	fmt.Fprintf(os.Stderr, "soak: %d kills, %d records, reconciled\n", kills, f.manifest.Records)
}

// TestZombieLoadWakesAfterItsRetry stalls a Load attempt without heartbeats
// after its first table, past its heartbeat timeout: Temporal retries it,
// and the retry finishes the batch (on the partition's worker, whose other
// goroutines still run); then the stalled attempt wakes and carries on
// writing the remaining tables. The job IDs it walks are the retry's, so
// nothing lands twice.
func TestZombieLoadWakesAfterItsRetry(t *testing.T) {
	bin := buildWorker(t)
	f := newFaultEnv(t, 1, 2000, 77)
	zombie := workerProcess(t, bin, f, faults.EnvStallAt+"=load:transactions", faults.EnvStallFor+"=35s")
	if _, err := f.operator.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// While the zombie's Load stalls, the batch's records show as under
	// way, not yet committed: the progress bar moves before batches end.
	var ing operator.Ingested
	for deadline := time.Now().Add(20 * time.Second); ing.UnderWay == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var err error
		if ing, err = f.operator.Ingested(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if size := int64(f.operator.Tuning.MaxRecords); ing.Committed != 0 || ing.UnderWay != size || ing.Stable < 2000 {
		t.Fatalf("while the first batch loads: %+v, want its %d records under way and none committed", ing, size)
	}
	time.Sleep(3 * time.Second) // the zombie takes the first batch
	workerProcess(t, bin, f)
	f.reconcile(t)
	// Let the zombie wake and write, then check again.
	time.Sleep(40 * time.Second)
	if zombie.ProcessState != nil {
		t.Fatalf("the stalled worker exited: %v", zombie.ProcessState)
	}
	f.reconcile(t)
}
