package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/docs/queries"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/operator"
)

// TestQueryAcceptsOnlyOneSelect: `starter query` runs one SELECT (or WITH
// ... SELECT) and refuses DDL, DML, scripts and a second statement hidden
// after a semicolon, whatever comments and strings surround them; every
// built-in query passes.
func TestQueryAcceptsOnlyOneSelect(t *testing.T) {
	for _, name := range queries.Names() {
		sql, _ := queries.SQL(name)
		if err := selectOnly(sql); err != nil {
			t.Errorf("built-in %s refused: %v", name, err)
		}
	}
	for sql, ok := range map[string]bool{
		"SELECT 1":                                           true,
		"  -- a comment\nselect 1;  \n-- done\n":             true,
		"WITH x AS (SELECT 1 AS a) SELECT a FROM x":          true,
		"SELECT 'DROP TABLE t; DELETE' AS s":                 true,
		"SELECT `update` FROM t /* ; DROP */":                true,
		"SELECT \"\"\"a ; b\"\"\" AS s":                      true,
		"SELECT 1; DROP TABLE t":                             false,
		"SELECT 1;;":                                         false,
		"DROP TABLE `p.d.transactions`":                      false,
		"/* SELECT */ DELETE FROM t WHERE true":              false,
		"INSERT INTO t SELECT * FROM t":                      false,
		"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x": false,
		"CREATE OR REPLACE TABLE t AS SELECT 1":              false,
		"EXPORT DATA OPTIONS(uri='gs://b/*') AS SELECT 1":    false,
		"DECLARE x INT64; SELECT x":                          false,
		"BEGIN SELECT 1; END":                                false,
		"SELECT 'unclosed":                                   false,
		"-- nothing but a comment":                           false,
		"":                                                   false,
	} {
		if err := selectOnly(sql); (err == nil) != ok || err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want accepted=%v", sql, err, ok)
		}
	}
}

// TestCellsAreEscaped: a producer can put terminal escape sequences into
// ingest_errors.raw; the table shows them as text, and --json as \u
// escapes that decode back to the same string.
func TestCellsAreEscaped(t *testing.T) {
	raw := "pay\x1b]0;owned\x07\x1b[2J\u009b31m\u202etxt\r\nend\xff"
	got := printable(raw)
	want := `pay\x1b]0;owned\x07\x1b[2J\u009b31m\u202etxt\x0d\x0aend\xff`
	if got != want {
		t.Errorf("printable:\n got %s\nwant %s", got, want)
	}
	if printable("Zürich 12.50 EUR") != "Zürich 12.50 EUR" {
		t.Error("printable changed plain text")
	}
	var out bytes.Buffer
	if err := writeJSON(&out, []map[string]string{{"raw": "a\x1b[2J\u009b\u202eb\x7f"}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range out.String() {
		if unsafeRune(r) && r != '\n' {
			t.Fatalf("--json output holds %U raw:\n%q", r, out.String())
		}
	}
	var back []map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back[0]["raw"] != "a\x1b[2J\u009b\u202eb\x7f" {
		t.Errorf("--json does not decode to the cell: %v %q", err, back)
	}
}

// TestBuiltInQueries: the monitoring queries are in the binary: --list
// names each with what it shows, and a name runs without the repository
// on disk (a pod); a name that is none is a usage error naming --list.
func TestBuiltInQueries(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"query", "--list"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"freshness", "quarantine", "ledger_gaps", "duplicates_loaded"} {
		if !strings.Contains(out.String(), name+"  ") {
			t.Errorf("query --list lacks %s:\n%s", name, out.String())
		}
	}
	if !strings.Contains(out.String(), "Is every partition moving?") {
		t.Errorf("query --list does not say what freshness shows:\n%s", out.String())
	}
	t.Chdir(t.TempDir())
	for _, arg := range []string{"freshness", "freshness.sql", "docs/queries/freshness.sql"} {
		sql, err := querySource(arg)
		if err != nil || !strings.Contains(sql, "batch_ledger") {
			t.Errorf("%s without a checkout: %v", arg, err)
		}
	}
	err := run(context.Background(), []string{"query", "freshnes"}, &out)
	if !errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), "--list") {
		t.Errorf("an unknown name: %v, want a usage error naming --list", err)
	}
	if _, err := querySource("my/own.sql"); err == nil || errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), "my/own.sql") {
		t.Errorf("a missing file: %v, want a failure naming it", err)
	}
}

// TestCommandLineHabits: as kubectl, temporal and rpk do, flags may come
// after a positional argument, `help <command>` prints that command's
// help, and a mistyped command gets a suggestion.
func TestCommandLineHabits(t *testing.T) {
	ctx := context.Background()
	// The flag after the file is read: the failure is the missing file
	// (exit 1), not a usage error about a second argument.
	err := run(ctx, []string{"query", "no-such.sql", "--json"}, new(bytes.Buffer))
	if err == nil || errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), "no-such.sql") {
		t.Errorf("query no-such.sql --json: %v, want the missing file's failure", err)
	}
	if err := run(ctx, []string{"query", "a.sql", "--json", "b.sql"}, new(bytes.Buffer)); !errors.As(err, new(config.UsageError)) {
		t.Errorf("two files around a flag: %v, want a usage error", err)
	}
	for cmd, want := range map[string]string{"status": "\n  -watch duration", "set-batch": "\n  -records int", "query": "\n  -list", "schema apply": "\n  -bigquery-dataset string"} {
		var out bytes.Buffer
		if err := run(ctx, append([]string{"help"}, strings.Fields(cmd)...), &out); err != nil {
			t.Fatalf("help %s: %v", cmd, err)
		}
		if !strings.Contains(out.String(), "starter "+cmd) || !strings.Contains(out.String(), want) || strings.Contains(out.String(), "replay-quarantine") {
			t.Errorf("help %s prints no help of its own:\n%s", cmd, out.String())
		}
		var dashH bytes.Buffer
		if err := run(ctx, append(strings.Fields(cmd), "-h"), &dashH); ExitCodeOf(err) != config.ExitOK || dashH.String() != out.String() {
			t.Errorf("%s -h: %v, want the same help as help %s", cmd, err, cmd)
		}
	}
	for typo, want := range map[string]string{"stauts": "status", "set-bacth": "set-batch", "reconcil": "reconcile", "replay": "replay-quarantine"} {
		err := run(ctx, []string{typo}, new(bytes.Buffer))
		if !errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), `did you mean "`+want+`"`) {
			t.Errorf("%s: %v, want a suggestion of %s", typo, err, want)
		}
		err = run(ctx, []string{"help", typo}, new(bytes.Buffer))
		if !errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), want) {
			t.Errorf("help %s: %v, want a suggestion of %s", typo, err, want)
		}
	}
}

