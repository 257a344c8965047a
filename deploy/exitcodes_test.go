package deploy_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exitCodeTable reads docs/operating.md's "Exit codes" table: per binary,
// the text of its 0, 1 and 2 columns.
func exitCodeTable(t *testing.T) map[string][3]string {
	t.Helper()
	doc, err := os.ReadFile("../docs/operating.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Exit codes\n")
	if !ok {
		t.Fatal("docs/operating.md has no Exit codes section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string][3]string{}
	header := false
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 4 {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == "binary" {
			header = cells[1] == "0" && cells[2] == "1" && cells[3] == "2"
			continue
		}
		if binary := strings.Trim(cells[0], "`"); header && binary != "" && !strings.HasPrefix(binary, "-") {
			rows[binary] = [3]string{cells[1], cells[2], cells[3]}
		}
	}
	if !header || len(rows) < 5 {
		t.Fatalf("the Exit codes table has no | binary | 0 | 1 | 2 | header or too few rows: %v", rows)
	}
	return rows
}

// mistake is one kind of wrong command line, by the words the Exit codes
// table uses for it.
type mistake struct {
	binary string
	kind   string // words of the table's cell
	args   []string
	env    []string
	names  string // what the error line must name
}

var mistakes = []mistake{
	{"worker", "an unknown flag", []string{"--no-such-flag"}, nil, "no-such-flag"},
	{"worker", "a value that does not parse", []string{"--stop-timeout=soon"}, nil, "stop-timeout"},
	{"worker", "a value that does not parse", nil, []string{"PAYSTREAM_STOP_TIMEOUT=soon"}, "PAYSTREAM_STOP_TIMEOUT"},
	{"worker", "a value that parses but cannot work", []string{"--kafka-brokers="}, nil, "kafka-brokers"},
	{"worker", "a value that parses but cannot work", []string{"--log-level=loud"}, nil, "log-level"},
	{"starter", "an unknown command", []string{"no-such-command"}, nil, "no-such-command"},
	{"starter", "an unknown flag", []string{"status", "--no-such-flag"}, nil, "no-such-flag"},
	{"starter", "a value that does not parse", []string{"status", "--timeout=soon"}, nil, "timeout"},
	{"starter", "a value that does not parse", []string{"status"}, []string{"PAYSTREAM_TIMEOUT=soon"}, "PAYSTREAM_TIMEOUT"},
	{"starter", "a value that parses but cannot work", []string{"set-batch", "--records=0"}, nil, "records"},
	{"simulator", "an unknown flag", []string{"--no-such-flag"}, nil, "no-such-flag"},
	{"simulator", "a value that does not parse", []string{"--events=many"}, nil, "events"},
	{"simulator", "a value that parses but cannot work", []string{"--events=-1"}, nil, "events"},
	{"devstack", "an unknown command", []string{"no-such-command"}, nil, "no-such-command"},
	{"devstack", "an unknown flag", []string{"up", "--no-such-flag"}, nil, "no-such-flag"},
	{"devstack", "a value that does not parse", []string{"up", "--kafka-port=high"}, nil, "kafka-port"},
	{"devstack", "a value that parses but cannot work", []string{"up", "--partitions=0"}, nil, "partitions"},
	{"bench", "an unknown flag", []string{"--no-such-flag"}, nil, "no-such-flag"},
	{"bench", "a value that does not parse", []string{"--partitions=some"}, nil, "partitions"},
	{"bench", "a value that parses but cannot work", []string{"--partitions=0"}, nil, "partition"},
}

// TestDocumentedExitCodesAreTheBinaries: each binary, given each kind of
// wrong command line, exits with the code under which docs/operating.md's
// Exit codes table lists that kind for it, lists it under no other code,
// and names what was wrong in its last line on stderr. The table once
// said the worker exits 2 on any bad value; a value that parses but
// cannot work makes it exit 1.
func TestDocumentedExitCodesAreTheBinaries(t *testing.T) {
	build(t)
	table := exitCodeTable(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAYSTREAM_") {
			env = append(env, kv) // the caller's settings are not the case's
		}
	}
	for _, m := range mistakes {
		name := m.binary + " " + strings.Join(append(append([]string{}, m.env...), m.args...), " ")
		row, ok := table[m.binary]
		if !ok {
			t.Errorf("%s: the Exit codes table has no row for %s", name, m.binary)
			continue
		}
		var documented []int
		for code, cell := range row {
			if strings.Contains(cell, m.kind) {
				documented = append(documented, code)
			}
		}
		if len(documented) != 1 {
			t.Errorf("%s: the table lists %q for %s under exit codes %v, want exactly one", name, m.kind, m.binary, documented)
			continue
		}
		got, stderr := exitCodeOf(t, m.binary, m.args, append(append([]string{}, env...), m.env...))
		if got != documented[0] {
			t.Errorf("%s (%s) exits %d; docs/operating.md says %d\nstderr: %s", name, m.kind, got, documented[0], stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if !strings.Contains(lines[len(lines)-1], m.names) {
			t.Errorf("%s: the last line on stderr does not name %s: %q", name, m.names, stderr)
		}
	}
	for _, b := range []string{"worker", "starter", "simulator", "devstack", "bench"} {
		if _, ok := table[b]; !ok {
			t.Errorf("the Exit codes table has no row for %s", b)
		}
	}
}

// exitCodeOf runs a binary in an empty directory and returns its exit
// code and stderr. A mistake is found before any server is dialed, so a
// binary still running after 30 s did not see it.
func exitCodeOf(t *testing.T, binary string, args, env []string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, binary), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, "still running after 30 s: " + stderr.String()
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	}
	t.Fatalf("%s %s: %v", binary, strconv.Quote(strings.Join(args, " ")), err)
	return 0, ""
}
