// Package devstack runs paystream's three servers on one machine, for the
// demo, for every end-to-end test and for anyone evaluating the project:
// the Temporal dev server with its web UI and the BigQuery emulator as child
// processes (built from tools/go.mod on first use), and a Kafka-protocol
// broker (kfake) in-process. State lives in one directory, so a restart
// keeps Temporal history, Kafka data and BigQuery tables.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/searchattr"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

// Config says where the stack keeps state and listens. The zero ports of
// DefaultConfig's are the documented defaults; tests pick free ones.
type Config struct {
	StateDir string
	// Root is the paystream checkout (tools/ and bin/ live there); found
	// from the working directory when empty.
	Root string

	Host             string
	TemporalPort     int
	TemporalUIPort   int
	KafkaPort        int
	BigQueryPort     int
	BigQueryGRPCPort int
	// RegistryPort is the Schema Registry's (Confluent's default 8081).
	RegistryPort int

	Partitions int
	// KafkaBrokers is how many brokers the Kafka cluster has (0: one);
	// the first listens on KafkaPort, the others on free ports.
	KafkaBrokers int
	Topic        string
	Project      string
	Dataset      string

	// ReadyTimeout bounds the wait for all servers to answer.
	ReadyTimeout time.Duration
	// Log gets progress lines; nil discards them.
	Log io.Writer
}

// DefaultConfig is the stack on its documented ports.
func DefaultConfig() Config {
	return Config{
		StateDir:         ".state/devstack",
		Host:             "127.0.0.1",
		TemporalPort:     7233,
		TemporalUIPort:   8233,
		KafkaPort:        9092,
		BigQueryPort:     9050,
		BigQueryGRPCPort: 9060,
		RegistryPort:     8081,
		Partitions:       8,
		Topic:            config.DefaultTopic,
		Project:          config.DefaultBigQueryProject,
		Dataset:          config.DefaultBigQueryDataset,
		ReadyTimeout:     2 * time.Minute,
	}
}

// Stack is a running devstack.
type Stack struct {
	cfg      Config
	log      io.Writer
	binDir   string
	tArgs    []string
	temporal *process
	emulator *process
	kafka    *kfake.Cluster
	registry *schemaRegistry
	// kafkaPorts are the brokers' ports, kept across RestartKafka.
	kafkaPorts []int
}

// Endpoint is one address a user or a binary connects to.
type Endpoint struct {
	Name    string
	Address string
}

