// Package devstacktest starts a devstack for a test: free ports, a state
// directory of the test's own, stopped when the test ends.
package devstacktest

import (
	"context"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/testtier"
)

// Config returns a devstack configuration on free ports with state in a
// temporary directory of t.
func Config(t testing.TB, partitions int) devstack.Config {
	t.Helper()
	cfg := devstack.DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.Partitions = partitions
	cfg.Log = testWriter{t}
	if err := devstack.UseFreePorts(&cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Start starts a stack with cfg and stops it when the test ends. The first
// call on a machine may build the tool servers (minutes).
func Start(t testing.TB, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start devstack: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
