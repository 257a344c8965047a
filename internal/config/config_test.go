package config

import (
	"errors"
	"flag"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/dedup"
)

// TestAllowedLatenessIsBounded: the dedup window holds event times as
// nanoseconds from a base it moves, which works for a lateness up to
// dedup.MaxLateness; a longer one is refused at start, in one line.
func TestAllowedLatenessIsBounded(t *testing.T) {
	for _, c := range []struct {
		lateness time.Duration
		ok       bool
	}{{time.Nanosecond, true}, {dedup.MaxLateness, true}, {0, false}, {-time.Minute, false}, {dedup.MaxLateness + 1, false}} {
		cfg := Default()
		cfg.AllowedLateness = c.lateness
		err := cfg.Validate()
		if (err == nil) != c.ok || err != nil && (!strings.Contains(err.Error(), "allowed-lateness") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("lateness %v: error %v, want ok=%v", c.lateness, err, c.ok)
		}
	}
}

// TestTemporalCompressionIsNoneOrGzip: the default sends requests to
// Temporal as they are; gzip may be asked for; anything else is refused
// at start, in one line.
func TestTemporalCompressionIsNoneOrGzip(t *testing.T) {
	if got := Default().TemporalCompression; got != CompressionNone {
		t.Errorf("default compression %q, want %q", got, CompressionNone)
	}
	for _, c := range []struct {
		value string
		ok    bool
	}{{CompressionNone, true}, {CompressionGzip, true}, {"zstd", false}, {"", false}} {
		cfg := Default()
		cfg.TemporalCompression = c.value
		err := cfg.Validate()
		if (err == nil) != c.ok || err != nil && (!strings.Contains(err.Error(), "temporal-compression") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("compression %q: error %v, want ok=%v", c.value, err, c.ok)
		}
	}
}

// TestVersionAndExitCodes: --version prints the binary's name and build
// and ends like -h (exit 0); a bad flag or variable is a usage error
// (exit 2); anything else a failure (exit 1).
func TestVersionAndExitCodes(t *testing.T) {
	newFlags := func() *flag.FlagSet {
		c := Default()
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		c.RegisterFlags(fs)
		return fs
	}
	fs := newFlags()
	if err := Parse(fs, []string{"--version"}); ExitCode(err) != ExitOK || !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--version: %v (exit %d), want exit 0", err, ExitCode(err))
	}
	if v := Version(); !strings.Contains(v, runtime.Version()) || strings.Contains(v, "\n") {
		t.Errorf("version %q: want one line naming the Go version", v)
	}
	fs = newFlags()
	if err := Parse(fs, []string{"--no-such-flag"}); ExitCode(err) != ExitUsage {
		t.Errorf("a bad flag: %v (exit %d), want %d", err, ExitCode(err), ExitUsage)
	}
	t.Setenv(EnvName("allowed-lateness"), "soon")
	fs = newFlags()
	if err := Parse(fs, nil); ExitCode(err) != ExitUsage {
		t.Errorf("a bad variable: %v (exit %d), want %d", err, ExitCode(err), ExitUsage)
	}
	if ExitCode(errors.New("Kafka unreachable")) != ExitFailure || ExitCode(nil) != ExitOK {
		t.Error("a failure must exit 1, success 0")
	}
}
