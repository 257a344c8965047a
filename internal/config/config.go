// Package config is paystream's configuration in one place: every endpoint,
// name and tuning knob the binaries share, with defaults that point at the
// local devstack so `go run ./worker` needs no flags on a laptop.
//
// Each setting is a flag and an environment variable (PAYSTREAM_ plus the
// flag name in upper case with '-' as '_'); a flag given on the command line
// wins over the environment, which wins over the default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Defaults of the local stack. devstack listens on these and the other
// binaries connect to them unless told otherwise.
const (
	DefaultTemporalAddress  = "127.0.0.1:7233"
	DefaultTemporalUI       = "http://127.0.0.1:8233"
	DefaultNamespace        = "default"
	DefaultTaskQueue        = "paystream"
	DefaultKafkaBrokers     = "127.0.0.1:9092"
	DefaultTopic            = "payments"
	DefaultConsumerGroup    = "paystream"
	DefaultBigQueryProject  = "paystream-local"
	DefaultBigQueryDataset  = "payments"
	DefaultBigQueryEndpoint = "http://127.0.0.1:9050"
	DefaultAllowedLateness  = 10 * time.Minute
)

// Sinks Load can write to (Config.Sink).
const (
	SinkBigQuery = "bigquery"
	SinkDiscard  = "discard"
)

// Config holds what the worker, starter and simulator need to reach the
// three systems and name things in them.
type Config struct {
	TemporalAddress string
	Namespace       string
	TaskQueue       string

	KafkaBrokers  []string
	Topic         string
	ConsumerGroup string

	BigQueryProject string
	BigQueryDataset string
	// BigQueryEndpoint overrides the API endpoint (the emulator). Empty
	// means real BigQuery with Application Default Credentials.
	BigQueryEndpoint string

	// Sink is where Load writes: "bigquery", or "discard" to build and
	// serialize every row but upload only batch_ledger, which measures
	// the pipeline's own ceiling without the warehouse (bench).
	Sink string

	// AllowedLateness is how far behind the partition's newest event_time
	// a record may be and still be deduplicated and loaded (DESIGN §4).
	AllowedLateness time.Duration
}

// Default returns the configuration of the local devstack.
func Default() Config {
	return Config{
		TemporalAddress:  DefaultTemporalAddress,
		Namespace:        DefaultNamespace,
		TaskQueue:        DefaultTaskQueue,
		KafkaBrokers:     []string{DefaultKafkaBrokers},
		Topic:            DefaultTopic,
		ConsumerGroup:    DefaultConsumerGroup,
		BigQueryProject:  DefaultBigQueryProject,
		BigQueryDataset:  DefaultBigQueryDataset,
		BigQueryEndpoint: DefaultBigQueryEndpoint,
		AllowedLateness:  DefaultAllowedLateness,
		Sink:             SinkBigQuery,
	}
}

// RegisterFlags defines the shared flags on fs; parse them with Parse so
// the environment fills what the command line leaves out.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TemporalAddress, "temporal-address", c.TemporalAddress, "Temporal frontend host:port")
	fs.StringVar(&c.Namespace, "temporal-namespace", c.Namespace, "Temporal namespace")
	fs.StringVar(&c.TaskQueue, "task-queue", c.TaskQueue, "Temporal task queue of the paystream workers")
	fs.Func("kafka-brokers", fmt.Sprintf("comma-separated Kafka bootstrap brokers (default %q)", strings.Join(c.KafkaBrokers, ",")), func(v string) error {
		c.KafkaBrokers = SplitList(v)
		return nil
	})
	fs.StringVar(&c.Topic, "topic", c.Topic, "Kafka topic of payment events")
	fs.StringVar(&c.ConsumerGroup, "consumer-group", c.ConsumerGroup, "Kafka consumer group whose offsets paystream commits")
	fs.StringVar(&c.BigQueryProject, "bigquery-project", c.BigQueryProject, "BigQuery project")
	fs.StringVar(&c.BigQueryDataset, "bigquery-dataset", c.BigQueryDataset, "BigQuery dataset")
	fs.StringVar(&c.BigQueryEndpoint, "bigquery-endpoint", c.BigQueryEndpoint, "BigQuery API endpoint override (the emulator); empty for real BigQuery with Application Default Credentials")
	fs.StringVar(&c.Sink, "sink", c.Sink, "where batches go: bigquery, or discard (benchmarks: rows are built and thrown away; only batch_ledger is written)")
	fs.DurationVar(&c.AllowedLateness, "allowed-lateness", c.AllowedLateness, "how far behind the partition's newest event_time a record is still on time")
}

// Parse parses args into fs, then sets every flag the command line left out
// from its environment variable (see EnvName), so containers can be
// configured by env alone. Usage texts gain the variable's name.
func Parse(fs *flag.FlagSet, args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += fmt.Sprintf(" [$%s]", EnvName(f.Name))
	})
	// Flag mistakes are one line naming the way to help; -h prints the
	// flags to stdout.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fmt.Fprintf(os.Stdout, "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%w (see '%s -h')", err, fs.Name())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var firstErr error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(EnvName(f.Name))
		if !ok || given[f.Name] || firstErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			firstErr = fmt.Errorf("$%s: %w", EnvName(f.Name), err)
		}
	})
	return firstErr
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.TemporalAddress == "":
		return fmt.Errorf("temporal-address is empty")
	case len(c.KafkaBrokers) == 0:
		return fmt.Errorf("kafka-brokers is empty")
	case c.Topic == "":
		return fmt.Errorf("topic is empty")
	case c.BigQueryProject == "" || c.BigQueryDataset == "":
		return fmt.Errorf("bigquery-project and bigquery-dataset must be set")
	case c.Sink != SinkBigQuery && c.Sink != SinkDiscard:
		return fmt.Errorf("sink must be %s or %s, got %q", SinkBigQuery, SinkDiscard, c.Sink)
	case c.AllowedLateness <= 0:
		return fmt.Errorf("allowed-lateness must be positive, got %v", c.AllowedLateness)
	}
	return nil
}

// EnvName is the environment variable that sets a flag.
func EnvName(flagName string) string {
	return "PAYSTREAM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
