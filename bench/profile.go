package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// workerProfile is where the worker's CPU went during part of the
// headline discard run: the activities' share is work the plain loop
// does too; the Temporal SDK's is what orchestration adds in the worker.
type workerProfile struct {
	Sink      string     `json:"sink"`
	BatchSize int        `json:"batch_size"`
	Seconds   float64    `json:"seconds"`     // of the run profiled
	CPUSecond float64    `json:"cpu_seconds"` // samples taken in them
	Shares    []cpuShare `json:"shares"`
}

type cpuShare struct {
	Part    string  `json:"part"`
	Percent float64 `json:"percent"`
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

const otherPart = "other (runtime, Kafka client, HTTP)"

// profileSeconds is how long to profile a run of events: about its
// first two thirds at the discard sink's rate, so the profile ends
// before the worker is stopped.
func profileSeconds(events int) int {
	return min(max(events/100_000, 1), 10)
}

// cpuProfile profiles w for seconds and sorts the samples into
// cpuParts; the profile is kept at path.
func (w *workerProc) cpuProfile(ctx context.Context, seconds int, path string) (workerProfile, error) {
	p := workerProfile{Seconds: float64(seconds)}
	body, err := w.get(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds))
	if err != nil {
		return p, err
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return p, err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		return p, fmt.Errorf("go tool pprof -traces %s: %w", path, err)
	}
	byPart, total, err := classify(out)
	if err != nil {
		return p, err
	}
	p.CPUSecond = total.Seconds()
	seen := map[string]bool{}
	for _, c := range append(cpuParts, struct{ part, frame string }{otherPart, ""}) {
		if seen[c.part] || total == 0 {
			continue
		}
		seen[c.part] = true
		p.Shares = append(p.Shares, cpuShare{Part: c.part, Percent: 100 * float64(byPart[c.part]) / float64(total)})
	}
	return p, nil
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
