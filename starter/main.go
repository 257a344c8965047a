// Command starter is paystream's operator CLI.
//
//	starter schema apply       create the BigQuery dataset, tables and views (idempotent)
//	starter schema print       print the DDL as it would be applied
//	starter start              start one PartitionIngest per partition (idempotent)
//	starter stop [--timeout 10m]
//	                           stop every partition after its current batch; wait until each has
//	starter pause|resume|drain [--partition 0,2]
//	                           hold, go on, or finish the current batch and end
//	starter set-batch --records N [--bytes B] [--partition 0,2]
//	                           change the batch size from the next plan on
//	starter status [--json] [--watch]
//	                           per partition: state, committed offset, high watermark, lag, batches, events/s, last error
//	starter backfill --partition P --from A --to B
//	                           re-drive the batches of [A, B); loaded ones stay loaded once
//	starter reconcile [--manifest FILE]
//	                           check the recon views, ledger ranges and offsets (and the manifest); exit 1 on a mismatch
//	starter replay-quarantine [--partition 0,2] [--from A] [--to B] [--dry-run]
//	                           load the quarantined late records of those batches, exactly once
//	starter completion bash|zsh|fish
//	                           print a shell completion script
//
// Every setting is a flag and an environment variable (PAYSTREAM_...); the
// defaults reach the local devstack. Errors are one line on stderr. Exit
// codes: 0 success, 1 the command failed (or reconcile found a mismatch),
// 2 a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/paystream/paystream/contract"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/progress"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

// commands lists every command with its one-line help, in usage order;
// usage and the completion scripts are made from it.
var commands = []struct{ name, help string }{
	{"schema apply", "create the BigQuery dataset, tables and views (idempotent)"},
	{"schema print", "print the DDL as it would be applied"},
	{"start", "start ingesting every partition (idempotent)"},
	{"stop", "stop every partition after its current batch and wait until each has (--timeout)"},
	{"pause", "finish the batch in flight, commit it, hold (--partition 0,2; default all)"},
	{"resume", "go on after a pause"},
	{"drain", "finish the batch in flight, commit it, end the partition's run"},
	{"set-batch", "change the batch size (--records, --bytes) from the next plan on"},
	{"status", "per partition: state, offsets, lag, batches, events/s, last error (--json, --watch)"},
	{"backfill", "re-drive the batches of --partition P from --from A to --to B; loaded ones stay loaded once"},
	{"reconcile", "check recon views, ledger ranges and offsets (and --manifest); exit 1 on a mismatch"},
	{"query", "run one SELECT: a built-in monitoring query (starter query freshness; --list names them) or a .sql file (--json)"},
	{"replay-quarantine", "load quarantined late records once an operator decided they belong (--dry-run lists them)"},
	{"completion", "print a completion script: starter completion bash|zsh|fish"},
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: starter <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-18s %s\n", c.name, c.help)
	}
	b.WriteString("\nRun 'starter help <command>' or 'starter <command> -h' for the command's flags. Each shared setting can also be set\n" +
		"as $PAYSTREAM_<FLAG>, a command's own flag as $PAYSTREAM_<COMMAND>_<FLAG> (help names each).\n" +
		"Exit codes: 0 ok, 1 failed or mismatch, 2 usage.\n")
	return b.String()
}

// errMismatch is reconcile's finding, already printed.
var errMismatch = errors.New("reconciliation found mismatches")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(config.UsageError)):
		fmt.Fprintln(os.Stderr, "starter:", err)
		os.Exit(config.ExitUsage)
	default:
		fmt.Fprintln(os.Stderr, "starter:", oneLine(err))
		os.Exit(config.ExitFailure)
	}
}

