package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"

	"github.com/paystream/paystream/e2e"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/simulation"
)

// TestOperatorCommands drives the CLI as an operator would against the
// real stack with a worker running: start (twice), status --json until
// caught up, reconcile with the manifest, backfill, stop.
func TestOperatorCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, m, manifest := startOperatorStack(t, ctx, 3000)

	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, args, &out)
		return out.String(), err
	}
	out, err := cli("start", "--max-records", "800", "--poll-for", "1s")
	if err != nil || strings.Count(out, "started at offset 0") != 2 {
		t.Fatalf("start: %v\n%s", err, out)
	}
	if out, err = cli("start"); err != nil || strings.Count(out, "already running") != 2 {
		t.Fatalf("second start: %v\n%s", err, out)
	}

	var status []operator.PartitionStatus
	for deadline := time.Now().Add(5 * time.Minute); ; {
		out, err := cli("status", "--json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &status); err != nil {
			t.Fatalf("status --json is not JSON: %v\n%s", err, out)
		}
		// Keys are snake_case, as JSON tools expect.
		if !strings.Contains(out, `"high_watermark":`) || regexp.MustCompile(`"[A-Z]\w*":`).MatchString(out) {
			t.Fatalf("status --json keys are not snake_case:\n%s", out)
		}
		if status[0].Lag == 0 && status[1].Lag == 0 && status[0].State == contract.StateCaughtUp && status[1].State == contract.StateCaughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not caught up: %s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for p, st := range status {
		if st.State != contract.StateCaughtUp || st.Committed != m.EndOffsets[p] || st.HighWatermark != m.EndOffsets[p] || st.BatchesDone < 2 {
			t.Errorf("partition %d status %+v; want caught up, committed = high watermark = %d, at least 2 batches", p, st, m.EndOffsets[p])
		}
	}
	// The table ends with where the partitions run: the one worker holds both.
	// Then the typed columns: none, as JSON records add none.
	if out, err := cli("status"); err != nil || !regexp.MustCompile(`workers: 1 in the pool; \S+ holds \[0 1\]\ntyped columns: none yet`).MatchString(out) {
		t.Errorf("status: %v\n%s\nwant the pool's line, one worker holding partitions 0 and 1, then no typed columns", err, out)
	}

	// --watch redraws the table until interrupted, then exits 0. The
	// interrupt comes after the second table, not after a fixed time: on a
	// loaded machine one status query alone can take longer than the interval.
	watchCtx, stopWatch := context.WithTimeout(ctx, time.Minute)
	watched := &interruptAfter{tables: 2, interrupt: stopWatch}
	err = run(watchCtx, []string{"status", "--watch", "400ms"}, watched)
	stopWatch()
	if err != nil || strings.Count(watched.String(), "PARTITION") < 2 || strings.Count(watched.String(), contract.StateCaughtUp) < 4 {
		t.Errorf("status --watch: %v\n%s", err, watched.String())
	}

	if out, err = cli("reconcile", "--manifest", manifest); err != nil || !strings.Contains(out, "every check passed") {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	// replay-quarantine: --dry-run lists the late records the manifest
	// sent; the replay loads them; a second replay loads nothing.
	late := m.ErrorsByReason["late"]
	if late == 0 {
		t.Fatal("the stream has no late record; replay-quarantine would prove nothing")
	}
	if out, err = cli("replay-quarantine", "--dry-run"); err != nil || !strings.Contains(out, fmt.Sprintf("%d late records in", late)) {
		t.Fatalf("replay-quarantine --dry-run: %v\n%s", err, out)
	}
	out, err = cli("replay-quarantine")
	var batches, loaded, stayed, before int
	if err == nil {
		_, err = fmt.Sscanf(out[strings.LastIndex(out, "\nreplayed ")+1:], "replayed %d batches: %d records loaded, %d left in quarantine as duplicates, %d batches replayed before",
			&batches, &loaded, &stayed, &before)
	}
	if err != nil || loaded == 0 || loaded+stayed != late || before != 0 {
		t.Fatalf("replay-quarantine of %d late records: %v\n%s", late, err, out)
	}
	if out, err = cli("replay-quarantine"); err != nil || !strings.Contains(out, "replayed 0 batches: 0 records loaded") || strings.Contains(out, ": loaded") {
		t.Fatalf("second replay-quarantine: %v\n%s", err, out)
	}
	if out, err = cli("reconcile", "--manifest", manifest); err != nil || !strings.Contains(out, "every check passed") {
		t.Fatalf("reconcile after the replay: %v\n%s", err, out)
	}
	if out, err = cli("backfill", "--partition", "1", "--from", "0", "--to", fmt.Sprint(m.EndOffsets[1])); err != nil || strings.Contains(out, ": loaded") || !strings.Contains(out, "already loaded") {
		t.Fatalf("backfill of an ingested range: %v\n%s", err, out)
	}
	if _, err = cli("backfill", "--partition", "1", "--from", "0", "--to", fmt.Sprint(m.EndOffsets[1]+10)); err == nil || !strings.Contains(err.Error(), "ingested up to offset") {
		t.Fatalf("backfill past the frontier: %v", err)
	}
	if out, err = cli("stop"); err != nil || len(regexp.MustCompile(`ingest/\S+/\d+: stopped at offset \d+`).FindAllString(out, -1)) != 2 {
		t.Fatalf("stop: %v\n%s", err, out)
	}

	// A broken manifest figure makes reconcile fail with exit code 1.
	m.UniqueIDs++
	if err := m.WriteFile(manifest); err != nil {
		t.Fatal(err)
	}
	out, err = cli("reconcile", "--manifest", manifest)
	if !errors.Is(err, errMismatch) || !strings.Contains(out, "MISMATCH") {
		t.Fatalf("reconcile against a wrong manifest: %v\n%s", err, out)
	}
}

// interruptAfter collects what status --watch writes and interrupts it,
// as Ctrl-C would, once the given number of tables were drawn in full.
type interruptAfter struct {
	bytes.Buffer
	tables    int
	interrupt func()
}

func (w *interruptAfter) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	// The "all" row ends a table.
	if strings.Count(w.String(), "\nall ") >= w.tables {
		w.interrupt()
	}
	return n, err
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"schema"}, {"start", "--bogus"}, {"backfill", "--partition", "1"}, {"status", "extra"}, {"query"}, {"query", "a.sql", "b.sql"}} {
		err := run(context.Background(), args, os.Stdout)
		if !errors.As(err, new(config.UsageError)) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want a one-line usage error", args, err)
		}
	}
	// A file that is not there is a failure (exit 1), not a usage error.
	if err := run(context.Background(), []string{"query", "no-such.sql"}, os.Stdout); err == nil || errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), "no-such.sql") {
		t.Errorf("query of a missing file: %v, want an error naming it", err)
	}
}

