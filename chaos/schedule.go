package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Fault is one kind of thing the schedule does to the running pipeline.
type Fault string

const (
	FaultKill            Fault = "kill"             // SIGKILL a worker, start a new one after Hold
	FaultTerm            Fault = "term"             // SIGTERM a worker (graceful stop), start a new one after Hold
	FaultAddWorker       Fault = "add-worker"       // one more worker, up to maxWorkers
	FaultRemoveWorker    Fault = "remove-worker"    // SIGTERM one worker for good, down to one
	FaultPause           Fault = "pause"            // pause Partitions, resume them after Hold
	FaultDrain           Fault = "drain"            // drain Partitions, start them again after Hold
	FaultStopStart       Fault = "stop-start"       // stop every partition, start again after Hold
	FaultSetBatch        Fault = "set-batch"        // set Partitions' batch size to Records
	FaultLateness        Fault = "lateness"         // stop, wait until stopped, start with AllowedLateness
	FaultRestartTemporal Fault = "restart-temporal" // restart the Temporal dev server on its state
	FaultTerminatePool   Fault = "terminate-pool"   // terminate the worker pool workflow
	FaultAddPartitions   Fault = "add-partitions"   // add Records partitions to the topic
	FaultRefuseBigQuery  Fault = "refuse-bigquery"  // BigQuery answers 503 to writes for Hold
)

// Step is one fault at a moment of the run.
type Step struct {
	At         time.Duration // from the start of production
	Fault      Fault
	Hold       time.Duration // how long the fault lasts, where it lasts
	Worker     int           // which running worker, as an index drawn before the count is known (taken modulo)
	Partitions []int         // which partitions, for controls (none: every partition)
	Records    int           // batch size for set-batch, partitions to add for add-partitions
	Lateness   time.Duration // for lateness
}

func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%7s  %-16s", s.At.Round(100*time.Millisecond), s.Fault)
	switch s.Fault {
	case FaultKill, FaultTerm, FaultRemoveWorker:
		fmt.Fprintf(&b, " worker #%d", s.Worker)
	case FaultSetBatch:
		fmt.Fprintf(&b, " records=%d", s.Records)
	case FaultAddPartitions:
		fmt.Fprintf(&b, " +%d", s.Records)
	case FaultLateness:
		fmt.Fprintf(&b, " allowed-lateness=%s", s.Lateness)
	}
	if s.Partitions != nil {
		fmt.Fprintf(&b, " partitions=%v", s.Partitions)
	}
	if s.Hold > 0 {
		fmt.Fprintf(&b, " for %s", s.Hold.Round(100*time.Millisecond))
	}
	return b.String()
}

// Schedule is everything one seed decides before the run: the stack's
// shape, the faults and their moments, and the producer's seed.
type Schedule struct {
	Seed         uint64
	Duration     time.Duration
	WriteMode    string
	Partitions   int
	Workers      int // at the start
	MaxRecords   int // batch size at the start
	Lateness     time.Duration
	ProducerSeed uint64
	Steps        []Step
}

// Lateness values the schedule moves between. Every record the producer
// writes is judged alike under both (checked by the oracle), so the
// books do not depend on which batch saw the change first.
var latenesses = []time.Duration{10 * time.Minute, 15 * time.Minute}

const maxWorkers = 3

// faultWeights is how often each fault is drawn, relative to the others.
var faultWeights = []struct {
	fault  Fault
	weight int
}{
	{FaultKill, 6}, {FaultTerm, 3}, {FaultAddWorker, 2}, {FaultRemoveWorker, 2},
	{FaultPause, 3}, {FaultDrain, 2}, {FaultStopStart, 2}, {FaultSetBatch, 3},
	{FaultLateness, 1}, {FaultRestartTemporal, 1}, {FaultTerminatePool, 1},
	{FaultAddPartitions, 1}, {FaultRefuseBigQuery, 2},
}

