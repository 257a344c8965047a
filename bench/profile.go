package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"time"
)

// workerProfile is where the CPU went in the headline discard run, by
// part, in the worker and in the plain loop over the same events: the
// activities are the same code in both, so what the worker spends beyond
// the loop on them, and on the Temporal SDK and its GC, is what
// orchestration costs in the worker.
type workerProfile struct {
	Sink      string    `json:"sink"`
	BatchSize int       `json:"batch_size"`
	Events    int       `json:"events"`
	Seconds   float64   `json:"seconds"` // the worker's profile, covering its run
	Parts     []cpuPart `json:"parts"`
}

// cpuPart is one part's CPU-seconds: in the worker, and in the plain
// loop (activities only: the loop's process also serves Kafka).
type cpuPart struct {
	Part    string  `json:"part"`
	WorkerS float64 `json:"worker_cpu_s"`
	LoopS   float64 `json:"loop_cpu_s,omitempty"`
}

// cpuParts classifies a sample by the first part, in this order, whose
// frame its stack holds: the activities come first, so an allocation or a
// GC assist inside PlanBatch counts as PlanBatch's, not the SDK's that
// called it.
var cpuParts = []struct{ part, frame string }{
	{"PlanBatch: Kafka read and parse", "activities.(*Activities).PlanBatch"},
	{"Dedup", "activities.(*Activities).Dedup"},
	{"Enrich", "activities.(*Activities).Enrich"},
	{"Load: rows built and serialized, ledger job, commit", "activities.(*Activities).Load"},
	{"GC in the background", "runtime.gcBgMarkWorker"},
	{"Temporal SDK and gRPC", "go.temporal.io/"},
	{"Temporal SDK and gRPC", "google.golang.org/grpc"},
}

// activityParts are the parts the plain loop runs too.
const activityParts = 4

const otherPart = "other (runtime, Kafka client, HTTP)"

// profileSeconds is how long to profile the worker's run of events: long
// enough to cover all of it at a third of the discard sink's usual rate,
// so its activities' CPU compares with the loop's over the same events.
// The run waits for the profile before stopping the worker.
func profileSeconds(events int) int {
	return min(events/20_000+5, 120)
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
func (p *workerProfile) setParts(worker, loop map[string]time.Duration) {
	p.Parts = nil
	seen := map[string]bool{}
	for i, c := range append(cpuParts, struct{ part, frame string }{otherPart, ""}) {
		if seen[c.part] {
			continue
		}
		seen[c.part] = true
		part := cpuPart{Part: c.part, WorkerS: worker[c.part].Seconds()}
		if i < activityParts {
			part.LoopS = loop[c.part].Seconds()
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
		part := otherPart
	find:
		for _, c := range cpuParts {
			for _, f := range frames {
				if strings.Contains(f, c.frame) {
					part = c.part
					break find
				}
			}
		}
		byPart[part] += value
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
