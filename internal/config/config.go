// Package config is paystream's configuration in one place: every endpoint,
// name and tuning knob the binaries share, with defaults that point at the
// local devstack so `go run ./worker` needs no flags on a laptop.
//
// Each setting is a flag and an environment variable (PAYSTREAM_ plus the
// flag name in upper case with '-' as '_'); a flag given on the command line
// wins over the environment, which wins over the default.
package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/dedup"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/registry"
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
	DefaultStorageEndpoint  = "127.0.0.1:9060"
	// DevstackSchemaRegistry is the devstack's Schema Registry. It is
	// not a default: a partition reads the wire format only when `starter
	// start` is given a registry (contract.Schemas).
	DevstackSchemaRegistry = "http://127.0.0.1:8081"
	DefaultAllowedLateness = 10 * time.Minute
	DefaultMaxWindowIDs    = dedup.DefaultMaxIDs
	// DefaultLoadJobBudget leaves a fifth of BigQuery's 1,500 load jobs a
	// table a day for retries and backfills.
	DefaultLoadJobBudget = 1200
)

// Write modes (Config.WriteMode): how Load writes to BigQuery. They
// live in contract, which the deterministic workflows may import.
const (
	WriteModeLoad         = contract.WriteModeLoad
	WriteModeStorageWrite = contract.WriteModeStorageWrite
)

// Sinks Load can write to (Config.Sink).
const (
	SinkBigQuery = "bigquery"
	SinkDiscard  = "discard"
)

// Compressions of the requests to Temporal (TemporalCompression).
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
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
	// BigQueryLocation is the dataset's location (EU, US, europe-west3,
	// ...). Job look-ups must carry it: on a regional dataset BigQuery
	// answers a look-up without it with 404. Empty lets BigQuery choose.
	BigQueryLocation string
	// BigQueryEndpoint overrides the API endpoint (the emulator). Empty
	// means real BigQuery with Application Default Credentials.
	BigQueryEndpoint string
	// BigQueryStorageEndpoint is the emulator's Storage API (gRPC,
	// host:port), used with BigQueryEndpoint; real BigQuery needs none.
	BigQueryStorageEndpoint string
	// WriteMode is how batches are written: load or storagewrite. The
	// starter gives it to each partition's workflow, which keeps it.
	WriteMode string
	// LoadJobBudget is how many load jobs a table may take a day in load
	// mode against BigQuery: the starter spaces each partition's batches
	// so that all of them together stay within it (0: no spacing).
	// BigQuery allows 1,500; the rest is kept for retries, failed jobs
	// (which count) and backfills. The emulator has no quota, so the
	// budget applies only when BigQueryEndpoint is empty.
	LoadJobBudget int

	// Sink is where Load writes: "bigquery", or "discard" to build and
	// serialize every row but upload only batch_ledger, which measures
	// the pipeline's own ceiling without the warehouse (bench).
	Sink string

	// AllowedLateness is how far behind the partition's newest event_time
	// a record may be and still be deduplicated and loaded (docs/design.md §4).
	AllowedLateness time.Duration
	// MaxWindowIDs bounds the IDs a partition's dedup window holds: past
	// it, the window's watermark is raised until it holds 90 % of it, and
	// records behind that are late (dedup.Window.Bound). It keeps a
	// worker's memory bounded when producers' event_time stops advancing.
	MaxWindowIDs int

	// Kafka security. Secrets come from files or the environment, never
	// from flags (a command line is visible to every user of the host).
	KafkaTLS           bool   // TLS to the brokers (system roots unless KafkaTLSCA)
	KafkaTLSCA         string // PEM file of the CA that signed the brokers
	KafkaTLSCert       string // client certificate (mutual TLS), PEM file
	KafkaTLSKey        string // its key, PEM file
	KafkaSASLMechanism string // "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	KafkaSASLUsername  string
	// KafkaSASLPasswordFile holds the SASL password; without it the
	// password is $PAYSTREAM_KAFKA_SASL_PASSWORD.
	KafkaSASLPasswordFile string

	// Temporal security: mutual TLS (self-hosted or Temporal Cloud) or an
	// API key (Temporal Cloud), which implies TLS.
	TemporalTLSCert       string
	TemporalTLSKey        string
	TemporalTLSCA         string
	TemporalTLSServerName string
	// TemporalAPIKeyFile holds the API key; without it the key is
	// $PAYSTREAM_TEMPORAL_API_KEY.
	TemporalAPIKeyFile string
	// TemporalCompression is how requests to Temporal are compressed:
	// none, or gzip (the SDK's default). gzip cost the dev server a
	// seventh of its CPU and the worker a twenty-fifth (bench profile),
	// compressing each batch's decisions both ways; it pays only where
	// bytes cost more than CPU, as to Temporal Cloud over the internet.
	TemporalCompression string

	// SchemaRegistry is the URL of the Confluent-compatible Schema
	// Registry that records in its wire format are read with (empty:
	// none). Basic auth is SchemaRegistryUser (Confluent Cloud: the API
	// key) with a password from SchemaRegistryPasswordFile or
	// $PAYSTREAM_SCHEMA_REGISTRY_PASSWORD; SchemaRegistryCA is the PEM
	// file of an https registry's CA.
	SchemaRegistry             string
	SchemaRegistryUser         string
	SchemaRegistryPasswordFile string
	SchemaRegistryCA           string

	// Resolved by Validate from the settings above.
	registryTLS      *tls.Config
	registryPassword string
	kafkaTLS         *tls.Config
	kafkaSASL        *kafkalog.SASL
	temporalTLS      *tls.Config
	temporalAPIKey   string
}

