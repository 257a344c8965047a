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
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
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
		os.Exit(config.ExitCode(err))
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return config.Usage(errors.New("no command given"))
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Println("devstack", config.Version())
		return nil
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
		return config.Usage(fmt.Errorf("unknown command %q", args[0]))
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
	fs.IntVar(&cfg.RegistryPort, "schema-registry-port", cfg.RegistryPort, "Schema Registry port")
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

// demo runs the whole pipeline on a fresh stack: produce simulated
// payments, ingest them with an in-process worker until caught up, then
// reconcile BigQuery against the simulator's manifest. It exits 0 only when
// every figure matches.
func demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("devstack demo", flag.ContinueOnError)
	cfg := stackFlags(fs)
	cfg.StateDir = ""
	// Same setting as up's, another default.
	fs.Lookup("state-dir").DefValue = "a fresh temporary directory, removed at exit unless --keep"
	gen := simulation.DefaultOptions()
	tuning := operator.DefaultTuning()
	events := fs.Int("events", 100000, "payment records to produce")
	fs.Uint64Var(&gen.Seed, "seed", gen.Seed, "simulator seed")
	fs.IntVar(&tuning.MaxRecords, "max-records", tuning.MaxRecords, "most records in one batch")
	keep := fs.Bool("keep", false, "keep the stack running after the demo, until Ctrl-C")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up when not caught up by then")
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
	clientCfg := s.ClientConfig()

	fmt.Printf("\n1. Producing %d simulated payments (seed %d) ...\n", *events, gen.Seed)
	m, err := simulation.Produce(ctx, gen, simulation.ProduceOptions{
		Kafka: clientCfg.Kafka(), Topic: cfg.Topic, Events: *events, Progress: os.Stdout,
	})
	if err != nil {
		return err
	}
	m.WriteReport(os.Stdout)

	fmt.Println("\n2. Starting a worker and one PartitionIngest workflow per partition ...")
	tc, err := pipeline.DialTemporal(ctx, clientCfg, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	w, err := pipeline.NewWorker(ctx, clientCfg, tc, pipeline.WorkerOptions{}, nil)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	bq, err := warehouse.Open(ctx, clientCfg.BigQueryProject, clientCfg.BigQueryEndpoint)
	if err != nil {
		return err
	}
	defer bq.Close()
	op := &operator.Operator{Config: clientCfg, Temporal: tc, BigQuery: bq, Tuning: tuning}
	if _, err := op.Start(ctx); err != nil {
		return err
	}
	fmt.Printf("   watch it in the Temporal web UI: %s/namespaces/default/workflows\n", s.TemporalUIURL())

	fmt.Println("\n3. Waiting until every partition is caught up ...")
	waitCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := op.WaitCaughtUp(waitCtx, os.Stdout); err != nil {
		return err
	}

	fmt.Println("\n4. Reconciling BigQuery against the simulator's manifest ...")
	report, err := op.Reconcile(ctx, &m)
	if err != nil {
		return err
	}
	report.Write(os.Stdout)
	fmt.Printf("\nTemporal web UI: %s/namespaces/default/workflows\n", s.TemporalUIURL())
	if !report.OK() {
		return fmt.Errorf("%d reconciliation checks failed", report.Failed())
	}
	fmt.Println("Every figure matches: nothing lost, nothing doubled.")
	if *keep {
		fmt.Printf("State kept in %s. The stack and worker stay up; Ctrl-C stops them.\n", s.StateDir())
		select {
		case <-ctx.Done():
		case err := <-s.Exited():
			return err
		}
	}
	return nil
}
