package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/operator"
)

// report is everything one benchmark run measured.
type report struct {
	Date    time.Time `json:"date"`
	Machine machine   `json:"machine"`
	Options options   `json:"options"`
	// CatchUp holds the median run of each configuration; Runs all of them.
	CatchUp []catchUp `json:"catch_up"`
	Runs    []catchUp `json:"runs"`
	// Overhead is at the headline batch size (see headlineBatchSize);
	// OverheadBySize at each one measured.
	Overhead       overhead     `json:"orchestration_overhead"`
	OverheadBySize []overhead   `json:"orchestration_overhead_by_batch_size,omitempty"`
	Loader         catchUp      `json:"plain_loader"`
	Temporal       temporalCost `json:"temporal_cost"`
	// TemporalDiscard is the same for the discard sink's run, the one
	// the orchestration overhead is measured on.
	TemporalDiscard temporalCost `json:"temporal_cost_discard"`
	Steady          steadyState  `json:"steady_state"`
	// SteadyDiscard is the same run with the discard sink: the pipeline's
	// own latency, memory and recovery, without the emulator's load time.
	SteadyDiscard steadyState `json:"steady_state_discard"`
	// SteadySurvivor is the discard run with two workers: recovery on the
	// worker left, which held none of the killed one's windows.
	SteadySurvivor steadyState `json:"steady_state_survivor"`
	// Recovery is recovery after SIGKILL measured over several short
	// runs of each kind, with where the time went.
	Recovery []recoveryFigures `json:"recovery,omitempty"`
	// Outages are recovery after a server was down, one kind a server.
	Outages []recoveryFigures `json:"outages,omitempty"`
	// WriteModes compares load and storagewrite into the emulator.
	WriteModes []writeModeFigures `json:"write_modes,omitempty"`
	// Cost is Temporal's bill in storagewrite mode into the emulator, a
	// run per --cost-rates rate.
	Cost []steadyState `json:"temporal_cost_storagewrite,omitempty"`
	// Scaling is how the costs move with the partition count.
	Scaling *scalingFigures `json:"scaling,omitempty"`
	Dedup   dedupMemory     `json:"dedup_index"`
	// Avro compares catch-up of Avro records with JSON ones.
	Avro avroFigures `json:"avro,omitempty"`
	// Profile is where the CPU went in the first discard run at the
	// headline batch size, and in the plain loop's at that size.
	Profile runProfile   `json:"cpu_profile"`
	Micro   []microBench `json:"micro_benchmarks"`
}

type machine struct {
	Cores    int    `json:"cores"`
	CPUModel string `json:"cpu_model"`
	MemoryGB int    `json:"memory_gb"`
	Go       string `json:"go"`
	OS       string `json:"os"`
}

// overhead compares the Temporal-driven pipeline with the plain loop over
// the same activities, same sink, batch size and partitions.
type overhead struct {
	BatchSize          int     `json:"batch_size,omitempty"`
	TemporalEventsPerS float64 `json:"temporal_events_per_s"` // the median run's
	LoopEventsPerS     float64 `json:"loop_events_per_s"`     // the median run's
	// Overhead is 1 - temporal/loop, the share of throughput Temporal
	// costs: the median of PairOverheads, each a workflow run and the
	// plain loop run right after it.
	Overhead      float64   `json:"overhead"`
	PairOverheads []float64 `json:"pair_overheads,omitempty"`
	Sink          string    `json:"sink"`
}

// pairOverhead is the share of the loop's throughput a workflow run lost.
func pairOverhead(temporal, loop catchUp) float64 { return 1 - temporal.EventsPerS/loop.EventsPerS }

// avroFigures compare catch-up of the same stream in Avro and in JSON,
// each Avro run made right after a JSON one, with the discard sink: the
// emulator's load time would hide what decoding costs.
type avroFigures struct {
	BatchSize int       `json:"batch_size,omitempty"`
	Runs      []catchUp `json:"runs,omitempty"` // the Avro runs, in order
	// Share is Avro's rate as a share of JSON's: the median of
	// PairShares, each an Avro run over the JSON run before it.
	Share      float64   `json:"share,omitempty"`
	PairShares []float64 `json:"pair_shares,omitempty"`
}

// setPairs sets the shares from the JSON runs and the Avro runs made
// right after each.
func (a *avroFigures) setPairs(jsonRuns []catchUp) {
	a.PairShares = a.PairShares[:0]
	for i := range min(len(jsonRuns), len(a.Runs)) {
		a.PairShares = append(a.PairShares, a.Runs[i].EventsPerS/jsonRuns[i].EventsPerS)
	}
	if sorted := slices.Sorted(slices.Values(a.PairShares)); len(sorted) > 0 {
		a.Share = sorted[len(sorted)/2]
	}
}

