package main

import (
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/config"
)

// TestWorkerRefusesThePartitionSettings: the write mode, allowed
// lateness, window bound and load-job budget are given to each
// partition's workflow by `starter start`; a worker never reads them, so
// it refuses them as flags with one line that says where they belong
// (exit 2), and ignores their variables, which a shared ConfigMap may
// hold for the starter.
func TestWorkerRefusesThePartitionSettings(t *testing.T) {
	for _, arg := range []string{"--write-mode=storagewrite", "--allowed-lateness=1h", "--max-window-ids=10000", "--load-job-budget=100"} {
		err := run([]string{arg, "--version"})
		name, _, _ := strings.Cut(arg, "=")
		if config.ExitCode(err) != config.ExitUsage || err == nil || !strings.Contains(err.Error(), name+" ") ||
			!strings.Contains(err.Error(), "starter start") || strings.Contains(err.Error(), "\n") {
			t.Errorf("worker %s: %v (exit %d); want exit 2, one line naming %s and starter start", arg, err, config.ExitCode(err), name)
		}
	}
	// A variable the worker does not read is no mistake: --check-ready
	// then fails only because nothing serves there (exit 1).
	t.Setenv("PAYSTREAM_MAX_WINDOW_IDS", "lots")
	t.Setenv("PAYSTREAM_WRITE_MODE", "bogus")
	err := run([]string{"--check-ready", "--http-addr", "127.0.0.1:1"})
	if config.ExitCode(err) != config.ExitFailure {
		t.Errorf("worker with $PAYSTREAM_MAX_WINDOW_IDS=lots: %v (exit %d); want it ignored, exit 1 for nothing at --http-addr", err, config.ExitCode(err))
	}
}

// TestBadConfigurationFailsAtOnce: only an unreachable server is waited
// for; a TLS file that is not there still ends the worker at once, exit 1,
// with Temporal as unreachable as it gets.
func TestBadConfigurationFailsAtOnce(t *testing.T) {
	began := time.Now()
	err := run([]string{"--temporal-address", "127.0.0.1:1", "--temporal-tls-ca", t.TempDir() + "/missing-ca.pem", "--http-addr", ""})
	if config.ExitCode(err) != config.ExitFailure || !strings.Contains(err.Error(), "missing-ca.pem") || strings.Contains(err.Error(), "\n") || time.Since(began) > 5*time.Second {
		t.Fatalf("a CA file that is not there: %v (exit %d) after %v; want exit 1 at once, one line naming the file", err, config.ExitCode(err), time.Since(began))
	}
}