// Default returns the configuration of the local devstack.
func Default() Config {
	return Config{
		TemporalAddress:         DefaultTemporalAddress,
		Namespace:               DefaultNamespace,
		TaskQueue:               DefaultTaskQueue,
		KafkaBrokers:            []string{DefaultKafkaBrokers},
		Topic:                   DefaultTopic,
		ConsumerGroup:           DefaultConsumerGroup,
		BigQueryProject:         DefaultBigQueryProject,
		BigQueryDataset:         DefaultBigQueryDataset,
		BigQueryEndpoint:        DefaultBigQueryEndpoint,
		BigQueryStorageEndpoint: DefaultStorageEndpoint,
		WriteMode:               WriteModeLoad,
		LoadJobBudget:           DefaultLoadJobBudget,
		AllowedLateness:         DefaultAllowedLateness,
		MaxWindowIDs:            DefaultMaxWindowIDs,
		Sink:                    SinkBigQuery,
		TemporalCompression:     CompressionNone,
	}
}

// RegisterFlags defines the shared flags on fs, the partition settings
// included (the starter's); parse them with Parse so the environment
// fills what the command line leaves out.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.RegisterClientFlags(fs)
	c.RegisterPartitionFlags(fs)
}

// RegisterPartitionFlags defines the settings `starter start` gives each
// partition's workflow, which keeps them while it runs: a worker reads
// them from there, never from its own flags.
func (c *Config) RegisterPartitionFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.WriteMode, "write-mode", c.WriteMode, "how batches are written: load (a load job per table; minutes between batches) or storagewrite (COMMITTED write streams; real time)")
	fs.DurationVar(&c.AllowedLateness, "allowed-lateness", c.AllowedLateness, "how far behind the partition's newest event_time a record is still on time")
	fs.IntVar(&c.MaxWindowIDs, "max-window-ids", c.MaxWindowIDs, "most transaction IDs a partition's dedup window holds; past it the window shrinks and older records are quarantined as late")
	fs.IntVar(&c.LoadJobBudget, "load-job-budget", c.LoadJobBudget, "load jobs a table may take a day in load mode against BigQuery (not the emulator): each partition's batches are spaced to stay within it, and grow to take what accumulates (0: no spacing; BigQuery allows 1,500)")
}

