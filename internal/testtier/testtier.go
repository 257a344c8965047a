// Package testtier splits the tests in two tiers: `go test -short ./...`
// starts no server and builds no binary, for a fast loop while editing;
// `make test` (CI) runs everything.
package testtier

import "testing"

// NeedsServers skips t in the -short tier: t starts a server (the
// devstack, an in-process Kafka), or builds and runs the binaries.
func NeedsServers(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts servers or binaries: runs in make test, not in -short")
	}
}
