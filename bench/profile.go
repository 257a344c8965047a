package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

// runProfile is where the CPU went in the headline discard run, by part,
// in the worker and in the plain loop over the same events, and in the
// Temporal server. The activities are the same code in the worker and the
// loop, so what the worker spends beyond the loop on them, on the
// Temporal SDK and on its GC is what orchestration costs in the worker;
// the server's CPU is all orchestration.
type runProfile struct {
	Sink      string    `json:"sink"`
	BatchSize int       `json:"batch_size"`
	Events    int       `json:"events"`
	Seconds   float64   `json:"seconds"` // the worker's profile, covering its run
	Parts     []cpuPart `json:"parts"`
	// WorkerProcS is the CPU the profiled run's worker used from start
	// to caught up, by /proc: what the profile should cover.
	WorkerProcS float64 `json:"worker_proc_cpu_s"`
	// Server is the Temporal server's CPU by part, from perf over the
	// same seconds; empty where perf is not installed.
	Server []cpuShare `json:"temporal_server,omitempty"`
	// Files are the worker's and the loop's pprof files, kept beside
	// the report.
	Files []string `json:"files,omitempty"`
}

// runSamples are the samples a profiled temporalRun took.
type runSamples struct {
	worker      map[string]time.Duration
	workerProcS float64
	server      []cpuShare
}

// cpuPart is one part's CPU-seconds: in the worker, and in the plain
// loop (activities only: the loop's process also serves Kafka).
type cpuPart struct {
	Part    string  `json:"part"`
	WorkerS float64 `json:"worker_cpu_s"`
	LoopS   float64 `json:"loop_cpu_s,omitempty"`
}

// partTable sorts a profile's samples into parts: a sample belongs to the
// first part, in the table's order, a frame of whose stack contains the
// part's frame; to other when none does. A part may be listed under
// several frames.
type partTable struct {
	parts []struct{ part, frame string }
	other string
}

// of is the part of a sample whose stack is frames.
func (t partTable) of(frames []string) string {
	for _, c := range t.parts {
		for _, f := range frames {
			if strings.Contains(f, c.frame) {
				return c.part
			}
		}
	}
	return t.other
}

// names lists the parts in the table's order, each once, other last.
func (t partTable) names() []string {
	var out []string
	for _, c := range t.parts {
		if !slices.Contains(out, c.part) {
			out = append(out, c.part)
		}
	}
	return append(out, t.other)
}

// workerParts sorts the worker's and the loop's samples by the engine's
// operations, which the worker's activities and the plain loop both call.
// They come first, so an allocation or a GC assist inside a plan counts as
// PlanBatch's, not the SDK's that called it.
var workerParts = partTable{
	parts: []struct{ part, frame string }{
		{"PlanBatch: Kafka read and parse", "engine.(*Engine).Plan"},
		{"Dedup", "engine.(*Engine).Decide"},
		{"Load: fraud scores, rows built and serialized, ledger job, commit", "engine.(*Engine).Write"},
		{"GC in the background", "runtime.gcBgMarkWorker"},
		{"Temporal SDK and gRPC", "go.temporal.io/"},
		{"Temporal SDK and gRPC", "google.golang.org/grpc"},
	},
	other: "other (runtime, Kafka client, HTTP)",
}

// activityParts is how many of workerParts' first names are activities,
// which the plain loop runs too.
const activityParts = 3

// profileSeconds is how long to profile the worker's run of events: long
// enough to cover all of it at two thirds of the discard sink's usual rate,
// so its activities' CPU compares with the loop's over the same events.
// The run waits for the profile before stopping the worker.
func profileSeconds(events int) int {
	return min(events/40_000+5, 120)
}

// cpuProfile profiles w for seconds into path and sorts the samples.
func (w *workerProc) cpuProfile(ctx context.Context, seconds int, path string) (map[string]time.Duration, error) {
	body, err := w.get(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return nil, err
	}
	return classifyFile(ctx, path)
}

// profileLoop profiles this process while run runs, into path, and sorts
// the samples; nil when a profile of the whole bench (--cpuprofile) is
// already being taken.
func profileLoop(ctx context.Context, path string, run func() error) (map[string]time.Duration, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if pprof.StartCPUProfile(f) != nil {
		os.Remove(path) // no empty file beside the report, listed as a profile
		return nil, run()
	}
	err = run()
	pprof.StopCPUProfile()
	if err != nil {
		return nil, err
	}
	return classifyFile(ctx, path)
}

