// Command bench measures paystream on the one-machine stack and writes a
// report: bench/results/<date>.json, a Markdown summary and an SVG chart.
//
//	go run ./bench            the full run (1,000,000 events, 3 runs each; about an hour)
//	go run ./bench --smoke    small and quick, for CI: checks the benchmark still runs
//
// Every figure comes from real servers: the Temporal dev server, the
// in-process Kafka-protocol broker and the BigQuery emulator, with workers
// as separate processes (their memory is measured, and one is killed).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/memlimit"
)

// options is what one benchmark run measures and how long it takes.
type options struct {
	Events int `json:"events"`
	// EmulatorEvents is N for runs into the emulator, which slows as its
	// tables grow (a 5,000-row load takes 2 s into an empty table, 10 s
	// into one of 150,000 rows): at a million events it measures the
	// emulator's decline, not paystream.
	EmulatorEvents int           `json:"emulator_events"`
	Runs           int           `json:"runs"`
	BatchSizes     []int         `json:"batch_sizes"`
	Partitions     []int         `json:"partitions"`
	LoaderEvents   int           `json:"loader_events"`
	SteadyRate     float64       `json:"steady_rate"`
	SteadyFor      time.Duration `json:"steady_for_ns"`
	// EmulatorSteadyFor is the emulator sink's steady run: the emulator
	// cannot take 5,000 events/s, so a long run only grows its backlog.
	EmulatorSteadyFor time.Duration `json:"emulator_steady_for_ns"`
	// WriteModeRates are the produce rates (events/s) at which the load
	// and storagewrite modes' steady runs into the emulator are compared,
	// each for EmulatorSteadyFor.
	WriteModeRates []int `json:"write_mode_rates,omitempty"`
	// SurvivorFor is the discard sink's run with two workers, one killed
	// once the window is full: recovery on the worker left.
	SurvivorFor time.Duration `json:"survivor_for_ns"`
	// RecoveryRuns short runs of RecoveryFor each, of every kind, measure
	// recovery after SIGKILL.
	RecoveryRuns int           `json:"recovery_runs"`
	RecoveryFor  time.Duration `json:"recovery_for_ns"`
	// OutageFor is how long each server is down in the outage runs (one
	// run a server, RecoveryFor long, the outage three quarters in).
	OutageFor time.Duration `json:"outage_for_ns,omitempty"`
	// OutageServers are the servers the outage runs stop, one run each.
	OutageServers []string `json:"outage_servers,omitempty"`
	// CostRates are the rates (events/s) at which Temporal's bill is
	// measured, storagewrite into the emulator, CostFor each.
	CostRates []int         `json:"cost_rates,omitempty"`
	CostFor   time.Duration `json:"cost_for_ns,omitempty"`
	// The scaling curve: discard-sink runs of ScalingFor at each rate and
	// partition count, and catch-up of Events at each count.
	ScalingRates      []int         `json:"scaling_rates,omitempty"`
	ScalingPartitions []int         `json:"scaling_partitions,omitempty"`
	ScalingFor        time.Duration `json:"scaling_for_ns,omitempty"`
	MicroTime         string        `json:"micro_benchtime"`
	// WorkerMemoryLimit is the memory limit of the container the steady
	// runs' worker is taken to run in (its --memory-limit): the GC keeps
	// under 90 %. Catch-up runs have none: their batches are larger.
	// The default is the Kubernetes manifest's limit. It is not the
	// 300 MB target: at 5,000 events/s a 10-minute window holds three
	// million IDs, about 290 MB of index alone, and a limit below the
	// live heap makes the GC run without pause, so the run would measure
	// the GC, not the pipeline. The report holds the RSS to the target.
	WorkerMemoryLimit string `json:"worker_memory_limit"`
	// Only names the parts measured (micro, catch-up, steady); all when
	// empty. A partial report leaves the others at zero.
	Only       []string `json:"only,omitempty"`
	Smoke      bool     `json:"smoke"`
	OutDir     string   `json:"-"`
	CPUProfile string   `json:"-"`
	Render     string   `json:"-"`
	Quiet      bool     `json:"-"`
	Keep       bool     `json:"-"`
}

func defaultOptions() options {
	return options{
		Events:         1_000_000,
		EmulatorEvents: 200_000,
		Runs:           3,
		BatchSizes:     []int{2000, 5000, 20000},
		Partitions:     []int{4, 8},
		LoaderEvents:   100_000,
		SteadyRate:     5000,
		// Longer than the 10-minute lateness window, so memory is seen
		// after the window has filled.
		SteadyFor:         15 * time.Minute,
		EmulatorSteadyFor: 2 * time.Minute,
		WriteModeRates:    []int{5000, 10000},
		// The kill comes a minute before the end: after the 10-minute
		// window has filled.
		SurvivorFor:       12 * time.Minute,
		RecoveryRuns:      3,
		RecoveryFor:       90 * time.Second,
		OutageFor:         15 * time.Second,
		OutageServers:     []string{outageTemporal, outageKafka, outageBigQuery},
		CostRates:         []int{5000, 10000},
		CostFor:           2 * time.Minute,
		ScalingRates:      []int{10000, 20000},
		ScalingPartitions: []int{4, 8, 16, 32, 64},
		ScalingFor:        time.Minute,
		MicroTime:         "1s",
		WorkerMemoryLimit: "768MiB",
		OutDir:            "bench/results",
	}
}