// Start brings the stack up and returns once every server answers and the
// topic and schema exist. On error nothing it started is left running.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("partitions must be at least 1, got %d", cfg.Partitions)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultConfig().ReadyTimeout
	}
	if err := checkPortsFree(cfg); err != nil {
		return nil, err
	}
	if cfg.Root == "" {
		if cfg.Root, err = FindRoot("."); err != nil {
			return nil, err
		}
	}
	binDir, err := EnsureTools(ctx, cfg.Root, cfg.Log)
	if err != nil {
		return nil, err
	}
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}

	s := &Stack{cfg: cfg, log: cfg.Log, binDir: binDir}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	fmt.Fprintf(s.log, "devstack: state in %s\n", cfg.StateDir)
	tArgs := []string{"server", "start-dev",
		"--ip", cfg.Host, "--port", strconv.Itoa(cfg.TemporalPort), "--ui-port", strconv.Itoa(cfg.TemporalUIPort),
		"--db-filename", filepath.Join(cfg.StateDir, "temporal.db"),
		"--log-level", "warn",
	}
	s.tArgs = append(tArgs, TemporalServerFlags()...)
	if err := s.startTemporal(); err != nil {
		return nil, err
	}
	if err := s.startEmulator(); err != nil {
		return nil, err
	}
	if err := s.startKafka(); err != nil {
		return nil, err
	}
	if s.registry, err = newSchemaRegistry(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	if err := s.StartRegistry(); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// TemporalServerFlags are the `temporal server start-dev` flags that make
// the dev server the one paystream needs, whatever its addresses and state
// file: docker-compose.yml passes the same (deploy/compose_test.go).
func TemporalServerFlags() []string {
	flags := []string{
		"--namespace", config.DefaultNamespace,
		// Durable across a killed process (the fault tests) without an
		// fsync per history write; only a machine crash may lose the last
		// writes, which a dev stack can afford.
		"--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
		// Runs an activity on the worker that completes the workflow task
		// scheduling it, saving a round trip per activity (docs/design.md §6).
		"--dynamic-config-value", "system.enableActivityEagerExecution=true",
	}
	for _, d := range searchattr.Definitions() {
		flags = append(flags, "--search-attribute", d.Name+"="+d.Type)
	}
	return flags
}

// waitReady waits for each server in turn, then checks the topic and
// applies the schema.
func (s *Stack) waitReady(ctx context.Context) error {
	if err := s.poll(ctx, "Kafka broker", nil, func(ctx context.Context) error {
		parts, err := kafkalog.Partitions(ctx, kafkalog.Plain(s.KafkaBrokers()), s.cfg.Topic)
		if err != nil {
			return err
		}
		if len(parts) != s.cfg.Partitions {
			// Changing the count would move keys to other partitions and
			// split a transaction's duplicates apart.
			return permanent(fmt.Errorf("topic %s in %s has %d partitions, not the %d asked for: use another --state-dir, or --partitions %d",
				s.cfg.Topic, s.cfg.StateDir, len(parts), s.cfg.Partitions, len(parts)))
		}
		return nil
	}); err != nil {
		return err
	}
	if err := s.poll(ctx, "BigQuery emulator", s.emulator, s.emulatorReady); err != nil {
		return err
	}
	if err := s.poll(ctx, "Temporal frontend", s.temporal, s.temporalReady); err != nil {
		return err
	}
	if err := s.poll(ctx, "Temporal web UI", s.temporal, func(ctx context.Context) error {
		return httpOK(ctx, s.TemporalUIURL())
	}); err != nil {
		return err
	}
	bq, err := warehouse.Open(ctx, s.cfg.Project, s.BigQueryEndpoint())
	if err != nil {
		return err
	}
	defer bq.Close()
	if err := schema.Apply(ctx, bq, s.cfg.Dataset, schema.Options{Emulator: true}); err != nil {
		return fmt.Errorf("apply BigQuery schema: %w", err)
	}
	fmt.Fprintf(s.log, "devstack: schema applied to %s.%s\n", s.cfg.Project, s.cfg.Dataset)
	return nil
}

func (s *Stack) startKafka() (err error) {
	if s.kafkaPorts == nil {
		s.kafkaPorts = []int{s.cfg.KafkaPort}
		for range max(s.cfg.KafkaBrokers, 1) - 1 {
			ln, err := listenFree(s.cfg.Host)
			if err != nil {
				return err
			}
			s.kafkaPorts = append(s.kafkaPorts, ln.Addr().(*net.TCPAddr).Port)
			ln.Close()
		}
	}
	s.kafka, err = kfake.NewCluster(
		kfake.Ports(s.kafkaPorts...),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(s.cfg.Host, port))
		}),
		kfake.DataDir(filepath.Join(s.cfg.StateDir, "kafka")),
		kfake.SeedTopics(int32(s.cfg.Partitions), s.cfg.Topic),
	)
	if err != nil {
		return fmt.Errorf("start Kafka broker on %s: %w", s.KafkaAddress(), err)
	}
	return nil
}

// RestartKafka closes the broker and starts it again from its data
// directory (fault tests).
func (s *Stack) RestartKafka() error {
	s.kafka.Close()
	return s.startKafka()
}

func (s *Stack) startEmulator() (err error) {
	s.emulator, err = startProcess("bigquery emulator", filepath.Join(s.binDir, EmulatorBinary), []string{
		"--project=" + s.cfg.Project, "--host=" + s.cfg.Host,
		"--port=" + strconv.Itoa(s.cfg.BigQueryPort), "--grpc-port=" + strconv.Itoa(s.cfg.BigQueryGRPCPort),
		"--database=" + filepath.Join(s.cfg.StateDir, "bigquery.db"), "--log-level=warn",
	}, filepath.Join(s.cfg.StateDir, "bigquery.log"))
	return err
}

func (s *Stack) emulatorReady(ctx context.Context) error {
	return httpOK(ctx, s.BigQueryEndpoint()+"/bigquery/v2/projects/"+s.cfg.Project+"/datasets")
}

// ServerPIDs returns the process IDs of the Temporal dev server and the
// BigQuery emulator (Kafka runs in this process), for measuring their CPU.
func (s *Stack) ServerPIDs() (temporal, emulator int) {
	return s.temporal.cmd.Process.Pid, s.emulator.cmd.Process.Pid
}

