package workerbin

import (
	"bufio"
	"encoding/json"
	"errors"
	"github.com/paystream/paystream/e2e"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWorkersSideBySide: as the README says, several workers run on one
// machine with the default --http-addr: the first serves there, the next
// on a free port its log names. An address given explicitly and taken
// fails loudly, exit 1. Profiles are served only at --pprof-addr, which
// must be a loopback address.
func TestWorkersSideBySide(t *testing.T) {
	bin := e2e.BuildWorker(t)
	cfg := e2e.Start(t, e2e.Options{Partitions: 2, NoWorker: true}).ClientConfig()
	args := []string{"--temporal-address", cfg.TemporalAddress, "--kafka-brokers", strings.Join(cfg.KafkaBrokers, ","),
		"--bigquery-endpoint", cfg.BigQueryEndpoint, "--bigquery-storage-endpoint", cfg.BigQueryStorageEndpoint}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAYSTREAM_HTTP_ADDR=") {
			env = append(env, kv)
		}
	}
	start := func(extra ...string) (*exec.Cmd, string) {
		t.Helper()
		log := t.TempDir() + "/worker.log"
		f, err := os.Create(log)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, append(args, extra...)...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); f.Close() })
		return cmd, log
	}
	// servingAt waits for the worker's log line msg that names an address.
	servingAt := func(log, msg string) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			f, err := os.Open(log)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var line struct{ Msg, Addr string }
				if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg {
					f.Close()
					return line.Addr
				}
			}
			f.Close()
			time.Sleep(200 * time.Millisecond)
		}
		b, _ := os.ReadFile(log)
		t.Fatalf("the worker never logged %q:\n%s", msg, b)
		return ""
	}
	_, firstLog := start("--pprof-addr", "127.0.0.1:0")
	first := servingAt(firstLog, "serving health and metrics")
	second, secondLog := start()
	addr := servingAt(secondLog, "serving health and metrics")
	if addr == first {
		t.Fatalf("both workers say they serve at %s", addr)
	}
	for _, a := range []string{first, addr} {
		resp, err := http.Get("http://" + a + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz at %s: %v %v", a, resp, err)
		}
		resp.Body.Close()
	}
	if second.ProcessState != nil {
		t.Fatalf("the second worker exited: %v", second.ProcessState)
	}

	// Profiles are served on their own loopback listener, never beside
	// /readyz and /metrics, and not at all unless asked for.
	profiles := servingAt(firstLog, "serving profiles")
	for _, c := range []struct {
		addr string
		want int
	}{{profiles, http.StatusOK}, {first, http.StatusNotFound}, {addr, http.StatusNotFound}} {
		resp, err := http.Get("http://" + c.addr + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("/debug/pprof/ at %s: %s, want %d", c.addr, resp.Status, c.want)
		}
	}
	out, err := exec.Command(bin, append(args, "--pprof-addr", "0.0.0.0:6060")...).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--pprof-addr") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("profiles on every interface: exit %v, output %q; want exit 2, one line naming --pprof-addr", err, out)
	}

	// Taken and given explicitly: one line, exit 1.
	_, port, _ := net.SplitHostPort(first)
	out, err = exec.Command(bin, append(args, "--http-addr", "127.0.0.1:"+port)...).CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "--http-addr") {
		t.Errorf("an explicit address that is taken: exit %v, output %q; want exit 1 naming --http-addr", err, out)
	}
}