// smokeOptions keep every measurement but make each tiny.
func smokeOptions() options {
	o := defaultOptions()
	o.Events, o.EmulatorEvents, o.Runs, o.BatchSizes, o.Partitions = 6000, 6000, 1, []int{2000}, []int{2}
	o.LoaderEvents, o.SteadyRate, o.SteadyFor, o.EmulatorSteadyFor, o.MicroTime, o.Smoke = 6000, 1000, 12*time.Second, 12*time.Second, "100x", true
	o.SurvivorFor, o.WriteModeRates = 12*time.Second, []int{1000}
	o.CostRates, o.CostFor = []int{1000}, 12*time.Second
	o.ScalingRates, o.ScalingPartitions, o.ScalingFor = []int{1000}, []int{1, 2}, 12*time.Second
	o.RecoveryRuns, o.RecoveryFor = 1, 12*time.Second
	return o
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(config.ExitCode(err))
	}
}

func run(ctx context.Context, args []string) error {
	opts, err := parseOptions(args)
	if err != nil {
		return err
	}
	if opts.Render != "" {
		return render(opts.Render)
	}
	if opts.CPUProfile != "" {
		f, err := os.Create(opts.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := measure(ctx, opts)
	if err != nil {
		return err
	}
	paths, err := rep.write(opts.OutDir)
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(rep.markdown(paths.chart))
	fmt.Printf("\nwritten: %s, %s, %s\n", paths.json, paths.markdown, paths.chart)
	return nil
}

func parseOptions(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	smoke := false
	for _, a := range args {
		if a == "--smoke" || a == "-smoke" || a == "--smoke=true" || a == "-smoke=true" {
			smoke = true
		}
	}
	o := defaultOptions()
	if smoke {
		o = smokeOptions()
	}
	fs.Bool("smoke", smoke, "small figures for CI: checks the benchmark runs, its times mean little")
	fs.IntVar(&o.Events, "events", o.Events, "events produced before each catch-up run")
	fs.IntVar(&o.EmulatorEvents, "emulator-events", o.EmulatorEvents, "events produced before each catch-up run into the emulator (it slows as its tables grow)")
	fs.IntVar(&o.Runs, "runs", o.Runs, "runs of each catch-up configuration; figures are their median")
	fs.Func("batch-sizes", fmt.Sprintf("comma-separated batch sizes (max records) to compare (default %s)", joinInts(o.BatchSizes)), func(v string) error {
		var err error
		o.BatchSizes, err = parseInts(v)
		return err
	})
	fs.Func("partitions", fmt.Sprintf("comma-separated partition counts to compare; the first is used for the other figures (default %s)", joinInts(o.Partitions)), func(v string) error {
		var err error
		o.Partitions, err = parseInts(v)
		return err
	})
	fs.IntVar(&o.LoaderEvents, "loader-events", o.LoaderEvents, "events whose rows the plain loader loads (held in memory; at most --emulator-events)")
	fs.Float64Var(&o.SteadyRate, "steady-rate", o.SteadyRate, "events/s produced in the steady-state run")
	fs.DurationVar(&o.SteadyFor, "steady-for", o.SteadyFor, "length of the discard sink's steady-state run (latency, memory, recovery)")
	fs.DurationVar(&o.EmulatorSteadyFor, "emulator-steady-for", o.EmulatorSteadyFor, "length of the emulator sink's steady-state run")
	fs.Func("write-mode-rates", fmt.Sprintf("comma-separated produce rates (events/s) at which the load and storagewrite modes are compared, each for --emulator-steady-for (default %s)", joinInts(o.WriteModeRates)), func(v string) error {
		var err error
		o.WriteModeRates, err = parseInts(v)
		return err
	})
	fs.DurationVar(&o.SurvivorFor, "survivor-for", o.SurvivorFor, "length of the discard sink's run with two workers, one killed near the end (recovery on the survivor)")
	fs.IntVar(&o.RecoveryRuns, "recovery-runs", o.RecoveryRuns, "short runs of each kind that measure recovery after SIGKILL (the figure is their median)")
	fs.DurationVar(&o.RecoveryFor, "recovery-for", o.RecoveryFor, "length of each recovery run; the worker is killed three quarters in")
	fs.DurationVar(&o.OutageFor, "outage-for", o.OutageFor, "how long each server (Temporal, Kafka, BigQuery) is down in its outage run")
	fs.Func("cost-rates", fmt.Sprintf("comma-separated rates (events/s) at which Temporal's bill is measured, storagewrite into the emulator (default %s)", joinInts(o.CostRates)), func(v string) error {
		var err error
		o.CostRates, err = parseInts(v)
		return err
	})
	fs.DurationVar(&o.CostFor, "cost-for", o.CostFor, "length of each cost run")
	fs.Func("scaling-rates", fmt.Sprintf("comma-separated total rates (events/s) of the scaling curve (default %s)", joinInts(o.ScalingRates)), func(v string) error {
		var err error
		o.ScalingRates, err = parseInts(v)
		return err
	})
	fs.Func("scaling-partitions", fmt.Sprintf("comma-separated partition counts of the scaling curve (default %s)", joinInts(o.ScalingPartitions)), func(v string) error {
		var err error
		o.ScalingPartitions, err = parseInts(v)
		return err
	})
	fs.DurationVar(&o.ScalingFor, "scaling-for", o.ScalingFor, "length of each steady run of the scaling curve")
	fs.StringVar(&o.MicroTime, "micro-benchtime", o.MicroTime, "-benchtime of the Go micro-benchmarks")
	fs.StringVar(&o.WorkerMemoryLimit, "worker-memory-limit", o.WorkerMemoryLimit, "the steady runs' worker's container memory limit (its --memory-limit; the GC keeps under 90% of it); empty for none")
	fs.Func("only", "measure only these parts, comma-separated: micro, catch-up, steady, recovery, write-modes, cost, scaling (default: all; the others are left at zero)", func(v string) error {
		for _, p := range config.SplitList(v) {
			if !slices.Contains(benchParts, p) {
				return fmt.Errorf("unknown part %q: want some of %s", p, strings.Join(benchParts, ", "))
			}
		}
		o.Only = config.SplitList(v)
		return nil
	})
	fs.Func("outage-servers", fmt.Sprintf("comma-separated servers the outage runs stop, one run each (default %s)", strings.Join(o.OutageServers, ",")), func(v string) error {
		for _, server := range config.SplitList(v) {
			if !slices.Contains([]string{outageTemporal, outageKafka, outageBigQuery}, server) {
				return fmt.Errorf("unknown server %q: want some of %s, %s, %s", server, outageTemporal, outageKafka, outageBigQuery)
			}
		}
		o.OutageServers = config.SplitList(v)
		return nil
	})
	fs.StringVar(&o.OutDir, "out", o.OutDir, "directory for the results")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress lines")
	fs.BoolVar(&o.Keep, "keep-work-dir", false, "keep the work directory (worker logs, server state) and print where it is")
	fs.StringVar(&o.Render, "render", "", "measure nothing: write the summary and chart again from this results JSON (e.g. after changing the report)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of this process (the Kafka broker and the plain loop run here) to the file")
	if err := config.Parse(fs, args); err != nil {
		return o, err
	}
	switch {
	case o.Events < 100 || o.EmulatorEvents < 100 || o.Runs < 1 || len(o.BatchSizes) == 0 || len(o.Partitions) == 0:
		return o, fmt.Errorf("need --events >= 100, --runs >= 1 and at least one batch size and partition count")
	case o.SteadyRate <= 0 || o.SteadyFor < 10*time.Second || o.EmulatorSteadyFor < 10*time.Second || o.SurvivorFor < 10*time.Second:
		return o, fmt.Errorf("need --steady-rate > 0 and --steady-for, --emulator-steady-for and --survivor-for >= 10s")
	}
	if o.WorkerMemoryLimit != "" {
		if _, err := memlimit.Parse(o.WorkerMemoryLimit); err != nil {
			return o, fmt.Errorf("--worker-memory-limit: %w", err)
		}
	}
	if o.CostFor < 10*time.Second || o.ScalingFor < 10*time.Second {
		return o, fmt.Errorf("need --cost-for and --scaling-for >= 10s")
	}
	for _, n := range slices.Concat(o.BatchSizes, o.Partitions, o.WriteModeRates, o.CostRates, o.ScalingRates, o.ScalingPartitions) {
		if n < 1 {
			return o, fmt.Errorf("batch sizes, partition counts and rates must be positive, got %d", n)
		}
	}
	return o, nil
}

// benchParts are what --only chooses from.
var benchParts = []string{"micro", "catch-up", "steady", "recovery", "outages", "write-modes", "cost", "scaling"}

// measures tells whether the run measures part.
func (o options) measures(part string) bool {
	return len(o.Only) == 0 || slices.Contains(o.Only, part)
}

func parseInts(v string) ([]int, error) {
	var out []int
	for _, s := range config.SplitList(v) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// render writes the Markdown summary and the chart beside an existing
// results JSON, from its figures.
func render(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	base := strings.TrimSuffix(path, ".json")
	if err := os.WriteFile(base+".svg", []byte(rep.svg()), 0o644); err != nil {
		return err
	}
	md := rep.markdown(filepath.Base(base) + ".svg")
	fmt.Print(md)
	return os.WriteFile(base+".md", []byte(md), 0o644)
}
