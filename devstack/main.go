// Command devstack runs paystream on one machine with real servers: the
// Temporal dev server and web UI, a Kafka-protocol broker and the BigQuery
// emulator.
//
//	devstack up          start the stack and keep it running until Ctrl-C
//	devstack demo        start the stack, produce simulated payments, check them, stop
//	devstack build-tools build the pinned tool servers into bin/
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/simulation"
)

const usage = `usage: devstack <command> [flags]

commands:
  up           start Temporal (+ web UI), Kafka and the BigQuery emulator; Ctrl-C stops them
  demo         start the stack, produce simulated payments, verify them, stop
  build-tools  build the pinned Temporal CLI and BigQuery emulator into bin/

Run 'devstack <command> -h' for the command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "devstack:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "up":
		return up(ctx, args[1:])
	case "demo":
		return demo(ctx, args[1:])
	case "build-tools":
		root, err := devstack.FindRoot(".")
		if err != nil {
			return err
		}
		_, err = devstack.EnsureTools(ctx, root, os.Stdout)
		return err
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// stackFlags defines the stack's flags on fs.
func stackFlags(fs *flag.FlagSet) *devstack.Config {
	cfg := devstack.DefaultConfig()
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory for Temporal, Kafka and BigQuery state; reuse it to keep data across restarts")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the payments topic when it is created")
	fs.StringVar(&cfg.Host, "host", cfg.Host, "address every server listens on (keep it loopback)")
	fs.IntVar(&cfg.TemporalPort, "temporal-port", cfg.TemporalPort, "Temporal frontend gRPC port")
	fs.IntVar(&cfg.TemporalUIPort, "temporal-ui-port", cfg.TemporalUIPort, "Temporal web UI port")
	fs.IntVar(&cfg.KafkaPort, "kafka-port", cfg.KafkaPort, "Kafka broker port")
	fs.IntVar(&cfg.BigQueryPort, "bigquery-port", cfg.BigQueryPort, "BigQuery emulator HTTP (REST API) port")
	fs.IntVar(&cfg.BigQueryGRPCPort, "bigquery-grpc-port", cfg.BigQueryGRPCPort, "BigQuery emulator gRPC (Storage API) port")
	fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "Kafka topic of payment events")
	fs.StringVar(&cfg.Project, "bigquery-project", cfg.Project, "BigQuery project the emulator serves")
	fs.StringVar(&cfg.Dataset, "bigquery-dataset", cfg.Dataset, "BigQuery dataset paystream writes")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", cfg.ReadyTimeout, "how long to wait for the servers to answer")
	cfg.Log = os.Stdout
	return &cfg
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("devstack up", flag.ContinueOnError)
	cfg := stackFlags(fs)
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	s, err := devstack.Start(ctx, *cfg)
	if err != nil {
		return err
	}
	defer s.Stop()
	printEndpoints(s)
	fmt.Println("\nThe stack is up. Ctrl-C stops it; the state dir keeps its data for next time.")
	select {
	case <-ctx.Done():
		fmt.Println("\ndevstack: stopping")
		return nil
	case err := <-s.Exited():
		return err
	}
}

func printEndpoints(s *devstack.Stack) {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	for _, e := range s.Endpoints() {
		fmt.Fprintf(w, "  %s\t%s\n", e.Name, e.Address)
	}
	w.Flush()
}

// demo runs the stack on a fresh state dir, produces simulated payments,
// reads them back from Kafka and checks them against the simulator's
// manifest, then stops (or stays up with --keep).
func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("devstack demo", flag.ContinueOnError)
	cfg := stackFlags(fs)
	cfg.StateDir = ""
	fs.Lookup("state-dir").DefValue = ""
	fs.Lookup("state-dir").Usage = "state directory (default: a fresh temporary one, removed at exit unless --keep)"
	gen := simulation.DefaultOptions()
	events := fs.Int("events", 100000, "payment records to produce")
	fs.Uint64Var(&gen.Seed, "seed", gen.Seed, "simulator seed")
	keep := fs.Bool("keep", false, "keep the stack running after the demo, until Ctrl-C")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "paystream-demo-")
		if err != nil {
			return err
		}
		cfg.StateDir = dir
		if !*keep {
			defer os.RemoveAll(dir)
		}
	}
	s, err := devstack.Start(ctx, *cfg)
	if err != nil {
		return err
	}
	defer s.Stop()
	printEndpoints(s)

	fmt.Printf("\nProducing %d simulated payments (seed %d) ...\n", *events, gen.Seed)
	m, err := simulation.Produce(ctx, gen, simulation.ProduceOptions{
		Brokers: s.KafkaBrokers(), Topic: cfg.Topic, Events: *events, Progress: os.Stdout,
	})
	if err != nil {
		return err
	}
	fmt.Println("\nWhat the simulator sent (its manifest):")
	m.WriteReport(os.Stdout)

	fmt.Println("\nReading every record back from Kafka and classifying it (DESIGN §4) ...")
	tally, err := simulation.ReadBack(ctx, s.KafkaBrokers(), m, gen.AllowedLateness)
	if err != nil {
		return err
	}
	problems := tally.Mismatches(m)
	fmt.Printf("  loaded %d, duplicates %d, late %d, rejected %d: ", tally.Loaded, tally.Duplicates, tally.Late,
		tally.ByReason["malformed_json"]+tally.ByReason["missing_field"]+tally.ByReason["invalid_field"])
	if len(problems) > 0 {
		fmt.Println("MISMATCH")
		for _, p := range problems {
			fmt.Println("   ", p)
		}
		return fmt.Errorf("%d figures differ between Kafka and the manifest", len(problems))
	}
	fmt.Println("every figure matches the manifest")
	fmt.Printf("\nTemporal web UI: %s\n", s.TemporalUIURL())
	if *keep {
		fmt.Printf("State kept in %s. The stack stays up; Ctrl-C stops it.\n", s.StateDir())
		select {
		case <-ctx.Done():
		case err := <-s.Exited():
			return err
		}
	}
	return nil
}
