// Command starter is paystream's operator CLI.
//
//	starter schema apply       create the BigQuery dataset, tables and views (idempotent)
//	starter schema print       print the DDL as it would be applied
//	starter start              start one PartitionIngest per partition (idempotent)
//	starter stop               stop every partition after its current batch
//	starter status [--json]    per partition: state, committed offset, high watermark, lag, batches, last error
//	starter backfill --partition P --from A --to B
//	                           re-drive the batches of [A, B); loaded ones stay loaded once
//	starter reconcile [--manifest FILE]
//	                           check the recon views, ledger ranges and offsets (and the manifest); exit 1 on a mismatch
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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

const usage = `usage: starter <command> [flags]

commands:
  schema apply   create the BigQuery dataset, tables and views (idempotent)
  schema print   print the DDL as it would be applied
  start          start ingesting every partition (idempotent)
  stop           stop every partition after its current batch
  status         per partition: state, offsets, lag, batches, last error (--json for scripts)
  backfill       re-drive the batches of --partition P from --from A to --to B; loaded ones stay loaded once
  reconcile      check recon views, ledger ranges and offsets (and --manifest); exit 1 on a mismatch

Run 'starter <command> -h' for the command's flags. Exit codes: 0 ok, 1 failed or mismatch, 2 usage.
`

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ error }

// errMismatch is reconcile's finding, already printed.
var errMismatch = errors.New("reconciliation found mismatches")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "starter:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "starter:", oneLine(err))
		os.Exit(1)
	}
}

func run(ctx context.Context, argv []string, out io.Writer) error {
	if len(argv) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return usageError{errors.New("no command given")}
	}
	name, rest := argv[0], argv[1:]
	if name == "schema" {
		if len(rest) == 0 || (rest[0] != "apply" && rest[0] != "print") {
			return usageError{errors.New("schema needs a subcommand: apply or print")}
		}
		name, rest = "schema "+rest[0], rest[1:]
	}
	cfg := config.Default()
	fs := flag.NewFlagSet("starter "+name, flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	timeout := fs.Duration("timeout", 2*time.Minute, "give up when the servers have not answered by then")
	args := commandArgs{tuning: pipeline.DefaultTuning()}
	tuning := &args.tuning
	switch name {
	case "schema apply":
		fs.StringVar(&args.location, "bigquery-location", "", "location of a new dataset, e.g. EU or US (default: BigQuery's)")
	case "schema print", "stop":
	case "start":
		fs.IntVar(&tuning.MaxRecords, "max-records", tuning.MaxRecords, "most records in one batch")
		fs.Int64Var(&tuning.MaxBytes, "max-bytes", tuning.MaxBytes, "most bytes of keys and values in one batch (a larger single record is a batch of its own)")
		fs.DurationVar(&tuning.PollFor, "poll-for", tuning.PollFor, "how long a caught-up partition waits for new records per poll")
	case "status":
		fs.BoolVar(&args.jsonOut, "json", false, "print JSON instead of a table")
	case "backfill":
		fs.IntVar(&args.partition, "partition", -1, "partition to backfill (required)")
		fs.Int64Var(&args.from, "from", -1, "first offset (required)")
		fs.Int64Var(&args.to, "to", -1, "offset after the last (required)")
	case "reconcile":
		fs.StringVar(&args.manifestPath, "manifest", "", "simulator manifest to compare totals with")
	case "-h", "--help", "help":
		fmt.Fprint(out, usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", name)}
	}
	if err := config.Parse(fs, rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if name == "backfill" && (args.partition < 0 || args.from < 0 || args.to < 0) {
		return usageError{errors.New("backfill needs --partition, --from and --to")}
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

	// The clients retry refused connections until their context ends; an
	// operator wants an answer, not a hang.
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	err := runWithClients(ctx, cfg, name, out, args)
	if err != nil && ctx.Err() != nil && !errors.Is(err, errMismatch) {
		return fmt.Errorf("%s: no answer within %s (is the devstack up? go run ./devstack up): %w", name, *timeout, err)
	}
	return err
}

type commandArgs struct {
	location     string
	jsonOut      bool
	partition    int
	from, to     int64
	manifestPath string
	tuning       pipeline.Tuning
}

func runWithClients(ctx context.Context, cfg config.Config, name string, out io.Writer, args commandArgs) error {
	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		return err
	}
	defer bq.Close()
	if name == "schema apply" {
		if err := schema.Apply(ctx, bq, cfg.BigQueryDataset, schema.Options{Location: args.location, Emulator: cfg.BigQueryEndpoint != ""}); err != nil {
			return fmt.Errorf("schema apply to %s.%s: %w", cfg.BigQueryProject, cfg.BigQueryDataset, err)
		}
		fmt.Fprintf(out, "schema applied to %s.%s: %d tables, %d views\n", cfg.BigQueryProject, cfg.BigQueryDataset, len(schema.Tables), len(schema.Views))
		return nil
	}
	tc, err := pipeline.DialTemporal(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	op := &pipeline.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: args.tuning}

	switch name {
	case "start":
		res, err := op.Start(ctx)
		for _, r := range res {
			if r.Already {
				fmt.Fprintf(out, "%s: already running\n", r.WorkflowID)
			} else {
				fmt.Fprintf(out, "%s: started at offset %d\n", r.WorkflowID, r.From)
			}
		}
		return err
	case "stop":
		ids, err := op.Stop(ctx)
		for _, id := range ids {
			fmt.Fprintf(out, "%s: stopping after its current batch\n", id)
		}
		if err == nil && len(ids) == 0 {
			fmt.Fprintln(out, "nothing was running")
		}
		return err
	case "status":
		st, err := op.Status(ctx)
		if err != nil {
			return err
		}
		if args.jsonOut {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tSTATE\tCOMMITTED\tHIGH WATERMARK\tLAG\tBATCHES\tLAST ERROR")
		for _, p := range st {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%s\n", p.Partition, p.State, p.Committed, p.HighWatermark, p.Lag, p.BatchesDone, p.LastError)
		}
		return tw.Flush()
	case "backfill":
		res, err := op.Backfill(ctx, args.partition, args.from, args.to)
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
		report, err := op.Reconcile(ctx, m)
		if err != nil {
			return err
		}
		report.Write(out)
		if !report.OK() {
			return errMismatch
		}
		fmt.Fprintln(out, "every check passed")
		return nil
	}
	return usageError{fmt.Errorf("unknown command %q", name)}
}

// oneLine keeps an error to one readable line: client libraries wrap
// multi-line detail that belongs in logs, not in an operator's terminal.
func oneLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}