// ResetBigQuery restarts the emulator on an empty database, so that every
// benchmark run loads into the same state: the emulator slows as its
// database grows.
func (s *Stack) ResetBigQuery(ctx context.Context) error {
	s.emulator.stop(15 * time.Second)
	if err := os.Remove(filepath.Join(s.cfg.StateDir, "bigquery.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := s.startEmulator(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	return s.poll(ctx, "BigQuery emulator", s.emulator, s.emulatorReady)
}

func (s *Stack) startTemporal() (err error) {
	s.temporal, err = startProcess("temporal dev server", filepath.Join(s.binDir, TemporalBinary), s.tArgs, filepath.Join(s.cfg.StateDir, "temporal.log"))
	return err
}

// RestartTemporal stops the Temporal dev server and starts it again on the
// same state, as an operator restart or a crash would (fault tests).
func (s *Stack) RestartTemporal(ctx context.Context) error {
	s.StopTemporal()
	return s.StartTemporal(ctx)
}

// StopTemporal stops the Temporal dev server, keeping its state, for an
// outage of its own (fault tests); StartTemporal ends it.
func (s *Stack) StopTemporal() { s.temporal.stop(15 * time.Second) }

// StartTemporal starts the Temporal dev server StopTemporal stopped and
// returns once its frontend serves the namespace.
func (s *Stack) StartTemporal(ctx context.Context) error {
	if err := s.startTemporal(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	return s.poll(ctx, "Temporal frontend", s.temporal, s.temporalReady)
}

// StopBigQuery stops the BigQuery emulator, keeping its database, for an
// outage of its own (fault tests); StartBigQuery ends it.
func (s *Stack) StopBigQuery() { s.emulator.stop(15 * time.Second) }

// StartBigQuery starts the emulator StopBigQuery stopped and returns once
// it answers.
func (s *Stack) StartBigQuery(ctx context.Context) error {
	if err := s.startEmulator(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	return s.poll(ctx, "BigQuery emulator", s.emulator, s.emulatorReady)
}

// StopKafka closes the broker, keeping its data directory, for an outage
// of its own (fault tests); StartKafka ends it.
func (s *Stack) StopKafka() {
	if s.kafka != nil {
		s.kafka.Close()
		s.kafka = nil
	}
}

// StartKafka starts the broker StopKafka stopped, on the same ports and
// data.
func (s *Stack) StartKafka() error { return s.startKafka() }

// StopRegistry stops serving the Schema Registry, keeping its schemas,
// for an outage of its own (fault tests); StartRegistry ends it.
func (s *Stack) StopRegistry() { s.registry.stop() }

// StartRegistry serves the Schema Registry on its port.
func (s *Stack) StartRegistry() error {
	return s.registry.serve(net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.RegistryPort)))
}

// SchemaRegistry is the in-process registry, for tests that give it a
// schema under an ID of their choosing (as a restore from a backup does).
func (s *Stack) SchemaRegistry() *srfake.Registry { return s.registry.reg }

// RegistryURL is the Schema Registry's URL.
func (s *Stack) RegistryURL() string {
	return "http://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.RegistryPort))
}

// temporalReady checks that the frontend answers and serves the namespace.
func (s *Stack) temporalReady(ctx context.Context) error {
	c, err := s.DialTemporal(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return err
	}
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: config.DefaultNamespace})
	return err
}

// permanentError stops poll from trying again.
type permanentError struct{ error }

func permanent(err error) error { return permanentError{err} }

// poll calls check until it succeeds, the server process dies, or ctx ends.
func (s *Stack) poll(ctx context.Context, what string, p *process, check func(context.Context) error) error {
	began := time.Now()
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(attemptCtx)
		cancel()
		if err == nil {
			fmt.Fprintf(s.log, "devstack: %s ready (%s)\n", what, time.Since(began).Round(100*time.Millisecond))
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return perm.error
		}
		if p != nil {
			if dead, why := p.exited(); dead {
				return why
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within %s: %w", what, s.cfg.ReadyTimeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// checkPortsFree fails fast, naming the port, when something already
// listens where a server must: otherwise the child would die with an error
// in its log file and the user would only see a readiness timeout.
func checkPortsFree(cfg Config) error {
	for _, p := range []struct {
		port int
		what string
		flag string
	}{
		{cfg.TemporalPort, "Temporal gRPC", "--temporal-port"},
		{cfg.TemporalUIPort, "Temporal web UI", "--temporal-ui-port"},
		{cfg.KafkaPort, "Kafka", "--kafka-port"},
		{cfg.BigQueryPort, "BigQuery emulator HTTP", "--bigquery-port"},
		{cfg.BigQueryGRPCPort, "BigQuery emulator gRPC", "--bigquery-grpc-port"},
		{cfg.RegistryPort, "Schema Registry", "--schema-registry-port"},
	} {
		addr := net.JoinHostPort(cfg.Host, strconv.Itoa(p.port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("port %d (%s) on %s is already in use: stop what holds it (is another devstack running?) or pass %s", p.port, p.what, cfg.Host, p.flag)
		}
		ln.Close()
	}
	return nil
}

// Stop stops every server, Kafka last so its data is flushed after no one
// writes any more. It is safe to call more than once.
func (s *Stack) Stop() {
	for _, p := range []*process{s.temporal, s.emulator} {
		if p != nil {
			p.stop(15 * time.Second)
		}
	}
	if s.registry != nil {
		s.registry.stop()
	}
	if s.kafka != nil {
		s.kafka.Close()
		s.kafka = nil
	}
	fmt.Fprintln(s.log, "devstack: stopped")
}

// Exited returns a channel closed when a server child process ends on its
// own, and which one.
func (s *Stack) Exited() <-chan error {
	ch := make(chan error, 1)
	go func() {
		select {
		case <-s.temporal.done:
			_, err := s.temporal.exited()
			ch <- err
		case <-s.emulator.done:
			_, err := s.emulator.exited()
			ch <- err
		}
	}()
	return ch
}

// Addresses.
func (s *Stack) TemporalAddress() string {
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.TemporalPort))
}
func (s *Stack) TemporalUIURL() string {
	return "http://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.TemporalUIPort))
}
func (s *Stack) KafkaAddress() string {
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.KafkaPort))
}