func run(ctx context.Context, argv []string, out io.Writer) error {
	if len(argv) == 0 {
		fmt.Fprint(os.Stderr, usage())
		return config.Usage(errors.New("no command given"))
	}
	name, rest := argv[0], argv[1:]
	switch name {
	case "--version", "-version", "version":
		fmt.Fprintln(out, "starter", config.Version())
		return nil
	case "-h", "--help", "-help", "help":
		if len(rest) == 0 {
			fmt.Fprint(out, usage())
			return nil
		}
		return commandHelp(out, strings.Join(rest, " "))
	case "completion":
		if len(rest) != 1 {
			return config.Usage(errors.New("completion needs a shell: bash, zsh or fish"))
		}
		return writeCompletion(out, rest[0])
	case "schema":
		if len(rest) == 0 || (rest[0] != "apply" && rest[0] != "print") {
			return config.Usage(errors.New("schema needs a subcommand: apply or print"))
		}
		name, rest = "schema "+rest[0], rest[1:]
	}
	cmd, err := parseCommand(name, rest, out)
	if err != nil {
		return err
	}
	cfg, args := cmd.cfg, cmd.args
	if name == "query" {
		if args.list {
			if len(cmd.positional) > 0 {
				return config.Usage(errors.New("query --list takes no query"))
			}
			return listQueries(out)
		}
		if len(cmd.positional) != 1 {
			return config.Usage(errors.New("query needs one query: a name from starter query --list, or a .sql file"))
		}
		sql, err := querySource(cmd.positional[0])
		if err != nil {
			return err
		}
		args.queryFile, args.querySQL = cmd.positional[0], sql
	} else if len(cmd.positional) > 0 {
		return config.Usage(fmt.Errorf("unexpected argument %q (see 'starter %s -h')", cmd.positional[0], name))
	}
	if err := cfg.Validate(); err != nil {
		return config.Usage(err)
	}
	if err := args.check(name); err != nil {
		return config.Usage(err)
	}
	if name == "schema print" {
		stmts, err := schema.Statements(cfg.BigQueryProject, cfg.BigQueryDataset)
		if err != nil {
			return err
		}
		for _, s := range stmts {
			fmt.Fprintf(out, "-- %s\n%s\n", s.Name, s.SQL)
		}
		return nil
	}
	err = runWithClients(ctx, *cfg, name, out, *args)
	if err != nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errMismatch) {
		return fmt.Errorf("%s: no answer within %s (is the devstack up and a worker running? go run ./devstack up): %w", name, args.timeout, err)
	}
	return err
}

// commandArgs are the command-specific flags.
type commandArgs struct {
	timeout      time.Duration
	jsonOut      bool
	watch        time.Duration
	partition    int
	partitions   partitionList
	from, to     int64
	manifestPath string
	queryFile    string
	querySQL     string
	list         bool
	dryRun       bool
	reason       string // replay-quarantine: the ingest_errors reason replayed
	setBatch     contract.SetBatchInput
	tuning       operator.Tuning
	// own names the command's own flags, as against the settings every
	// command shares (internal/config's and --timeout).
	own map[string]bool
	// given names the flags set on the command line or by variable.
	given map[string]bool
}