// TestCommandVariablesStayWithTheirCommand: a variable set for one
// command's flag (a backfill's partition) does not act on another
// (pause every partition); each command's own flags are
// PAYSTREAM_<COMMAND>_<FLAG>, while the shared settings and --timeout
// keep PAYSTREAM_<FLAG>.
func TestCommandVariablesStayWithTheirCommand(t *testing.T) {
	t.Setenv("PAYSTREAM_PARTITION", "3")
	t.Setenv("PAYSTREAM_RECORDS", "7")
	t.Setenv("PAYSTREAM_BACKFILL_PARTITION", "1")
	t.Setenv("PAYSTREAM_SET_BATCH_RECORDS", "900")
	t.Setenv("PAYSTREAM_TOPIC", "eu.payments")
	t.Setenv("PAYSTREAM_TIMEOUT", "45s")
	cmd, err := parseCommand("pause", nil, new(bytes.Buffer))
	if err != nil || len(cmd.args.partitions) != 0 || cmd.cfg.Topic != "eu.payments" || cmd.args.timeout.String() != "45s" {
		t.Errorf("pause: %v, partitions %v topic %q timeout %v; want all partitions of eu.payments within 45s", err, cmd.args.partitions, cmd.cfg.Topic, cmd.args.timeout)
	}
	cmd, err = parseCommand("backfill", []string{"--from", "0", "--to", "9"}, new(bytes.Buffer))
	if err != nil || cmd.args.partition != 1 {
		t.Errorf("backfill: %v, partition %d; want 1 from PAYSTREAM_BACKFILL_PARTITION", err, cmd.args.partition)
	}
	cmd, err = parseCommand("set-batch", nil, new(bytes.Buffer))
	if err != nil || cmd.args.setBatch.MaxRecords != 900 {
		t.Errorf("set-batch: %v, records %d; want 900 from PAYSTREAM_SET_BATCH_RECORDS", err, cmd.args.setBatch.MaxRecords)
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"help", "set-batch"}, &help); err != nil || !strings.Contains(help.String(), "$PAYSTREAM_SET_BATCH_RECORDS") || !strings.Contains(help.String(), "$PAYSTREAM_TOPIC") {
		t.Errorf("help set-batch names not the variables it reads: %v\n%s", err, help.String())
	}
	t.Setenv("PAYSTREAM_STATUS_WATCH", "soon")
	if _, err := parseCommand("status", nil, new(bytes.Buffer)); !errors.As(err, new(config.UsageError)) || !strings.Contains(err.Error(), "PAYSTREAM_STATUS_WATCH") {
		t.Errorf("a bad command variable: %v, want a usage error naming it", err)
	}
}

// ExitCodeOf is the exit code main gives err.
func ExitCodeOf(err error) int { return config.ExitCode(err) }

// TestStartSaysWhatARunningPartitionKeeps: start leaves a running
// partition as it is, so when the settings given to it differ from those
// the partition runs with, it says which and how to change them; settings
// left at their defaults are not "given" and raise nothing.
func TestStartSaysWhatARunningPartitionKeeps(t *testing.T) {
	running := &operator.Settings{MaxRecords: 300, MaxBytes: 8 << 20, WriteMode: "load", AllowedLateness: 10 * time.Minute, MaxWindowIDs: 5_000_000}
	r := operator.StartResult{Partition: 2, WorkflowID: "ingest/payments/2", Already: true, Running: running}
	t.Setenv("PAYSTREAM_WRITE_MODE", "storagewrite")
	cmd, err := parseCommand("start", []string{"--max-records", "400", "--allowed-lateness", "10m"}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	got := keptSettings(r, *cmd.cfg, *cmd.args)
	for _, want := range []string{"it keeps --max-records 300 (400 given), --write-mode load (storagewrite given);", "starter stop", "starter drain --partition 2, then starter start"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "lateness") || strings.Contains(got, "window") {
		t.Errorf("%q names a setting that is the same, or was not given", got)
	}
	os.Unsetenv("PAYSTREAM_WRITE_MODE")
	cmd, _ = parseCommand("start", []string{"--max-records", "400"}, new(bytes.Buffer))
	if got := keptSettings(r, *cmd.cfg, *cmd.args); !strings.Contains(got, "set-batch changes the batch size") || strings.Contains(got, "stop") {
		t.Errorf("only the batch size differs: %q, want set-batch named", got)
	}
	cmd, _ = parseCommand("start", nil, new(bytes.Buffer))
	if got := keptSettings(r, *cmd.cfg, *cmd.args); got != "" {
		t.Errorf("nothing given: %q, want nothing said", got)
	}
}