// RegisterClientFlags defines the flags that reach Temporal, Kafka and
// BigQuery and name things in them: the shared settings without the
// partition settings, all a worker reads.
func (c *Config) RegisterClientFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TemporalAddress, "temporal-address", c.TemporalAddress, "Temporal frontend host:port")
	fs.StringVar(&c.Namespace, "temporal-namespace", c.Namespace, "Temporal namespace")
	fs.StringVar(&c.TaskQueue, "task-queue", c.TaskQueue, "Temporal task queue of the paystream workers")
	c.RegisterKafkaFlags(fs)
	c.RegisterRegistryFlags(fs)
	fs.StringVar(&c.Topic, "topic", c.Topic, "Kafka topic of payment events")
	fs.StringVar(&c.ConsumerGroup, "consumer-group", c.ConsumerGroup, "Kafka consumer group whose offsets paystream commits")
	fs.StringVar(&c.BigQueryProject, "bigquery-project", c.BigQueryProject, "BigQuery project")
	fs.StringVar(&c.BigQueryDataset, "bigquery-dataset", c.BigQueryDataset, "BigQuery dataset")
	fs.StringVar(&c.BigQueryLocation, "bigquery-location", c.BigQueryLocation, "location of the dataset, e.g. EU or europe-west3; jobs run and are looked up there (default: BigQuery's choice, for a new dataset)")
	fs.StringVar(&c.BigQueryEndpoint, "bigquery-endpoint", c.BigQueryEndpoint, "BigQuery API endpoint override (the emulator); empty for real BigQuery with Application Default Credentials")
	fs.StringVar(&c.BigQueryStorageEndpoint, "bigquery-storage-endpoint", c.BigQueryStorageEndpoint, "the emulator's Storage API host:port (gRPC), used with --bigquery-endpoint")
	fs.StringVar(&c.Sink, "sink", c.Sink, "where batches go: bigquery, or discard (benchmarks: rows are built and thrown away; only batch_ledger is written)")
	fs.StringVar(&c.TemporalTLSCert, "temporal-tls-cert", c.TemporalTLSCert, "client certificate for mutual TLS to Temporal, PEM file")
	fs.StringVar(&c.TemporalTLSKey, "temporal-tls-key", c.TemporalTLSKey, "its key, PEM file")
	fs.StringVar(&c.TemporalTLSCA, "temporal-tls-ca", c.TemporalTLSCA, "PEM file of the CA of Temporal's server certificate (default: system roots)")
	fs.StringVar(&c.TemporalTLSServerName, "temporal-tls-server-name", c.TemporalTLSServerName, "server name to verify Temporal's certificate against (default: from the address)")
	fs.StringVar(&c.TemporalAPIKeyFile, "temporal-api-key-file", c.TemporalAPIKeyFile, "file holding a Temporal Cloud API key (default: $"+SecretTemporalAPIKey+")")
	fs.StringVar(&c.TemporalCompression, "temporal-compression", c.TemporalCompression, "compression of requests to Temporal: none, or gzip where bytes cost more than CPU (Temporal Cloud over the internet)")
}

// RegisterKafkaFlags defines the flags that reach Kafka (brokers, TLS,
// SASL) on fs: all the simulator needs.
func (c *Config) RegisterKafkaFlags(fs *flag.FlagSet) {
	fs.Func("kafka-brokers", fmt.Sprintf("comma-separated Kafka bootstrap brokers (default %q)", strings.Join(c.KafkaBrokers, ",")), func(v string) error {
		c.KafkaBrokers = SplitList(v)
		return nil
	})
	fs.BoolVar(&c.KafkaTLS, "kafka-tls", c.KafkaTLS, "connect to the brokers with TLS (implied by the other kafka-tls flags)")
	fs.StringVar(&c.KafkaTLSCA, "kafka-tls-ca", c.KafkaTLSCA, "PEM file of the CA that signed the brokers' certificates (default: system roots)")
	fs.StringVar(&c.KafkaTLSCert, "kafka-tls-cert", c.KafkaTLSCert, "client certificate for mutual TLS, PEM file")
	fs.StringVar(&c.KafkaTLSKey, "kafka-tls-key", c.KafkaTLSKey, "client certificate's key, PEM file")
	fs.StringVar(&c.KafkaSASLMechanism, "kafka-sasl-mechanism", c.KafkaSASLMechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: none)")
	fs.StringVar(&c.KafkaSASLUsername, "kafka-sasl-username", c.KafkaSASLUsername, "SASL user name")
	fs.StringVar(&c.KafkaSASLPasswordFile, "kafka-sasl-password-file", c.KafkaSASLPasswordFile, "file holding the SASL password (default: $"+SecretKafkaSASLPassword+")")
}

// RegisterRegistryFlags defines the flags that reach the Schema Registry.
func (c *Config) RegisterRegistryFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SchemaRegistry, "schema-registry", c.SchemaRegistry, "URL of the Confluent-compatible Schema Registry that Avro records are read with (the devstack's: "+DevstackSchemaRegistry+"); given to starter start, partitions read records in its wire format from where they go on (default: none, JSON only)")
	fs.StringVar(&c.SchemaRegistryUser, "schema-registry-user", c.SchemaRegistryUser, "basic auth user of the Schema Registry (Confluent Cloud: the API key)")
	fs.StringVar(&c.SchemaRegistryPasswordFile, "schema-registry-password-file", c.SchemaRegistryPasswordFile, "file holding the Schema Registry password (Confluent Cloud: the API secret; default: $"+SecretSchemaRegistryPassword+")")
	fs.StringVar(&c.SchemaRegistryCA, "schema-registry-ca", c.SchemaRegistryCA, "PEM file of the CA of an https Schema Registry (default: system roots)")
}

