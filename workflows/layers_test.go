package workflows

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWorkflowsDependOnTheSDKAndContractOnly: workflow code must replay
// alike on every worker, so the package may import Temporal's SDK, the
// standard library, contract and searchattr (the SDK's keys), and
// nothing that talks to Kafka or BigQuery, even for a constant.
func TestWorkflowsDependOnTheSDKAndContractOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{"contract": true, "workflows": true, "internal/searchattr": true}
	for _, pkg := range strings.Fields(string(out)) {
		rest, own := strings.CutPrefix(pkg, "github.com/paystream/paystream/")
		if own && !allowed[rest] || strings.Contains(pkg, "kafka") || strings.Contains(pkg, "bigquery") {
			t.Errorf("workflows depends on %s", pkg)
		}
	}
}
