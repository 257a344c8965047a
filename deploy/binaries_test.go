package deploy_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/paystream/paystream/internal/testtier"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// build compiles the binaries once for the package's tests.
func build(t *testing.T) {
	t.Helper()
	testtier.NeedsServers(t)
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "paystream-deploy-test")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir+"/", "../worker", "../starter", "../simulator", "../devstack", "../bench").CombinedOutput()
		if err != nil {
			buildErr = &buildError{string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// envNames lists the PAYSTREAM_* variables a command reads, from its own
// -h output: every flag's variable, and the secrets it names.
func envNames(t *testing.T, binary string, args ...string) map[string]bool {
	t.Helper()
	build(t)
	out, _ := exec.Command(filepath.Join(binDir, binary), append(args, "-h")...).CombinedOutput()
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$(PAYSTREAM_[A-Z0-9_]+)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) < 3 {
		t.Fatalf("%s %s -h names %d variables:\n%s", binary, strings.Join(args, " "), len(names), out)
	}
	return names
}

// TestEveryBinaryHasVersionAndExitCodes: each binary prints its name and
// build for --version and exits 0; a wrong flag is one line on stderr and
// exit 2 (docs/operating.md, "Exit codes").
func TestEveryBinaryHasVersionAndExitCodes(t *testing.T) {
	build(t)
	for _, c := range []struct {
		binary string
		bad    []string // a command line with a wrong flag
	}{
		{"worker", []string{"--no-such-flag"}},
		{"starter", []string{"status", "--no-such-flag"}},
		{"simulator", []string{"--no-such-flag"}},
		{"devstack", []string{"up", "--no-such-flag"}},
		{"bench", []string{"--no-such-flag"}},
	} {
		out, err := exec.Command(filepath.Join(binDir, c.binary), "--version").Output()
		if err != nil || !strings.HasPrefix(string(out), c.binary+" ") || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%s --version: %q, %v; want one line naming it, exit 0", c.binary, out, err)
		}
		cmd := exec.Command(filepath.Join(binDir, c.binary), c.bad...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%s %v: %v, want exit 2", c.binary, c.bad, err)
		}
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "no-such-flag") {
			t.Errorf("%s %v wrote %q, want one line naming the flag", c.binary, c.bad, stderr.String())
		}
	}
}

type buildError struct{ out string }

func (e *buildError) Error() string { return "go build: " + e.out }

// commandOf tells which binary and subcommand a container runs, from its
// command (entrypoint) and args, the worker being the image's default.
func commandOf(command, args []string) (binary string, sub []string) {
	binary = "worker"
	if len(command) > 0 {
		binary = filepath.Base(command[0])
		args = append(command[1:], args...)
	}
	if binary == "starter" && len(args) > 0 {
		sub = []string{args[0]}
		if args[0] == "schema" && len(args) > 1 {
			sub = append(sub, args[1])
		}
	}
	return binary, sub
}

// commands are every binary and subcommand whose flags the tests read.
var commands = [][]string{
	{"worker"}, {"simulator"}, {"bench"},
	{"devstack", "up"}, {"devstack", "demo"},
	{"starter", "schema", "apply"}, {"starter", "schema", "print"}, {"starter", "start"}, {"starter", "stop"},
	{"starter", "pause"}, {"starter", "resume"}, {"starter", "drain"}, {"starter", "set-batch"},
	{"starter", "status"}, {"starter", "backfill"}, {"starter", "reconcile"}, {"starter", "replay-quarantine"},
	{"starter", "query"},
}

// flagsOf reads a command's flags and their usage from its -h output.
func flagsOf(t *testing.T, command []string) map[string]string {
	t.Helper()
	build(t)
	out, _ := exec.Command(filepath.Join(binDir, command[0]), append(command[1:], "-h")...).CombinedOutput()
	flags := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)(?: \S+)?\n\s+(.*)$`).FindAllStringSubmatch(string(out), -1) {
		usage := regexp.MustCompile(`\s*\(default .*\)$|\s*\[\$PAYSTREAM_\w+\]`).ReplaceAllString(m[2], "")
		flags[m[1]] = usage
	}
	if len(flags) == 0 {
		t.Fatalf("%v -h lists no flags:\n%s", command, out)
	}
	return flags
}

// sameMeaning lists the flags that commands word differently but that mean
// one thing everywhere, so one PAYSTREAM_* variable set for all of them
// (a ConfigMap, a shell profile) means one thing.
var sameMeaning = map[string]string{
	"allowed-lateness": "the pipeline's allowed lateness (the simulator makes late records older than it)",
	"bigquery-dataset": "the BigQuery dataset paystream writes (devstack's emulator serves it)",
	"bigquery-project": "the BigQuery project (devstack's emulator serves it)",
	"events":           "how many simulated payments to produce",
	"seed":             "the simulator's seed",
	"partitions":       "partitions of the topic (bench: counts to compare)",
	"timeout":          "how long the command waits before it gives up",
	"manifest":         "the simulator's manifest file",
	"partition":        "the partitions a starter command acts on",
	"from":             "the first offset a starter command acts on",
	"to":               "the offset after the last a starter command acts on",
	"topic":            "the Kafka topic of payment events",
}

// TestEachVariableHasOneMeaning: a flag that two commands share is one
// setting, worded alike or listed in sameMeaning. It caught --state-dir,
// devstack's server state and the worker's snapshots under one variable.
func TestEachVariableHasOneMeaning(t *testing.T) {
	usages := map[string]map[string][]string{} // flag → usage → commands
	for _, c := range commands {
		for name, usage := range flagsOf(t, c) {
			if usages[name] == nil {
				usages[name] = map[string][]string{}
			}
			usages[name][usage] = append(usages[name][usage], strings.Join(c, " "))
		}
	}
	for name, byUsage := range usages {
		if len(byUsage) > 1 && sameMeaning[name] == "" {
			t.Errorf("--%s (PAYSTREAM_%s) means different things: %v", name, strings.ToUpper(strings.ReplaceAll(name, "-", "_")), byUsage)
		}
	}
	for name := range sameMeaning {
		if len(usages[name]) < 2 {
			t.Errorf("sameMeaning lists --%s, which no two commands word differently: remove it", name)
		}
	}
}