// commandFlags is the flag set of one command, bound to the config and
// the command's arguments; ok is false for an unknown command.
func commandFlags(name string) (fs *flag.FlagSet, cfg *config.Config, args *commandArgs, ok bool) {
	c := config.Default()
	cfg = &c
	fs = flag.NewFlagSet("starter "+name, flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	args = &commandArgs{tuning: operator.DefaultTuning(), own: map[string]bool{}}
	// The clients retry refused connections until their context ends; an
	// operator wants an answer, not a hang. A pause, drain or stop waits
	// for a batch to finish, so it gets longer.
	timeout, help := 2*time.Minute, "give up when the servers have not answered by then"
	switch name {
	case "pause", "drain", "set-batch", "resume":
		timeout = operator.ControlTimeout
	case "stop":
		timeout, help = operator.ControlTimeout, "give up waiting for the partitions to stop after this long (exit 1)"
	case "start":
		help = "give up when the servers have not answered, or a stopping run has not stopped, by then"
	case "backfill", "replay-quarantine":
		timeout = time.Hour
	}
	fs.DurationVar(&args.timeout, "timeout", timeout, help)
	own := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	tuning := &args.tuning
	switch name {
	case "schema apply":
	case "schema print", "stop":
	case "start":
		own.IntVar(&tuning.MaxRecords, "max-records", tuning.MaxRecords, "most records in one batch")
		own.Int64Var(&tuning.MaxBytes, "max-bytes", tuning.MaxBytes, "most bytes of keys and values in one batch (a larger single record is a batch of its own)")
		own.DurationVar(&tuning.PollFor, "poll-for", tuning.PollFor, "how long a caught-up partition waits for new records per poll")
		own.DurationVar(&tuning.Linger, "linger", tuning.Linger, "how long a batch's first record may wait before its batch is written: a batch short of --max-records waits to fill this long from that record's produce time, less what the partition's last batches took to write (fewer, larger batches from a live stream; latency stays near this)")
		own.BoolVar(&tuning.SearchableCounts, "searchable-counts", tuning.SearchableCounts, "make each batch's counts searchable in the web UI (BatchLoaded, BatchDuplicates, BatchRejected): one billed Temporal action a batch more")
		tuning.SuperviseEvery = contract.DefaultSuperviseEvery
		own.DurationVar(&tuning.SuperviseEvery, "supervise-every", tuning.SuperviseEvery, "how often the topic's supervisor looks for partitions added to it")
	case "pause", "resume", "drain":
		own.Var(&args.partitions, "partition", "partitions to act on, e.g. 0,2 (default: all)")
		own.BoolVar(&args.jsonOut, "json", false, "print JSON instead of text")
	case "set-batch":
		own.Var(&args.partitions, "partition", "partitions to act on, e.g. 0,2 (default: all, and those the supervisor adds later)")
		own.BoolVar(&args.jsonOut, "json", false, "print JSON instead of text")
		own.IntVar(&args.setBatch.MaxRecords, "records", 0, fmt.Sprintf("most records in one batch, 1..%d (required)", contract.MaxBatchRecords))
		own.Int64Var(&args.setBatch.MaxBytes, "bytes", 0, "most bytes of keys and values in one batch (default: unchanged)")
	case "status":
		own.BoolVar(&args.jsonOut, "json", false, "print JSON instead of text")
		own.DurationVar(&args.watch, "watch", 0, "refresh the table at this interval, e.g. 2s, until Ctrl-C")
	case "backfill":
		own.IntVar(&args.partition, "partition", -1, "partition to backfill (required)")
		own.Int64Var(&args.from, "from", -1, "first offset (required)")
		own.Int64Var(&args.to, "to", -1, "offset after the last (required)")
	case "reconcile":
		own.StringVar(&args.manifestPath, "manifest", "", "simulator manifest to compare totals with")
		own.BoolVar(&args.jsonOut, "json", false, "print JSON instead of text")
	case "query":
		own.BoolVar(&args.jsonOut, "json", false, "print JSON instead of text")
		own.BoolVar(&args.list, "list", false, "list the built-in monitoring queries and what each shows")
	case "replay-quarantine":
		own.Var(&args.partitions, "partition", "partitions whose quarantine to replay, e.g. 0,2 (default: all)")
		own.Int64Var(&args.from, "from", 0, "replay batches that end after this offset")
		own.Int64Var(&args.to, "to", math.MaxInt64, "replay batches that start before this offset (default: all)")
		own.BoolVar(&args.dryRun, "dry-run", false, "list the batches and their quarantined records; load nothing")
		own.StringVar(&args.reason, "reason", contract.ReasonLate, "the ingest_errors reason to replay: late, or a schema_ reason once the schema is fixed (docs/formats.md)")
	default:
		return nil, nil, nil, false
	}
	// The command's own flags are read from $PAYSTREAM_<COMMAND>_<FLAG>,
	// so a variable meant for one command (a backfill's partition) never
	// acts on another (a pause of every partition).
	own.VisitAll(func(f *flag.Flag) {
		fs.Var(f.Value, f.Name, f.Usage)
		args.own[f.Name] = true
	})
	return fs, cfg, args, true
}

// check finds what the flag package cannot: required and combined flags.
func (a commandArgs) check(name string) error {
	switch {
	case name == "backfill" && (a.partition < 0 || a.from < 0 || a.to < 0):
		return errors.New("backfill needs --partition, --from and --to")
	case name == "set-batch" && (a.setBatch.MaxRecords < 1 || a.setBatch.MaxRecords > contract.MaxBatchRecords):
		return fmt.Errorf("set-batch needs --records between 1 and %d", contract.MaxBatchRecords)
	case name == "start" && (a.tuning.Linger < 0 || a.tuning.Linger > 30*time.Second):
		return errors.New("--linger must be between 0s and 30s")
	case name == "start" && (a.tuning.SuperviseEvery < time.Second || a.tuning.SuperviseEvery > time.Hour):
		return errors.New("--supervise-every must be between 1s and 1h")
	case name == "set-batch" && a.setBatch.MaxBytes < 0:
		return errors.New("set-batch --bytes must not be negative")
	case a.watch < 0 || (a.watch > 0 && a.watch < 200*time.Millisecond):
		return errors.New("--watch needs an interval of at least 200ms")
	case name == "replay-quarantine" && !operator.Replayable(a.reason):
		return fmt.Errorf("--reason %q cannot be replayed: only late and schema_ records become loadable; the others stay in ingest_errors as the audit trail", a.reason)
	case a.watch > 0 && a.jsonOut:
		return errors.New("--watch refreshes a table; use --json without it")
	}
	return nil
}

// partitionList is a --partition flag of comma-separated partitions.
type partitionList []int

func (l *partitionList) String() string {
	if l == nil {
		return ""
	}
	return strings.Trim(strings.Join(strings.Fields(fmt.Sprint([]int(*l))), ","), "[]")
}

func (l *partitionList) Set(v string) error {
	*l = nil
	for _, f := range strings.Split(v, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 0 {
			return fmt.Errorf("%q is not a partition number", f)
		}
		*l = append(*l, p)
	}
	return nil
}

func runWithClients(ctx context.Context, cfg config.Config, name string, out io.Writer, args commandArgs) error {
	// Every answer is awaited at most args.timeout; --watch applies it to
	// each refresh and runs until interrupted.
	opCtx, cancel := context.WithTimeout(ctx, args.timeout)
	defer cancel()
	bq, err := warehouse.OpenIn(opCtx, cfg.BigQueryProject, cfg.BigQueryEndpoint, cfg.BigQueryLocation)
	if err != nil {
		return err
	}
	defer bq.Close()
	if name == "schema apply" {
		if err := schema.Apply(opCtx, bq, cfg.BigQueryDataset, schema.Options{Location: cfg.BigQueryLocation, Emulator: cfg.BigQueryEndpoint != ""}); err != nil {
			return fmt.Errorf("schema apply to %s.%s: %w", cfg.BigQueryProject, cfg.BigQueryDataset, err)
		}
		fmt.Fprintf(out, "schema applied to %s.%s: %d tables, %d views\n", cfg.BigQueryProject, cfg.BigQueryDataset, len(schema.Tables), len(schema.Views))
		return nil
	}
	if name == "query" {
		return runQuery(opCtx, bq, cfg, args, out)
	}
	tc, err := pipeline.DialTemporal(opCtx, cfg, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	op := &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: args.tuning, Progress: progressTo(out)}

	switch name {
	case "start":
		res, err := op.Start(opCtx)
		for _, r := range res {
			if r.Already {
				if kept := keptSettings(r, cfg, args); kept != "" {
					fmt.Fprintf(out, "%s: already running; %s\n", r.WorkflowID, kept)
				} else {
					fmt.Fprintf(out, "%s: already running\n", r.WorkflowID)
				}
			} else if r.Pending != "" {
				fmt.Fprintf(out, "%s: started at offset %d, first running failed batch %s again\n", r.WorkflowID, r.From, r.Pending)
			} else if r.AfterStop {
				fmt.Fprintf(out, "%s: started at offset %d, once its stopping run had stopped\n", r.WorkflowID, r.From)
			} else {
				fmt.Fprintf(out, "%s: started at offset %d\n", r.WorkflowID, r.From)
			}
		}
		if errors.Is(err, operator.ErrStillRunning) {
			return fmt.Errorf("after --timeout %s, %w; no partition was started: run start again once they have stopped (starter status)", args.timeout, err)
		}
		return err
	case "stop":
		return stop(opCtx, op, out, args.timeout)
	case "pause", "resume", "drain":
		res, err := op.Control(opCtx, name, args.partitions)
		if werr := writeControl(out, args.jsonOut, controlOutputOf(name, cfg.Topic, res, nil)); err == nil {
			err = werr
		}
		return err
	case "set-batch":
		res, err := op.SetBatch(opCtx, args.partitions, args.setBatch)
		if werr := writeControl(out, args.jsonOut, controlOutputOf(name, cfg.Topic, nil, &res)); err == nil {
			err = werr
		}
		return err
	case "status":
		if args.watch > 0 {
			return watchStatus(ctx, op, out, args)
		}
		st, err := op.Status(opCtx)
		if err != nil {
			return err
		}
		if args.jsonOut {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		if err := writeStatus(out, st); err != nil {
			return err
		}
		return writeSupervisor(opCtx, out, op)
	case "replay-quarantine":
		return replayQuarantine(opCtx, op, out, args)
	case "backfill":
		res, err := op.Backfill(opCtx, args.partition, args.from, args.to)
		for _, r := range res {
			fmt.Fprintf(out, "%s: %s\n", r.BatchID, r.Outcome)
		}
		return err
	case "reconcile":
		var m *simulation.Manifest
		if args.manifestPath != "" {
			mm, err := simulation.ReadManifest(args.manifestPath)
			if err != nil {
				return fmt.Errorf("read manifest: %w", err)
			}
			m = &mm
		}
		report, err := op.Reconcile(opCtx, m)
		if err != nil {
			return err
		}
		if args.jsonOut {
			err = writeJSON(out, reconcileOutputOf(report))
		} else {
			report.Write(out)
		}
		if err == nil && !report.OK() {
			return errMismatch
		}
		if err == nil && !args.jsonOut {
			fmt.Fprintln(out, "every check passed")
		}
		return err
	}
	return config.Usage(fmt.Errorf("unknown command %q", name))
}

// stop asks every partition to stop after its current batch and waits
// until each has, or until timeout has passed.
func stop(ctx context.Context, op *operator.Operator, out io.Writer, timeout time.Duration) error {
	ids, err := op.Stop(ctx)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		fmt.Fprintln(out, "nothing was running")
		return nil
	}
	stopped, err := op.WaitStopped(ctx, ids)
	if errors.Is(err, operator.ErrStillRunning) {
		return fmt.Errorf("after --timeout %s, %w; each stops once its current batch has loaded, a failed one included: run stop again to keep waiting", timeout, err)
	}
	if err != nil {
		return err
	}
	for _, s := range stopped {
		switch {
		case strings.HasPrefix(s.WorkflowID, "supervise/"):
			fmt.Fprintf(out, "%s: stopped; it starts no new partition\n", s.WorkflowID)
		case s.State == "stopped" && s.Offset >= 0:
			fmt.Fprintf(out, "%s: stopped at offset %d\n", s.WorkflowID, s.Offset)
		default:
			fmt.Fprintf(out, "%s: %s\n", s.WorkflowID, s.State)
		}
	}
	return nil
}

// replayQuarantine lists, and unless --dry-run replays, the quarantined
// records of --reason of the chosen batches.
func replayQuarantine(ctx context.Context, op *operator.Operator, out io.Writer, args commandArgs) error {
	batches, err := op.Quarantined(ctx, args.reason, args.partitions, args.from, args.to)
	if err != nil {
		return err
	}
	var records int64
	for _, b := range batches {
		records += b.Records
	}
	if len(batches) == 0 {
		fmt.Fprintln(out, "no batch in that range has quarantined records")
		return nil
	}
	if args.dryRun {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "BATCH\t%s RECORDS\n", strings.ToUpper(args.reason))
		for _, b := range batches {
			fmt.Fprintf(tw, "%s\t%d\n", b.Range.ID(), b.Records)
		}
		tw.Flush()
		fmt.Fprintf(out, "%d %s records in %d batches would be replayed (those already replayed are skipped); run without --dry-run to load them\n", records, args.reason, len(batches))
		return nil
	}
	res, err := op.ReplayQuarantine(ctx, args.reason, batches)
	var loaded, stayed, already int
	for _, r := range res {
		if r.Already {
			already++
			fmt.Fprintf(out, "%s: already replayed\n", r.ReplayID)
			continue
		}
		loaded, stayed = loaded+r.Totals.Loaded, stayed+r.Totals.Duplicates
		fmt.Fprintf(out, "%s: loaded %d of %d quarantined records; %d stay (their transaction_id is loaded already)\n",
			r.ReplayID, r.Totals.Loaded, r.Totals.Quarantined, r.Totals.Duplicates)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "replayed %d batches: %d records loaded, %d left in quarantine as duplicates, %d batches replayed before\n",
		len(res)-already, loaded, stayed, already)
	return nil
}