func classifyFile(ctx context.Context, path string) (map[string]time.Duration, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %w", path, err)
	}
	byPart, _, err := classify(out)
	return byPart, err
}

// setParts fills p.Parts from the worker's and the loop's samples by part.
func (p *runProfile) setParts(worker, loop map[string]time.Duration) {
	p.Parts = nil
	for i, name := range workerParts.names() {
		part := cpuPart{Part: name, WorkerS: worker[name].Seconds()}
		if i < activityParts {
			part.LoopS = loop[name].Seconds()
		}
		p.Parts = append(p.Parts, part)
	}
}

// classify reads `go tool pprof -traces`: blocks of a sample's value
// with its leaf frame, then the callers, separated by dashed lines.
func classify(traces []byte) (map[string]time.Duration, time.Duration, error) {
	byPart := map[string]time.Duration{}
	var total, value time.Duration
	var frames []string
	flush := func() {
		if value == 0 {
			return
		}
		byPart[workerParts.of(frames)] += value
		total += value
		value, frames = 0, frames[:0]
	}
	sc := bufio.NewScanner(bytes.NewReader(traces))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----") {
			flush()
			continue
		}
		// A frame may be followed by "(inline)".
		fields := strings.Fields(line)
		if len(fields) >= 2 && value == 0 && len(frames) == 0 {
			if d, err := time.ParseDuration(fields[0]); err == nil {
				value, frames = d, append(frames, fields[1])
				continue
			}
		}
		if value != 0 && len(fields) >= 1 {
			frames = append(frames, fields[0])
		}
	}
	flush()
	return byPart, total, sc.Err()
}

// serverParts sorts the Temporal server's samples.
var serverParts = partTable{
	parts: []struct{ part, frame string }{
		{"visibility records (SQLite)", "visibility"},
		{"visibility records (SQLite)", "Visibility"},
		{"history persistence (SQLite)", "go.temporal.io/server/common/persistence"},
		{"history persistence (SQLite)", "modernc.org/sqlite"},
		{"matching: task queues", "go.temporal.io/server/service/matching"},
		{"history service", "go.temporal.io/server/service/history"},
		{"frontend and gRPC", "go.temporal.io/server/service/frontend"},
		{"frontend and gRPC", "google.golang.org/grpc"},
		{"GC in the background", "runtime.gcBgMarkWorker"},
	},
	other: "other: Go scheduler, kernel, metrics",
}

// perfHz is how often perf samples the server.
const perfHz = 499

// profileServer samples the Temporal server (pid) with perf for seconds
// into path and sorts its samples into serverParts, in seconds of CPU. It
// returns nil when perf is not installed: the profile is optional.
func profileServer(ctx context.Context, pid, seconds int, path string) ([]cpuShare, error) {
	if _, err := exec.LookPath("perf"); err != nil || pid == 0 {
		return nil, nil
	}
	rec := exec.CommandContext(ctx, "perf", "record", "-q", "-F", fmt.Sprint(perfHz), "-g", "-p", fmt.Sprint(pid), "-o", path, "--", "sleep", fmt.Sprint(seconds))
	if out, err := rec.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("perf record: %w: %s", err, bytes.TrimSpace(out))
	}
	out, err := exec.CommandContext(ctx, "perf", "script", "-i", path).Output()
	if err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	return classifyPerf(string(out)), nil
}

// classifyPerf sorts the samples `perf script` printed (blocks of a
// header line and the stack's frames, separated by blank lines) into
// serverParts; nil when there are none.
func classifyPerf(script string) []cpuShare {
	counts, total := map[string]int{}, 0
	for _, sample := range strings.Split(script, "\n\n") {
		if strings.TrimSpace(sample) == "" {
			continue
		}
		counts[serverParts.of([]string{sample})]++
		total++
	}
	if total == 0 {
		return nil
	}
	var shares []cpuShare
	for _, name := range serverParts.names() {
		shares = append(shares, cpuShare{Part: name, Percent: 100 * float64(counts[name]) / float64(total)})
	}
	return shares
}

// cpuShare is a part's share of a process's CPU samples.
type cpuShare struct {
	Part    string  `json:"part"`
	Percent float64 `json:"percent"`
}
