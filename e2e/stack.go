// Package e2e holds paystream's end-to-end tests and their one fixture: the
// local stack (the Temporal dev server, the Kafka-protocol broker, the
// BigQuery emulator), a worker in this process or as the worker binary, an
// operator, and the helpers every such test needs: produce a simulated
// stream, wait for a condition, reconcile the books. The starter's tests
// use the same fixture.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/testtier"
	"github.com/paystream/paystream/internal/warehouse"
)

// Stack is a running local stack with an operator, and a worker in this
// process unless Options.NoWorker.
type Stack struct {
	*devstack.Stack
	Operator *operator.Operator
	// Worker is the worker running in this process; nil with NoWorker.
	Worker *pipeline.Worker
	// Manifest is what Produce produced, for Reconcile.
	Manifest simulation.Manifest
	// SnapshotDir is the state directory every worker process of the
	// test shares, as restarts of a container share its pod's emptyDir.
	SnapshotDir string
}

// Options shape a Stack.
type Options struct {
	// Partitions of the topic (default 1); ignored with Servers.
	Partitions int
	// Servers configures the stack instead (a proxy in front of a
	// server, a TLS front): devstacktest.Config's, changed.
	Servers *devstack.Config
	// Tuning is the operator's (zero: operator.DefaultTuning).
	Tuning operator.Tuning
	// NoWorker starts no worker here: the test runs worker processes.
	NoWorker bool
	// Worker changes the in-process worker's configuration (to reach a
	// server through a fault-injecting proxy); the operator always talks
	// to the servers directly.
	Worker func(*config.Config)
}

// Start starts a Stack; everything stops when the test ends.
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	ctx := context.Background()
	servers := devstacktest.Config(t, max(o.Partitions, 1))
	if o.Servers != nil {
		servers = *o.Servers
	}
	s := &Stack{Stack: devstacktest.Start(t, servers), SnapshotDir: t.TempDir()}
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
	tuning := o.Tuning
	if tuning == (operator.Tuning{}) {
		tuning = operator.DefaultTuning()
	}
	s.Operator = &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: tuning}
	if o.NoWorker {
		return s
	}
	workerCfg := cfg
	if o.Worker != nil {
		o.Worker(&workerCfg)
	}
	if s.Worker, err = pipeline.NewWorker(ctx, workerCfg, tc, pipeline.WorkerOptions{Metrics: metrics.New()}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Worker.Stop)
	return s
}

// Produce produces events simulated with opts into the topic and keeps
// their manifest in s.Manifest.
func (s *Stack) Produce(t testing.TB, opts simulation.Options, events int) simulation.Manifest {
	t.Helper()
	return s.produce(t, opts, events, nil)
}

// ProduceIn is Produce in a Schema Registry format (avro or protobuf),
// with the simulator's schema versions written record by record in turn.
func (s *Stack) ProduceIn(t testing.TB, format string, opts simulation.Options, events int, versions ...int) simulation.Manifest {
	t.Helper()
	reg, err := s.Operator.Config.Registry()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := simulation.NewEncoder(context.Background(), format, reg, s.Operator.Config.Topic, versions)
	if err != nil {
		t.Fatal(err)
	}
	return s.produce(t, opts, events, enc)
}

func (s *Stack) produce(t testing.TB, opts simulation.Options, events int, enc simulation.Encoder) simulation.Manifest {
	t.Helper()
	cfg := s.Operator.Config
	m, err := simulation.Produce(context.Background(), opts, simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: events, Encoder: enc})
	if err != nil {
		t.Fatal(err)
	}
	s.Manifest = m
	return m
}

// WaitCaughtUp waits until every partition has loaded the log's end, as
// `starter wait` does.
func (s *Stack) WaitCaughtUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.Operator.WaitCaughtUp(ctx, nil); err != nil {
		st, _ := s.Operator.Status(context.Background())
		t.Fatalf("%v: %+v", err, st)
	}
}

// Reconcile checks the books as `starter reconcile` does — recon views,
// contiguous ledger ranges, offsets committed to the last stable offset —
// and against m, when set, to the cent: nothing lost, nothing doubled.
func (s *Stack) Reconcile(t testing.TB, m *simulation.Manifest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	report, err := s.Operator.Reconcile(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		var out strings.Builder
		report.Write(&out)
		t.Fatalf("reconciliation failed:\n%s", out.String())
	}
}

// Query runs sql in BigQuery and returns its rows.
func (s *Stack) Query(t testing.TB, sql string) [][]bigquery.Value {
	t.Helper()
	rows, err := warehouse.Rows(context.Background(), s.Operator.BigQuery, sql)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// WaitFor polls cond every poll until it holds, and fails the test with
// what when d passes first.
func WaitFor(t testing.TB, d, poll time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(poll) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
	}
}

var (
	buildOnce sync.Once
	workerBin string
	buildErr  error
	buildOut  []byte
)

// BuildWorker compiles the worker command once per test binary.
func BuildWorker(t testing.TB) string {
	t.Helper()
	testtier.NeedsServers(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "paystream-e2e-worker-")
		if err != nil {
			buildErr = err
			return
		}
		workerBin = filepath.Join(dir, "worker")
		buildOut, buildErr = exec.Command("go", "build", "-o", workerBin, "github.com/paystream/paystream/worker").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build worker: %v\n%s", buildErr, buildOut)
	}
	return workerBin
}

// WorkerProcess runs the worker binary against the stack, with extra
// environment, logging to a file under /tmp that outlives the test for a
// failure's post-mortem. Every worker of a test shares SnapshotDir.
func (s *Stack) WorkerProcess(t testing.TB, bin string, env ...string) *exec.Cmd {
	t.Helper()
	cfg := s.ClientConfig()
	cmd := exec.Command(bin, "--temporal-address", cfg.TemporalAddress, "--kafka-brokers", strings.Join(cfg.KafkaBrokers, ","),
		"--bigquery-endpoint", cfg.BigQueryEndpoint, "--bigquery-storage-endpoint", cfg.BigQueryStorageEndpoint, "--log-level", "info", "--snapshot-dir", s.SnapshotDir, "--http-addr", "127.0.0.1:0",
		"--schema-registry", cfg.SchemaRegistry)
	cmd.Env = append(os.Environ(), env...)
	dieWithParent(cmd)
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