// Registry is a client of the Schema Registry, nil when none is set.
func (c Config) Registry() (*registry.Client, error) {
	if c.SchemaRegistry == "" {
		return nil, nil
	}
	return registry.New(registry.Options{URL: c.SchemaRegistry, Username: c.SchemaRegistryUser, Password: c.registryPassword, TLS: c.registryTLS, Topic: c.Topic})
}

// Secrets read from the environment when no file is given. They have no
// flag on purpose.
const (
	SecretKafkaSASLPassword = "PAYSTREAM_KAFKA_SASL_PASSWORD"
	SecretTemporalAPIKey    = "PAYSTREAM_TEMPORAL_API_KEY"
	// SecretSchemaRegistryPassword is the Schema Registry's basic auth
	// password (Confluent Cloud: the API secret).
	SecretSchemaRegistryPassword = "PAYSTREAM_SCHEMA_REGISTRY_PASSWORD"
)

// Parse parses args into fs, then sets every flag the command line left out
// from its environment variable (see EnvName), so containers can be
// configured by env alone. Usage texts gain the variable's name.
func Parse(fs *flag.FlagSet, args []string) error {
	var version *bool
	if fs.Lookup("version") == nil {
		version = fs.Bool("version", false, "print the version and exit")
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "version" {
			f.Usage += fmt.Sprintf(" [$%s]", EnvName(f.Name))
		}
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
		return Usage(fmt.Errorf("%w (see '%s -h')", err, fs.Name()))
	}
	if version != nil && *version {
		fmt.Fprintf(os.Stdout, "%s %s\n", fs.Name(), Version())
		return flag.ErrHelp // printed what was asked: exit 0
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var firstErr error
	fs.VisitAll(func(f *flag.Flag) {
		v, from, ok := LookupEnv(f.Name, EnvName(f.Name))
		if !ok || given[f.Name] || firstErr != nil || f.Name == "version" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			firstErr = Usage(fmt.Errorf("$%s: %w", from, err))
		}
	})
	return firstErr
}

// Validate reports the first setting that cannot work, and loads the
// certificates and secrets the security settings name.
func (c *Config) Validate() error {
	switch {
	case c.TemporalAddress == "":
		return fmt.Errorf("temporal-address is empty")
	case len(c.KafkaBrokers) == 0:
		return fmt.Errorf("kafka-brokers is empty")
	case c.Topic == "":
		return fmt.Errorf("topic is empty")
	case c.BigQueryProject == "" || c.BigQueryDataset == "":
		return fmt.Errorf("bigquery-project and bigquery-dataset must be set")
	case c.validateNames() != nil:
		return c.validateNames()
	case c.WriteMode != WriteModeLoad && c.WriteMode != WriteModeStorageWrite:
		return fmt.Errorf("write-mode must be %s or %s, got %q", WriteModeLoad, WriteModeStorageWrite, c.WriteMode)
	case c.Sink != SinkBigQuery && c.Sink != SinkDiscard:
		return fmt.Errorf("sink must be %s or %s, got %q", SinkBigQuery, SinkDiscard, c.Sink)
	case c.TemporalCompression != CompressionNone && c.TemporalCompression != CompressionGzip:
		return fmt.Errorf("temporal-compression must be %s or %s, got %q", CompressionNone, CompressionGzip, c.TemporalCompression)
	case c.AllowedLateness <= 0 || c.AllowedLateness > dedup.MaxLateness:
		return fmt.Errorf("allowed-lateness must be positive and at most %v, got %v", dedup.MaxLateness, c.AllowedLateness)
	case c.MaxWindowIDs < 1000:
		return fmt.Errorf("max-window-ids must be at least 1000, got %d", c.MaxWindowIDs)
	}
	return c.loadSecurity()
}

// Kafka is how to reach the brokers, with TLS and SASL once Validate has
// loaded them.
func (c Config) Kafka() kafkalog.Cluster {
	return kafkalog.Cluster{Brokers: c.KafkaBrokers, TLS: c.kafkaTLS, SASL: c.kafkaSASL}
}

// TemporalTLS and TemporalAPIKey are Temporal's connection security once
// Validate has loaded it (nil and "" for a plaintext dev server).
func (c Config) TemporalTLS() *tls.Config { return c.temporalTLS }
func (c Config) TemporalAPIKey() string   { return c.temporalAPIKey }

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

// IsSet says whether the flag name was given, on the command line or by
// its environment variable, rather than left at its default.
func IsSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
