// Command starter is paystream's operator CLI.
//
//	starter schema apply   create the BigQuery dataset, tables and views (idempotent)
//	starter schema print   print the DDL as it would be applied
//
// Every setting is a flag and an environment variable (PAYSTREAM_...); the
// defaults reach the local devstack. Errors are one line on stderr; the exit
// code is 0 on success, 1 when the command failed, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

const usage = `usage: starter <command> [flags]

commands:
  schema apply   create the BigQuery dataset, tables and views (idempotent)
  schema print   print the DDL as it would be applied

Run 'starter <command> -h' for the command's flags.
`

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "starter:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "starter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) < 2 || args[0] != "schema" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(out, usage)
			return nil
		}
		fmt.Fprint(os.Stderr, usage)
		return usageError{errors.New("expected a command")}
	}
	cfg := config.Default()
	fs := flag.NewFlagSet("starter "+args[0]+" "+args[1], flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	timeout := fs.Duration("timeout", time.Minute, "give up when BigQuery has not finished by then")
	location := fs.String("bigquery-location", "", "location of a new dataset, e.g. EU or US (default: BigQuery's)")
	if err := config.Parse(fs, args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	switch args[1] {
	case "apply":
		// The BigQuery client retries a refused connection until its
		// context ends; an operator wants an answer, not a hang.
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
		if err != nil {
			return err
		}
		defer bq.Close()
		if err := schema.Apply(ctx, bq, cfg.BigQueryDataset, schema.Options{Location: *location, Emulator: cfg.BigQueryEndpoint != ""}); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("schema apply: no answer from %s within %s (is the devstack up? go run ./devstack up)", endpointName(cfg), *timeout)
			}
			return fmt.Errorf("schema apply to %s.%s at %s: %w", cfg.BigQueryProject, cfg.BigQueryDataset, endpointName(cfg), oneLine(err))
		}
		fmt.Fprintf(out, "schema applied to %s.%s: %d tables, %d views\n", cfg.BigQueryProject, cfg.BigQueryDataset, len(schema.Tables), len(schema.Views))
		return nil
	case "print":
		stmts, err := schema.Statements(cfg.BigQueryProject, cfg.BigQueryDataset)
		if err != nil {
			return err
		}
		for _, s := range stmts {
			fmt.Fprintf(out, "-- %s\n%s\n", s.Name, s.SQL)
		}
		return nil
	default:
		return usageError{fmt.Errorf("unknown command %q", "schema "+args[1])}
	}
}

func endpointName(cfg config.Config) string {
	if cfg.BigQueryEndpoint == "" {
		return "BigQuery"
	}
	return cfg.BigQueryEndpoint
}

// oneLine keeps an error to one readable line: client libraries wrap
// multi-line detail that belongs in logs, not in an operator's terminal.
func oneLine(err error) error {
	msg := err.Error()
	for i, c := range msg {
		if c == '\n' {
			return errors.New(msg[:i])
		}
	}
	return err
}
