package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/testtier"
)

// TestUpStopsCleanly runs the devstack command as a user would, waits for
// it to come up, then stops it — with SIGTERM, and with SIGKILL, which
// gives it no chance to clean up — and checks that no server it started is
// left running.
func TestUpStopsCleanly(t *testing.T) {
	testtier.NeedsServers(t)
	bin := filepath.Join(t.TempDir(), "devstack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build devstack: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			cfg := devstack.DefaultConfig()
			if err := devstack.UseFreePorts(&cfg); err != nil {
				t.Fatal(err)
			}
			stateDir := t.TempDir()
			cmd := exec.Command(bin, "up", "--state-dir", stateDir, "--partitions", "2",
				"--temporal-port", strconv.Itoa(cfg.TemporalPort), "--temporal-ui-port", strconv.Itoa(cfg.TemporalUIPort),
				"--kafka-port", strconv.Itoa(cfg.KafkaPort), "--bigquery-port", strconv.Itoa(cfg.BigQueryPort),
				"--bigquery-grpc-port", strconv.Itoa(cfg.BigQueryGRPCPort), "--schema-registry-port", strconv.Itoa(cfg.RegistryPort))
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			up := make(chan string, 1)
			go func() {
				var seen strings.Builder
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					seen.WriteString(sc.Text() + "\n")
					if strings.Contains(sc.Text(), "The stack is up") {
						up <- seen.String()
					}
				}
				up <- seen.String()
			}()
			select {
			case out := <-up:
				if !strings.Contains(out, "The stack is up") {
					t.Fatalf("devstack up ended before the stack was up:\n%s", out)
				}
				for _, want := range []string{"Temporal web UI", "Kafka bootstrap", "BigQuery API", strconv.Itoa(cfg.KafkaPort)} {
					if !strings.Contains(out, want) {
						t.Errorf("output does not name %q:\n%s", want, out)
					}
				}
			case <-time.After(10 * time.Minute):
				t.Fatal("devstack up did not come up in 10 minutes")
			}
			if children := serversUsing(stateDir); len(children) != 2 {
				t.Fatalf("want the Temporal and BigQuery servers running, found pids %v", children)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			if sig == syscall.SIGTERM && err != nil {
				t.Errorf("devstack up exited with %v after SIGTERM, want 0", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(serversUsing(stateDir)) > 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if left := serversUsing(stateDir); len(left) > 0 {
				for _, pid := range left {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				t.Fatalf("after %v, server processes %v are still running", sig, left)
			}
		})
	}
}

// serversUsing returns the pids of processes whose command line names dir.
func serversUsing(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), dir) && !strings.Contains(string(cmdline), "devstack\x00up") {
			pids = append(pids, pid)
		}
	}
	return pids
}