// progressTo is where long operations draw their progress bar: stderr, so
// a script reading stdout gets only the answer.
func progressTo(out io.Writer) io.Writer {
	if out == os.Stdout {
		return os.Stderr
	}
	return nil
}

// controlLine says what a control update did to one partition.
func controlLine(name string, r contract.ControlResult) string {
	switch name {
	case "pause":
		return fmt.Sprintf("partition %d: paused at offset %d; every offset below it is loaded and committed", r.Partition, r.Next)
	case "drain":
		return fmt.Sprintf("partition %d: drained at offset %d; its run has ended (starter start goes on from there)", r.Partition, r.Next)
	case "resume":
		return fmt.Sprintf("partition %d: %s from offset %d", r.Partition, r.State, r.Next)
	}
	return fmt.Sprintf("partition %d: %s from the next plan (now at offset %d)", r.Partition, batchSize(r.MaxRecords, r.MaxBytes), r.Next)
}

// writeStatus prints the status table with a totals line.
func writeStatus(out io.Writer, st []operator.PartitionStatus) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTATE\tCOMMITTED\tHIGH WATERMARK\tLAG\tBATCHES\tEVENTS/S\tBATCH SIZE\tLAST ERROR")
	var lag, batches int64
	var rate float64
	for _, p := range st {
		size := "-"
		if p.MaxRecords > 0 {
			size = progress.Count(int64(p.MaxRecords))
		}
		committed := "-"
		if p.Committed >= 0 {
			committed = progress.Count(p.Committed)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Partition, p.State, committed, progress.Count(p.HighWatermark),
			progress.Count(p.Lag), progress.Count(p.BatchesDone), progress.Count(int64(p.EventsPerSecond+0.5)), size, printable(firstLine(p.LastError)))
		lag, batches, rate = lag+p.Lag, batches+p.BatchesDone, rate+p.EventsPerSecond
	}
	fmt.Fprintf(tw, "all\t\t\t\t%s\t%s\t%s\t\t\n", progress.Count(lag), progress.Count(batches), progress.Count(int64(rate+0.5)))
	return tw.Flush()
}

