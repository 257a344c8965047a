package config

import (
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
