package workerbin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"github.com/paystream/paystream/e2e"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/kafkalog"
)

// TestWorkerWaitsForItsServersAtStart: a worker started while Temporal,
// Kafka and BigQuery are all down (a cluster coming back from an outage,
// a pod rescheduled meanwhile) keeps running: it serves /healthz at once,
// /readyz answers 503 naming each server until it answers, and it connects
// to Temporal with backoff. SIGTERM during the wait exits 0. Once the
// servers are back, it becomes ready and ingests within seconds; the books
// then balance. Before, it exited 1 at once and, under Kubernetes, waited
// out a CrashLoopBackOff.
func TestWorkerWaitsForItsServersAtStart(t *testing.T) {
	ctx := context.Background()
	bin := e2e.BuildWorker(t)
	f := newFaultEnv(t, 2, 8000, 31)
	if _, err := f.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.Stack.StopTemporal()
	f.Stack.StopBigQuery()
	f.Stack.StopKafka()

	w := f.WorkerProcess(t, bin)
	exited := waitInBackground(t, w)
	addr := servingAddr(t, w, exited)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while waiting: %d %q", code, body)
	}
	if code, _ := get("/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics while waiting: %d", code)
	}
	code, body := get("/readyz")
	t.Logf("/readyz with every server down: %d\n%s", code, body)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with every server down: %d, want 503", code)
	}
	for _, name := range []string{"temporal", "kafka", "bigquery"} {
		line := readyLine(body, name)
		if line == "" || strings.HasSuffix(line, ": ok") {
			t.Errorf("/readyz does not say %s is awaited: %q", name, body)
		}
	}
	if line := readyLine(body, "temporal"); !strings.Contains(line, "waiting") {
		t.Errorf("/readyz's temporal line does not say the worker waits to connect: %q", line)
	}

	// SIGTERM during the wait: exit 0, at once.
	quitter := f.WorkerProcess(t, bin)
	quitterExited := waitInBackground(t, quitter)
	servingAddr(t, quitter, quitterExited)
	if err := quitter.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-quitterExited:
		if err != nil {
			t.Errorf("SIGTERM while waiting for Temporal: %v, want exit 0; log:\n%s", err, workerLog(t, quitter))
		}
	case <-time.After(10 * time.Second):
		t.Errorf("SIGTERM while waiting for Temporal: still running after 10 s")
	}

	// Kafka and BigQuery back: /readyz says so, and still waits for Temporal.
	if err := f.Stack.StartKafka(); err != nil {
		t.Fatal(err)
	}
	if err := f.Stack.StartBigQuery(ctx); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, 30*time.Second, 500*time.Millisecond, "/readyz says kafka: ok and bigquery: ok", func() bool {
		code, body = get("/readyz")
		return readyLine(body, "kafka") == "kafka: ok" && readyLine(body, "bigquery") == "bigquery: ok"
	})
	if code != http.StatusServiceUnavailable || !strings.Contains(readyLine(body, "temporal"), "waiting") {
		t.Fatalf("/readyz with Temporal still down: %d %q, want 503 naming Temporal", code, body)
	}

	// Temporal back, once the worker's backoff has grown to its longest
	// (7 attempts: about 16 s down): ready and ingesting within seconds.
	e2e.WaitFor(t, time.Minute, 500*time.Millisecond, "seven attempts to reach Temporal", func() bool { return connectAttempts(t, w) >= 7 })
	if err := f.Stack.StartTemporal(ctx); err != nil {
		t.Fatal(err)
	}
	reachable := time.Now()
	var ready, loaded time.Duration
	cfg := f.Stack.ClientConfig()
	for deadline := reachable.Add(60 * time.Second); ready == 0 || loaded == 0; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the worker exited (%v); log:\n%s", err, workerLog(t, w))
		default:
		}
		if time.Now().After(deadline) {
			code, body = get("/readyz")
			t.Fatalf("60 s after Temporal answered: ready after %v, first batch after %v; /readyz %d %q; log:\n%s", ready, loaded, code, body, workerLog(t, w))
		}
		if ready == 0 {
			if code, _ := get("/readyz"); code == http.StatusOK {
				ready = time.Since(reachable)
			}
		}
		if loaded == 0 {
			committed, err := kafkalog.CommittedOffsets(ctx, cfg.Kafka(), cfg.ConsumerGroup, cfg.Topic, 2)
			if err == nil && committed[0]+committed[1] > 0 {
				loaded = time.Since(reachable)
				t.Logf("committed offsets at the first batch: %v", committed)
			}
		}
	}
	t.Logf("from Temporal answering again: /readyz 200 after %.1f s, first batch loaded and committed after %.1f s", ready.Seconds(), loaded.Seconds())
	if loaded > 30*time.Second {
		t.Errorf("first batch %v after Temporal answered, want within 30 s", loaded)
	}

	// Connected, Temporal goes away for 15 s and comes back: the SDK's
	// pollers resume, and every partition commits its next batch.
	before, err := kafkalog.CommittedOffsets(ctx, cfg.Kafka(), cfg.ConsumerGroup, cfg.Topic, 2)
	if err != nil {
		t.Fatal(err)
	}
	f.Stack.StopTemporal()
	stopped, err := kafkalog.CommittedOffsets(ctx, cfg.Kafka(), cfg.ConsumerGroup, cfg.Topic, 2)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	if err := f.Stack.StartTemporal(ctx); err != nil {
		t.Fatal(err)
	}
	reachable = time.Now()
	if stopped[0] >= f.Manifest.EndOffsets[0] || stopped[1] >= f.Manifest.EndOffsets[1] {
		t.Logf("a partition was done before Temporal stopped (%v of %v): no resumption to time", stopped, f.Manifest.EndOffsets)
	} else {
		var resumed time.Duration
		e2e.WaitFor(t, 60*time.Second, 500*time.Millisecond, "every partition commits a batch after Temporal's return", func() bool {
			after, err := kafkalog.CommittedOffsets(ctx, cfg.Kafka(), cfg.ConsumerGroup, cfg.Topic, 2)
			return err == nil && after[0] > stopped[0] && after[1] > stopped[1]
		})
		resumed = time.Since(reachable)
		t.Logf("a 15 s outage of Temporal mid-run (committed %v when it began, %v when it stopped): every partition's next batch committed %.1f s after it answered again",
			before, stopped, resumed.Seconds())
		if resumed > 30*time.Second {
			t.Errorf("every partition's next batch %v after Temporal's return, want within 30 s", resumed)
		}
	}
	reconcileAfter(t, f, &f.Manifest)

	// Every attempt was logged at WARN, naming Temporal's address, with
	// waits that grow to 5 s.
	var waits []float64 // seconds
	sc := bufio.NewScanner(strings.NewReader(workerLog(t, w)))
	for sc.Scan() {
		var line struct {
			Severity, Msg, Temporal string
			RetryIn                 float64 `json:"retry_in"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "Temporal not reachable; retrying" {
			waits = append(waits, line.RetryIn)
			if line.Severity != "WARN" || line.Temporal != cfg.TemporalAddress {
				t.Errorf("attempt logged as %+v, want WARN naming %s", line, cfg.TemporalAddress)
			}
		}
	}
	t.Logf("waits between attempts: %v", waits)
	if len(waits) < 7 {
		t.Errorf("%d connection attempts logged, want one a line for each of at least 7", len(waits))
	}
	for _, s := range waits {
		if s < 0.16 || s > 6 {
			t.Errorf("a wait of %.2f s between attempts, want 200 ms to 5 s give or take a fifth", s)
		}
	}
	if last := waits[len(waits)-1]; len(waits) >= 7 && last < 4 {
		t.Errorf("the wait after attempt %d was %.2f s, want it grown to about 5 s", len(waits), last)
	}
}

// connectAttempts counts the worker's failed attempts to reach Temporal.
func connectAttempts(t *testing.T, w *exec.Cmd) int {
	return strings.Count(workerLog(t, w), `"msg":"Temporal not reachable; retrying"`)
}

// servingAddr waits for the worker's "serving health and metrics" line
// and returns its address; a worker that exits first fails the test with
// its log.
// waitInBackground waits for w in a goroutine and says how it exited on
// the channel; the test's end kills w and waits for that goroutine before
// workerProcess's cleanup waits again, so the two never wait at once.
func waitInBackground(t *testing.T, w *exec.Cmd) <-chan error {
	exited, done := make(chan error, 1), make(chan struct{})
	go func() {
		exited <- w.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = w.Process.Kill()
		<-done
	})
	return exited
}

func servingAddr(t *testing.T, w *exec.Cmd, exited <-chan error) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		select {
		case err := <-exited:
			t.Fatalf("the worker exited (%v) instead of waiting for its servers; it printed:\n%s", err, workerLog(t, w))
		case <-time.After(200 * time.Millisecond):
		}
		sc := bufio.NewScanner(strings.NewReader(workerLog(t, w)))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving health and metrics" {
				return line.Addr
			}
		}
	}
	t.Fatalf("the worker did not serve its endpoints within 30 s; log:\n%s", workerLog(t, w))
	return ""
}

// readyLine is /readyz's line for one server.
func readyLine(body, name string) string {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+": ") {
			return line
		}
	}
	return ""
}

func workerLog(t *testing.T, w *exec.Cmd) string {
	t.Helper()
	b, err := os.ReadFile(w.Stdout.(*os.File).Name())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}
