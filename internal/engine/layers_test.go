package engine

import (
	"os/exec"
	"strings"
	"testing"
)

// TestTheEngineKnowsNothingOfTemporal: the engine is the worker in plain
// Go, driven by the activities and by the benchmark's plain loop alike,
// so nothing it depends on, however deep, is Temporal's.
func TestTheEngineKnowsNothingOfTemporal(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.temporal.io/") || pkg == "github.com/paystream/paystream/activities" {
			t.Errorf("the engine depends on %s", pkg)
		}
	}
}
