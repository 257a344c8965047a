package deploy_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

	"github.com/paystream/paystream/internal/metrics"
)

const (
	alertRules     = "prometheus/alerts.yml"
	alertRuleTests = "prometheus/alerts_test.yml"
	prometheusRule = "k8s/components/alerts/prometheusrule.yaml"
)

// prometheusRuleHeader opens the PrometheusRule; the plain rules file's
// groups, indented, follow it as the spec.
const prometheusRuleHeader = `# Generated from deploy/prometheus/alerts.yml, whose groups are this
# spec word for word (deploy/alerts_test.go fails when they differ).
# Prometheus Operator picks up rules by its ruleSelector: kube-prometheus-
# stack's wants its release label (patch it in from an overlay).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: paystream
  labels:
    app.kubernetes.io/name: paystream
spec:
`

// wantPrometheusRule is the PrometheusRule made from the plain rules file.
func wantPrometheusRule(t *testing.T) []byte {
	t.Helper()
	plain, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(plain, []byte("\ngroups:\n"))
	if i < 0 {
		t.Fatalf("%s has no top-level groups", alertRules)
	}
	out := []byte(prometheusRuleHeader)
	for _, line := range strings.SplitAfter(string(plain[i+1:]), "\n") {
		if strings.TrimSpace(line) != "" {
			out = append(out, "  "...)
		}
		out = append(out, line...)
	}
	return out
}

// TestAlertRulesHaveOneSource: the PrometheusRule component is the plain
// rules file, so the two cannot drift. PAYSTREAM_UPDATE_RULES=1 writes it
// from the plain file.
func TestAlertRulesHaveOneSource(t *testing.T) {
	want := wantPrometheusRule(t)
	if os.Getenv("PAYSTREAM_UPDATE_RULES") != "" {
		if err := os.WriteFile(prometheusRule, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRule)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not %s: edit the plain file, then PAYSTREAM_UPDATE_RULES=1 go test -run TestAlertRulesHaveOneSource ./deploy", prometheusRule, alertRules)
	}
	rule := decode[monv1.PrometheusRule](t, prometheusRule, got)
	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !slices.Contains(alerts, r.Alert) {
				alerts = append(alerts, r.Alert)
			}
		}
	}
	wantAlerts := []string{"PaystreamPartitionNotLoading", "PaystreamOffsetLost", "PaystreamQuarantineShareHigh",
		"PaystreamLoadJobBudgetNearlySpent", "PaystreamLoadRetries", "PaystreamNoWorker"}
	if !slices.Equal(alerts, wantAlerts) {
		t.Errorf("alerts %v, want %v", alerts, wantAlerts)
	}
}

// TestAlertRulesUseExportedMetrics: every paystream_ series a rule reads
// is a name internal/metrics exports (or, for the per-partition gauges a
// worker exports whatever the partition's state, the names agreed with
// it), so no rule waits on a series that never comes.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	known := map[string]bool{
		metrics.EventsTotal: true, metrics.OffsetLostTotal: true, metrics.LoadJobsToday: true, metrics.LoadRetriesTotal: true,
		"paystream_partition_last_loaded_timestamp_seconds": true,
		"paystream_partition_log_end_offset":                true,
		"paystream_partition_committed_offset":              true,
	}
	var rules monv1.PrometheusRuleSpec
	strict(t, alertRules, &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, name := range regexp.MustCompile(`paystream_[a-z_]+`).FindAllString(r.Expr.String(), -1) {
				if !known[name] {
					t.Errorf("alert %s reads %s, which no worker exports", r.Alert, name)
				}
			}
		}
	}
	if len(rules.Groups) == 0 {
		t.Fatalf("%s has no groups", alertRules)
	}
}

// TestAlertRulesFire runs promtool's unit tests of the rules
// (prometheus/alerts_test.yml): for each alert, series that fire it and
// series that must not. .ci/run installs promtool (Debian's prometheus
// package); the -short tier skips it, so Go alone runs that tier.
func TestAlertRulesFire(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool is not on PATH (-short)")
		}
		t.Fatal("promtool is not on PATH: install Debian's prometheus package (apt-get install prometheus), as .ci/run does")
	}
	for _, args := range [][]string{{"check", "rules", filepath.Base(alertRules)}, {"test", "rules", filepath.Base(alertRuleTests)}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(alertRules)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