// writeSupervisor prints the topic supervisor's line under the table.
func writeSupervisor(ctx context.Context, out io.Writer, op *operator.Operator) error {
	state, pr, err := op.Supervisor(ctx)
	if err != nil {
		return err
	}
	line := "supervisor: " + state
	if pr != nil {
		line += fmt.Sprintf(", keeps %d partitions, last looked for new ones %s ago", pr.Partitions, time.Since(pr.LastChecked).Round(time.Second))
	}
	if _, err := fmt.Fprintln(out, line); err != nil {
		return err
	}
	pool, err := op.Pool(ctx)
	if err != nil {
		return err
	}
	if _, err = fmt.Fprintln(out, poolLine(pool)); err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, typedColumnsLine(ctx, op))
	return err
}

// typedColumnsLine names the columns paystream added for schemas' new
// fields (schema_changes records each); BigQuery not answering does not
// fail the status, which is Temporal's.
func typedColumnsLine(ctx context.Context, op *operator.Operator) string {
	if op.Config.Sink == config.SinkDiscard {
		return "typed columns: none (discard sink)"
	}
	typed, err := op.TypedColumns(ctx)
	if err != nil {
		return "typed columns: unknown (" + oneLine(err) + ")"
	}
	var parts []string
	for _, table := range contract.TypedTables {
		var cols []string
		for _, c := range typed[table] {
			cols = append(cols, c.Name+" "+c.Type)
		}
		if len(cols) > 0 {
			parts = append(parts, table+": "+strings.Join(cols, ", "))
		}
	}
	if len(parts) == 0 {
		return "typed columns: none yet (new fields of a schema get one; docs/formats.md)"
	}
	return "typed columns (schema_changes has each): " + strings.Join(parts, "; ")
}