// TestCompletion loads the bash script into bash and completes a command
// and a flag with it; zsh and fish scripts name every command.
func TestCompletion(t *testing.T) {
	var script bytes.Buffer
	if err := run(context.Background(), []string{"completion", "bash"}, &script); err != nil {
		t.Fatal(err)
	}
	for words, want := range map[string]string{"starter set-b": "set-batch", "starter set-batch --rec": "--records", "starter schema ap": "apply", "starter help stat": "status"} {
		cmd := exec.Command("bash", "-c", script.String()+`
COMP_WORDS=($WORDS); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _starter; echo "${COMPREPLY[@]}"`)
		cmd.Env = append(os.Environ(), "WORDS="+words)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("completing %q: %v %q, want %q", words, err, out, want)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"completion", shell}, &out); err != nil {
			t.Fatal(err)
		}
		for _, c := range commands {
			if name, _, _ := strings.Cut(c.name, " "); !strings.Contains(out.String(), name) {
				t.Errorf("%s completion lacks %s", shell, name)
			}
		}
	}
	if err := run(context.Background(), []string{"completion", "tcsh"}, os.Stdout); !errors.As(err, new(config.UsageError)) {
		t.Errorf("completion tcsh: %v, want a usage error", err)
	}
}

// startOperatorStack starts a two-partition devstack with a worker,
// points the CLI at it through the environment (flags also come from
// there), and produces events with their manifest, written to a file.
func startOperatorStack(t *testing.T, ctx context.Context, events int) (config.Config, simulation.Manifest, string) {
	t.Helper()
	return startOperatorStackWith(t, ctx, simulation.DefaultOptions(), events)
}

// startOperatorStackWith is startOperatorStack with the simulator's
// options (event times, say).
func startOperatorStackWith(t *testing.T, ctx context.Context, opts simulation.Options, events int) (config.Config, simulation.Manifest, string) {
	t.Helper()
	s := e2e.Start(t, e2e.Options{Partitions: 2})
	cfg := s.ClientConfig()
	for _, kv := range [][2]string{
		{"temporal-address", cfg.TemporalAddress}, {"kafka-brokers", strings.Join(cfg.KafkaBrokers, ",")},
		{"bigquery-endpoint", cfg.BigQueryEndpoint},
	} {
		t.Setenv(config.EnvName(kv[0]), kv[1])
	}
	m := s.Produce(t, opts, events)
	manifest := filepath.Join(t.TempDir(), "manifest.json")
	if err := m.WriteFile(manifest); err != nil {
		t.Fatal(err)
	}
	return cfg, m, manifest
}

// TestPoolLineShowsPlacement: status says which worker holds which
// partitions, and which wait for a worker.
func TestPoolLineShowsPlacement(t *testing.T) {
	pool := &contract.PoolState{
		Members: []string{"paystream/pod-a-1-00ff", "paystream/pod-b-1-0a0a"},
		Partitions: map[string]string{"ingest/payments/2": "paystream/pod-a-1-00ff", "ingest/payments/0": "paystream/pod-a-1-00ff",
			"ingest/payments/1": "paystream/pod-b-1-0a0a", "ingest/payments/3": ""},
	}
	want := "workers: 2 in the pool; pod-a-1-00ff holds [0 2]; pod-b-1-0a0a holds [1]; unplaced [3]"
	if got := poolLine(pool); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := poolLine(nil); !strings.Contains(got, "no pool") {
		t.Errorf("without a pool: %q", got)
	}
}
