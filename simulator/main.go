// Command simulator produces realistic payment events to Kafka — with
// duplicates, malformed and late records mixed in — and prints the manifest
// of what it sent: the answer reconciliation must arrive at.
//
//	simulator --events 100000 --seed 7 --manifest manifest.json
//	simulator --rate 5000 --duration 10m
//	simulator --format avro --schema-versions 1,2 --schema-registry http://127.0.0.1:8081
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/simulation"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "simulator:", err)
		}
		os.Exit(config.ExitCode(err))
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg := config.Default()
	gen := simulation.DefaultOptions()
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "Kafka topic to produce to")
	cfg.RegisterKafkaFlags(fs)
	cfg.RegisterRegistryFlags(fs)
	format := fs.String("format", "json", "record format: json, avro or protobuf (the Schema Registry wire format; needs --schema-registry)")
	schemaVersions := fs.String("schema-versions", "1", "with --format avro or protobuf, the payment schema versions to write, record by record in turn: 1, 2 (adds the optional fields loyalty_tier and tip), 3 (changes tip's type: see docs/formats.md), or a list such as 1,2")
	events := fs.Int("events", 100000, "records to send (ignored when --rate and --duration are given)")
	rate := fs.Float64("rate", 0, "records per second; with --duration, paced in real time")
	duration := fs.Duration("duration", 0, "how long to produce at --rate")
	fs.Uint64Var(&gen.Seed, "seed", gen.Seed, "random seed: the same seed and flags produce the same bytes")
	startTime := fs.String("start-time", gen.StartTime.Format(time.RFC3339), "event_time of the first event (RFC 3339), or \"now\"")
	fs.Float64Var(&gen.DuplicateRatio, "duplicate-ratio", gen.DuplicateRatio, "share of records that repeat an earlier transaction (producer retries and client replays)")
	fs.Float64Var(&gen.MalformedRatio, "malformed-ratio", gen.MalformedRatio, "share of records that are malformed or invalid")
	fs.Float64Var(&gen.LateRatio, "late-ratio", gen.LateRatio, "share of records with an event_time behind the watermark")
	fs.DurationVar(&gen.AllowedLateness, "allowed-lateness", gen.AllowedLateness, "the pipeline's allowed lateness; late records are made older than it")
	manifestPath := fs.String("manifest", "", "also write the manifest as JSON to this file")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return config.Usage(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if err := cfg.Validate(); err != nil { // loads Kafka's TLS and SASL
		return config.Usage(err)
	}
	if *startTime == "now" {
		gen.StartTime = time.Now().UTC().Truncate(time.Millisecond)
	} else {
		t, err := time.Parse(time.RFC3339, *startTime)
		if err != nil {
			return config.Usage(fmt.Errorf("--start-time %q is not RFC 3339 or \"now\"", *startTime))
		}
		gen.StartTime = t.UTC()
	}
	if *events < 0 {
		return config.Usage(fmt.Errorf("--events must not be negative, got %d", *events))
	}
	popts := simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: *events, Progress: out}
	switch *format {
	case "json":
	case "avro", "protobuf":
		versions, err := parseVersions(*schemaVersions)
		if err != nil {
			return config.Usage(err)
		}
		reg, err := cfg.Registry()
		if err != nil {
			return config.Usage(err)
		}
		if reg == nil {
			return config.Usage(fmt.Errorf("--format %s needs --schema-registry (the devstack's is %s)", *format, config.DevstackSchemaRegistry))
		}
		if popts.Encoder, err = simulation.NewEncoder(ctx, *format, reg, cfg.Topic, versions); err != nil {
			return err
		}
	default:
		return config.Usage(fmt.Errorf("--format must be json, avro or protobuf, got %q", *format))
	}
	switch {
	case *rate > 0 && *duration > 0:
		popts.Rate = *rate
		popts.Events = int(*rate * duration.Seconds())
	case *rate > 0 || *duration > 0:
		return config.Usage(errors.New("--rate and --duration go together"))
	}
	if popts.Rate > 0 {
		gen.EventRate = popts.Rate
	}
	if err := gen.Validate(); err != nil {
		return config.Usage(err) // before connecting: a mistake is reported at once
	}
	if *quiet {
		popts.Progress = nil
	}
	m, err := simulation.Produce(ctx, gen, popts)
	if err != nil {
		return err
	}
	m.WriteReport(out)
	if *manifestPath != "" {
		if err := m.WriteFile(*manifestPath); err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
		fmt.Fprintf(out, "manifest written to %s\n", *manifestPath)
	}
	return nil
}

// parseVersions reads --schema-versions: a comma-separated list of the
// versions simulation.AvroVersions names.
func parseVersions(v string) ([]int, error) {
	var out []int
	for _, s := range config.SplitList(v) {
		n, err := strconv.Atoi(s)
		if err != nil || !slices.Contains(simulation.AvroVersions(), n) {
			return nil, fmt.Errorf("--schema-versions takes versions among %v, got %q", simulation.AvroVersions(), s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("--schema-versions names no version")
	}
	return out, nil
}