// poolLine says which worker holds which partitions: the placement the
// pool keeps, so an operator sees at once whether the work is spread.
func poolLine(pool *contract.PoolState) string {
	if pool == nil {
		return "workers: no pool (no worker has started)"
	}
	held := map[string][]string{}
	for id, q := range pool.Partitions {
		held[q] = append(held[q], id[strings.LastIndexByte(id, '/')+1:])
	}
	parts := []string{}
	for _, m := range pool.Members {
		slices.Sort(held[m])
		parts = append(parts, fmt.Sprintf("%s holds [%s]", m[strings.LastIndexByte(m, '/')+1:], strings.Join(held[m], " ")))
	}
	if len(held[""]) > 0 {
		slices.Sort(held[""])
		parts = append(parts, fmt.Sprintf("unplaced [%s]", strings.Join(held[""], " ")))
	}
	return fmt.Sprintf("workers: %d in the pool; %s", len(pool.Members), strings.Join(parts, "; "))
}

// watchStatus redraws the status table every interval until ctx ends (an
// interrupt ends it with success). On a terminal it redraws in place.
func watchStatus(ctx context.Context, op *operator.Operator, out io.Writer, args commandArgs) error {
	terminal := false
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			terminal = true
		}
	}
	for {
		refreshCtx, cancel := context.WithTimeout(ctx, args.timeout)
		st, err := op.Status(refreshCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if terminal {
			fmt.Fprint(out, "\033[H\033[2J") // home, clear
		}
		fmt.Fprintf(out, "%s  topic %s  every %s (Ctrl-C ends)\n", time.Now().Format("15:04:05"), op.Config.Topic, args.watch)
		if err != nil {
			fmt.Fprintln(out, "status:", oneLine(err))
		} else if err := writeStatus(out, st); err != nil {
			return err
		}
		if !terminal {
			fmt.Fprintln(out)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(args.watch):
		}
	}
}

// oneLine keeps an error to one readable line: client libraries wrap
// multi-line detail that belongs in logs, not in an operator's terminal.
func oneLine(err error) string { return firstLine(err.Error()) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