// NewSchedule draws the schedule of seed: the same seed, duration and
// write mode give the same schedule, step for step.
func NewSchedule(seed uint64, duration time.Duration, writeMode string) Schedule {
	rng := rand.New(rand.NewPCG(seed, 0x636861_6f73)) // "chaos"
	s := Schedule{
		Seed: seed, Duration: duration, WriteMode: writeMode,
		Partitions:   2 + rng.IntN(3),
		Workers:      1 + rng.IntN(2),
		MaxRecords:   []int{50, 200, 700}[rng.IntN(3)],
		Lateness:     latenesses[0],
		ProducerSeed: rng.Uint64(),
	}
	// About one fault every 8 seconds, none in the first 5 s (the stack
	// settles) or the last 10 s (holds end before production does).
	n := max(1, int(duration/(8*time.Second)))
	window := duration - 15*time.Second
	if window <= 0 {
		window = duration / 2
	}
	total := 0
	for _, w := range faultWeights {
		total += w.weight
	}
	for range n {
		st := Step{At: 5*time.Second + time.Duration(rng.Int64N(int64(window)))}
		pick := rng.IntN(total)
		for _, w := range faultWeights {
			if pick < w.weight {
				st.Fault = w.fault
				break
			}
			pick -= w.weight
		}
		st.Worker = rng.IntN(maxWorkers)
		switch st.Fault {
		case FaultKill, FaultTerm:
			st.Hold = time.Duration(rng.IntN(5000)) * time.Millisecond
		case FaultPause, FaultDrain:
			st.Hold = time.Duration(1000+rng.IntN(6000)) * time.Millisecond
			st.Partitions = somePartitions(rng, s.Partitions)
		case FaultStopStart:
			// Often at once: "stop, then start" typed back to back.
			if rng.IntN(2) == 0 {
				st.Hold = time.Duration(rng.IntN(8000)) * time.Millisecond
			}
		case FaultSetBatch:
			st.Records = []int{1, 10, 50, 200, 700, 3000}[rng.IntN(6)]
			st.Partitions = somePartitions(rng, s.Partitions)
		case FaultAddPartitions:
			st.Records = 1 + rng.IntN(2)
		case FaultRefuseBigQuery:
			st.Hold = time.Duration(2000+rng.IntN(8000)) * time.Millisecond
		}
		s.Steps = append(s.Steps, st)
	}
	slices.SortStableFunc(s.Steps, func(a, b Step) int { return int(a.At - b.At) })
	// Lateness steps are re-numbered in time order, so the lateness after
	// each is the other of the two, as drawn.
	lateness := s.Lateness
	for i := range s.Steps {
		if s.Steps[i].Fault == FaultLateness {
			if lateness == latenesses[0] {
				lateness = latenesses[1]
			} else {
				lateness = latenesses[0]
			}
			s.Steps[i].Lateness = lateness
		}
	}
	return s
}

// somePartitions is a random non-empty subset of the first n partitions,
// or nil (every partition) half of the time.
func somePartitions(rng *rand.Rand, n int) []int {
	if rng.IntN(2) == 0 {
		return nil
	}
	var out []int
	for p := range n {
		if rng.IntN(2) == 0 {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []int{rng.IntN(n)}
	}
	return out
}

// Write prints the schedule so that a failure can be replayed by its seed.
func (s Schedule) Write(w io.Writer) {
	fmt.Fprintf(w, "chaos: seed %d, %s, write mode %s, %d partitions, %d workers, batches of %d, allowed lateness %s\n",
		s.Seed, s.Duration, s.WriteMode, s.Partitions, s.Workers, s.MaxRecords, s.Lateness)
	fmt.Fprintf(w, "chaos: replay with: make chaos SEED=%d DURATION=%s WRITE_MODE=%s\n", s.Seed, s.Duration, s.WriteMode)
	for _, st := range s.Steps {
		fmt.Fprintf(w, "chaos:   %s\n", st)
	}
}

// Faults counts the schedule's steps by fault.
func (s Schedule) Faults() map[Fault]int {
	out := map[Fault]int{}
	for _, st := range s.Steps {
		out[st.Fault]++
	}
	return out
}