// setPairs sets the overhead from workflow runs and the loop runs made
// right after each, in the same order.
func (oh *overhead) setPairs(temporal, loops []catchUp) {
	oh.PairOverheads = oh.PairOverheads[:0]
	for i := range min(len(temporal), len(loops)) {
		oh.PairOverheads = append(oh.PairOverheads, pairOverhead(temporal[i], loops[i]))
	}
	sorted := slices.Sorted(slices.Values(oh.PairOverheads))
	if len(sorted) > 0 {
		oh.Overhead = sorted[len(sorted)/2]
	}
}

type dedupMemory struct {
	BytesPerEntry float64 `json:"bytes_per_entry"`
}

type microBench struct {
	Name        string             `json:"name"`
	NsPerOp     float64            `json:"ns_per_op"`
	BytesPerOp  float64            `json:"bytes_per_op"`
	AllocsPerOp float64            `json:"allocs_per_op"`
	Metrics     map[string]float64 `json:"metrics,omitempty"`
}

func measure(ctx context.Context, o options) (*report, error) {
	progress := io.Writer(os.Stderr)
	if o.Quiet {
		progress = io.Discard
	}
	rep := &report{Date: time.Now().UTC(), Machine: describeMachine(), Options: o}
	root, err := devstack.FindRoot(".")
	if err != nil {
		return nil, err
	}
	// The micro-benchmarks run first, before the servers take the cores.
	if o.measures("micro") {
		fmt.Fprintln(progress, "bench: Go micro-benchmarks (parser, dedup index, fraud scorer)")
		if rep.Micro, err = microBenchmarks(ctx, root, o.MicroTime); err != nil {
			return nil, err
		}
	}
	for _, m := range rep.Micro {
		if v, ok := m.Metrics["bytes/entry"]; ok {
			rep.Dedup.BytesPerEntry = v
		}
	}

	e, err := startEnv(ctx, progress)
	if err != nil {
		return nil, err
	}
	e.workerMemoryLimit, e.keep = o.WorkerMemoryLimit, o.Keep
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	e.profiles = filepath.Join(o.OutDir, rep.baseName())
	defer e.close()

	if o.measures("catch-up") {
		if err := e.catchUps(ctx, o, rep); err != nil {
			return nil, err
		}
	}
	if o.measures("steady") {
		if err := e.steadyRuns(ctx, o, rep); err != nil {
			return nil, err
		}
	}
	if o.measures("recovery") {
		if err := e.recoveryRuns(ctx, o, rep); err != nil {
			return nil, err
		}
	}
	if o.measures("outages") && !o.Smoke {
		if err := e.outageRuns(ctx, o, rep); err != nil {
			return nil, err
		}
	}
	if o.measures("write-modes") {
		if err := e.measureWriteModes(ctx, o, rep); err != nil {
			return nil, err
		}
	}
	if o.measures("cost") {
		if err := e.costRuns(ctx, o, rep); err != nil {
			return nil, err
		}
	}
	if o.measures("scaling") {
		if err := e.scalingRuns(ctx, o, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// steadyRuns measures latency, memory and recovery at the steady rate:
// into the emulator, with the discard sink, and with two workers.
func (e *env) steadyRuns(ctx context.Context, o options, rep *report) error {
	parts := o.Partitions[0]
	steady := []struct {
		sink     string
		length   time.Duration
		survivor bool
		into     *steadyState
	}{
		{config.SinkBigQuery, o.EmulatorSteadyFor, false, &rep.Steady},
		{config.SinkDiscard, o.SteadyFor, false, &rep.SteadyDiscard},
		{config.SinkDiscard, o.SurvivorFor, true, &rep.SteadySurvivor},
	}
	for _, run := range steady {
		how := "a replacement starts at the kill"
		if run.survivor {
			how = "two workers, the survivor takes over"
		}
		e.logf("steady state, %s sink: %.0f events/s for %s (%s)", run.sink, o.SteadyRate, run.length, how)
		st, err := e.steadyOrError(ctx, steadySpec{sink: run.sink, writeMode: config.WriteModeLoad, partitions: parts, rate: o.SteadyRate, length: run.length, survivor: run.survivor})
		if err != nil {
			return err
		}
		*run.into = st
		e.logf("  latency p99 %.2f s, recovery %.1f s", st.LatencyP99, st.RecoveryMaxS)
	}
	return nil
}

// catchUps measures catch-up throughput with both sinks, the plain loop
// and the plain loader, and the Temporal cost per batch.
func (e *env) catchUps(ctx context.Context, o options, rep *report) error {
	parts := o.Partitions[0]
	mid := headlineBatchSize(o)
	// Catch-up: every batch size with both sinks on the first partition
	// count, then the other partition counts at the middle batch size.
	type setup struct {
		sink              string
		partitions, batch int
	}
	var configs []setup
	// The CPU by part in a profiled run, not timed, of the workflows and
	// of the plain loop with the discard sink at the headline size.
	var profiled runSamples
	var loopCPU map[string]time.Duration
	for _, sink := range []string{config.SinkBigQuery, config.SinkDiscard} {
		for _, b := range o.BatchSizes {
			configs = append(configs, setup{sink, parts, b})
		}
	}
	for _, p := range o.Partitions[1:] {
		configs = append(configs, setup{config.SinkBigQuery, p, mid})
	}
	// The plain loop runs right after each workflow run it is compared
	// with, so a machine whose speed drifts over the benchmark (it is
	// shared) moves both sides of a pair alike.
	loopsBySize := map[int][]catchUp{}
	for _, c := range configs {
		var runs []catchUp
		events := o.Events
		if c.sink == config.SinkBigQuery {
			events = o.EmulatorEvents
		}
		for i := range o.Runs {
			e.logf("catch-up %d/%d: %d events, %d partitions, batches of %d, sink %s", i+1, o.Runs, events, c.partitions, c.batch, c.sink)
			r, cfg, err := e.temporalRun(ctx, c.sink, config.WriteModeLoad, c.partitions, c.batch, events, nil)
			if err != nil {
				return err
			}
			e.logf("  %.0f events/s in %.1fs, reconciled %v", r.EventsPerS, r.Seconds, r.Reconciled)
			if c.partitions == parts && c.batch == mid && i == 0 {
				cost := &rep.Temporal
				if c.sink == config.SinkDiscard {
					cost = &rep.TemporalDiscard
				}
				if *cost, err = e.measureTemporalCost(ctx, cfg, r.Events); err != nil {
					return err
				}
			}
			runs = append(runs, r)
			if c.sink == config.SinkDiscard && c.partitions == parts && c.batch == mid {
				e.logf("catch-up in Avro %d/%d: %d events, batches of %d, discard sink", i+1, o.Runs, events, c.batch)
				e.avro = true
				a, _, err := e.temporalRun(ctx, c.sink, config.WriteModeLoad, c.partitions, c.batch, events, nil)
				e.avro = false
				if err != nil {
					return err
				}
				e.logf("  %.0f events/s, reconciled %v; %.0f %% of the JSON run's", a.EventsPerS, a.Reconciled, 100*a.EventsPerS/r.EventsPerS)
				rep.Avro.BatchSize, rep.Avro.Runs = c.batch, append(rep.Avro.Runs, a)
				rep.Avro.setPairs(runs)
			}
			if c.sink == config.SinkDiscard && c.partitions == parts {
				e.logf("plain loop %d/%d: %d events, batches of %d, discard sink", i+1, o.Runs, events, c.batch)
				l, err := e.loopRun(ctx, c.sink, parts, c.batch, events, nil)
				if err != nil {
					return err
				}
				e.logf("  %.0f events/s, reconciled %v; overhead of the pair %.1f %%", l.EventsPerS, l.Reconciled, 100*pairOverhead(r, l))
				loopsBySize[c.batch] = append(loopsBySize[c.batch], l)
			}
		}
		rep.Runs = append(rep.Runs, runs...)
		rep.CatchUp = append(rep.CatchUp, median(runs))
		if c.sink == config.SinkDiscard && c.partitions == parts && c.batch == mid {
			// Profiling slows what it profiles: this run is not timed.
			e.logf("catch-up, profiled and not timed: %d events, %d partitions, batches of %d, sink %s", events, c.partitions, c.batch, c.sink)
			r, _, err := e.temporalRun(ctx, c.sink, config.WriteModeLoad, c.partitions, c.batch, events, &profiled)
			if err != nil {
				return err
			}
			profiled.workerProcS = r.CPUSeconds["worker"]
		}
	}

	// Orchestration overhead: the plain loop, same sink and sizes. It
	// shrinks as batches grow (Temporal's cost is per batch); the target
	// is judged at the batch size `starter start` uses.
	for _, size := range o.BatchSizes {
		loops := loopsBySize[size]
		rep.Runs = append(rep.Runs, loops...)
		if size == mid {
			e.logf("plain loop, profiled and not timed: %d events, batches of %d, discard sink", o.Events, size)
			if _, err := e.loopRun(ctx, config.SinkDiscard, parts, size, o.Events, &loopCPU); err != nil {
				return err
			}
		}
		loop := median(loops)
		rep.CatchUp = append(rep.CatchUp, loop)
		temporal := find(rep.CatchUp, "temporal", config.SinkDiscard, parts, size)
		oh := overhead{BatchSize: size, TemporalEventsPerS: temporal.EventsPerS, LoopEventsPerS: loop.EventsPerS, Sink: config.SinkDiscard}
		oh.setPairs(runsOf(rep.Runs, "temporal", config.SinkDiscard, parts, size), loops)
		rep.OverheadBySize = append(rep.OverheadBySize, oh)
		if size == headlineBatchSize(o) {
			rep.Overhead = oh
		}
	}

	if profiled.worker != nil {
		rep.Profile = runProfile{Sink: config.SinkDiscard, BatchSize: mid, Events: o.Events, Seconds: float64(profileSeconds(o.Events)),
			WorkerProcS: profiled.workerProcS, Server: profiled.server}
		rep.Profile.setParts(profiled.worker, loopCPU)
		for _, kind := range []string{".worker.cpu.pprof", ".loop.cpu.pprof"} {
			if _, err := os.Stat(e.profiles + kind); err == nil {
				rep.Profile.Files = append(rep.Profile.Files, filepath.Base(e.profiles+kind))
			}
		}
	}

	// The emulator's own rate for the same rows.
	var loaders []catchUp
	for i := range o.Runs {
		e.logf("plain loader %d/%d: rows of %d events", i+1, o.Runs, min(o.LoaderEvents, o.EmulatorEvents))
		r, err := e.loaderRun(ctx, parts, mid, min(o.LoaderEvents, o.EmulatorEvents))
		if err != nil {
			return err
		}
		e.logf("  %.0f events/s", r.EventsPerS)
		loaders = append(loaders, r)
	}
	rep.Runs = append(rep.Runs, loaders...)
	rep.Loader = median(loaders)

	return nil
}

// headlineBatchSize is the batch size the targets are judged at, the
// Temporal cost measured at, and the other partition counts and the plain
// loader run at: the default of `starter start` when it is among those
// measured, else the middle one.
func headlineBatchSize(o options) int {
	if d := operator.DefaultTuning().MaxRecords; slices.Contains(o.BatchSizes, d) {
		return d
	}
	return o.BatchSizes[len(o.BatchSizes)/2]
}

// median returns the run with the median rate.
func median(runs []catchUp) catchUp {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b catchUp) int {
		switch {
		case a.EventsPerS < b.EventsPerS:
			return -1
		case a.EventsPerS > b.EventsPerS:
			return 1
		}
		return 0
	})
	return sorted[len(sorted)/2]
}

// runsOf returns the runs of one configuration, in the order they ran.
func runsOf(runs []catchUp, driver, sink string, partitions, batchSize int) []catchUp {
	var out []catchUp
	for _, r := range runs {
		if r.Driver == driver && r.Sink == sink && r.Partitions == partitions && r.BatchSize == batchSize {
			out = append(out, r)
		}
	}
	return out
}

func find(runs []catchUp, driver, sink string, partitions, batchSize int) catchUp {
	if found := runsOf(runs, driver, sink, partitions, batchSize); len(found) > 0 {
		return found[0]
	}
	return catchUp{}
}

func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPUModel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		m.MemoryGB = int((kb + 1<<19) >> 20)
	}
	return m
}

// microBenchmarks runs the packages' Go benchmarks with allocations.
func microBenchmarks(ctx context.Context, root, benchtime string) ([]microBench, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", benchtime,
		"./internal/payment", "./internal/dedup", "./internal/fraud")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench: %w\n%s", err, out.String())
	}
	return parseBenchOutput(out.String()), nil
}

// parseBenchOutput reads `go test -bench` lines: name, iterations, then
// value-unit pairs.
func parseBenchOutput(s string) []microBench {
	var out []microBench
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		mb := microBench{Name: strings.TrimPrefix(f[0], "Benchmark"), Metrics: map[string]float64{}}
		if i := strings.LastIndexByte(mb.Name, '-'); i > 0 {
			mb.Name = mb.Name[:i]
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				mb.NsPerOp = v
			case "B/op":
				mb.BytesPerOp = v
			case "allocs/op":
				mb.AllocsPerOp = v
			default:
				mb.Metrics[f[i+1]] = v
			}
		}
		out = append(out, mb)
	}
	return out
}