// KafkaBrokers are every broker's address, the first on KafkaPort.
func (s *Stack) KafkaBrokers() []string {
	out := make([]string, len(s.kafkaPorts))
	for i, p := range s.kafkaPorts {
		out[i] = net.JoinHostPort(s.cfg.Host, strconv.Itoa(p))
	}
	return out
}
func (s *Stack) BigQueryEndpoint() string {
	return "http://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.BigQueryPort))
}

// Kafka is the in-process broker, for tests that inject faults.
func (s *Stack) Kafka() *kfake.Cluster { return s.kafka }

// StateDir is the absolute state directory.
func (s *Stack) StateDir() string { return s.cfg.StateDir }

// ClientConfig is the configuration the worker, starter and simulator need
// to use this stack.
func (s *Stack) ClientConfig() config.Config {
	c := config.Default()
	c.TemporalAddress = s.TemporalAddress()
	c.KafkaBrokers = s.KafkaBrokers()
	c.Topic = s.cfg.Topic
	c.BigQueryProject = s.cfg.Project
	c.BigQueryDataset = s.cfg.Dataset
	c.BigQueryEndpoint = s.BigQueryEndpoint()
	c.BigQueryStorageEndpoint = net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.BigQueryGRPCPort))
	c.SchemaRegistry = s.RegistryURL()
	return c
}

// Endpoints lists what the stack serves, for printing.
func (s *Stack) Endpoints() []Endpoint {
	return []Endpoint{
		{"Temporal gRPC", s.TemporalAddress()},
		{"Temporal web UI", s.TemporalUIURL()},
		{"Kafka bootstrap", s.KafkaAddress() + " (topic " + s.cfg.Topic + ", " + strconv.Itoa(s.cfg.Partitions) + " partitions)"},
		{"BigQuery API", s.BigQueryEndpoint() + " (project " + s.cfg.Project + ", dataset " + s.cfg.Dataset + ")"},
		{"BigQuery Storage gRPC", net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.BigQueryGRPCPort))},
		{"Schema Registry", s.RegistryURL() + " (subject " + s.cfg.Topic + "-value)"},
		{"Logs", filepath.Join(s.cfg.StateDir, "{temporal,bigquery}.log")},
	}
}

// DialTemporal connects a Temporal client to the stack, with the SDK's
// own logging silenced.
func (s *Stack) DialTemporal(ctx context.Context) (client.Client, error) {
	return client.DialContext(ctx, client.Options{
		HostPort:  s.TemporalAddress(),
		Namespace: config.DefaultNamespace,
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
}

// UseFreePorts points every port of cfg at a free loopback port, so tests
// can run next to a developer's devstack and to each other. The listeners
// stay open until all ports are picked, so no two roles get the same one.
func UseFreePorts(cfg *Config) error {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for _, p := range []*int{&cfg.TemporalPort, &cfg.TemporalUIPort, &cfg.KafkaPort, &cfg.BigQueryPort, &cfg.BigQueryGRPCPort, &cfg.RegistryPort} {
		ln, err := listenFree(cfg.Host)
		if err != nil {
			return err
		}
		held = append(held, ln)
		*p = ln.Addr().(*net.TCPAddr).Port
	}
	return nil
}

// listenFree listens on a free port below the kernel's ephemeral range.
// A port the kernel hands out for ":0" is also what it gives outgoing
// connections: between our closing it and a server binding it, a client
// elsewhere on the machine (a parallel test's) took one, and the server
// failed with "address already in use".
func listenFree(host string) (net.Listener, error) {
	low := 32768 // Linux's default start of ip_local_port_range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	for range 200 {
		port := 10000 + rand.IntN(low-10000)
		if ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port))); err == nil {
			return ln, nil
		}
	}
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}
