package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/paystream/paystream/internal/config"
)

// writeModeFigures is one way of writing to BigQuery, into the emulator:
// catch-up throughput, and steady latency at each rate measured.
type writeModeFigures struct {
	Mode    string        `json:"mode"`
	CatchUp catchUp       `json:"catch_up"` // the median run
	Steady  []steadyState `json:"steady"`   // one per rate, in --write-mode-rates order
}

// writeModesCompared are the write modes measured side by side.
var writeModesCompared = []string{config.WriteModeLoad, config.WriteModeStorageWrite}

// measureWriteModes runs load and storagewrite on the same setup: catch-up
// at the headline batch size, then a steady run at each rate. The two
// modes' runs alternate, so a drift in the shared machine's speed moves
// both alike.
func (e *env) measureWriteModes(ctx context.Context, o options, rep *report) error {
	parts, batch := o.Partitions[0], headlineBatchSize(o)
	runs := make([][]catchUp, len(writeModesCompared))
	for run := range o.Runs {
		for i, mode := range writeModesCompared {
			e.logf("write mode %s, catch-up %d/%d: %d events, %d partitions, batches of %d", mode, run+1, o.Runs, o.EmulatorEvents, parts, batch)
			r, _, err := e.temporalRun(ctx, config.SinkBigQuery, mode, parts, batch, o.EmulatorEvents, nil)
			if err != nil {
				return fmt.Errorf("write mode %s: %w", mode, err)
			}
			e.logf("  %.0f events/s in %.1fs, reconciled %v", r.EventsPerS, r.Seconds, r.Reconciled)
			runs[i] = append(runs[i], r)
			rep.Runs = append(rep.Runs, r)
		}
	}
	figures := make([]writeModeFigures, len(writeModesCompared))
	for i, mode := range writeModesCompared {
		figures[i] = writeModeFigures{Mode: mode, CatchUp: median(runs[i])}
	}
	for _, rate := range o.WriteModeRates {
		for i, mode := range writeModesCompared {
			e.logf("write mode %s, steady: %d events/s for %s", mode, rate, o.EmulatorSteadyFor)
			st, err := e.steadyOrError(ctx, steadySpec{sink: config.SinkBigQuery, writeMode: mode, partitions: parts, rate: float64(rate), length: o.EmulatorSteadyFor})
			if err != nil {
				return err
			}
			e.logf("  latency p99 %.2f s, reconciled %v%s", st.LatencyP99, st.Reconciled, behind(st))
			figures[i].Steady = append(figures[i].Steady, st)
		}
	}
	rep.WriteModes = figures
	return nil
}

// writeModesMarkdown is the report's comparison of the write modes.
func (r *report) writeModesMarkdown() string {
	if len(r.WriteModes) == 0 {
		return ""
	}
	o := r.Options
	var b strings.Builder
	b.WriteString("\n## Write modes\n\n")
	fmt.Fprintf(&b, "The two ways of writing to BigQuery, into the emulator, on %d partitions: `load` (a load job per table and batch) and `storagewrite` (appends at offsets to COMMITTED Storage Write API streams). "+
		"Catch-up: %d events in batches of %d, median of %d runs. Steady: %s at each rate, latency from produce time to the batch's ledger row being visible, until the worker is killed %.0f s in. The modes' runs alternate.\n\n",
		o.Partitions[0], o.EmulatorEvents, headlineBatchSize(o), o.Runs, o.EmulatorSteadyFor, killAt(o.EmulatorSteadyFor).Seconds())
	b.WriteString("| write mode | catch-up events/s |")
	for _, rate := range o.WriteModeRates {
		fmt.Fprintf(&b, " steady p99 at %d events/s (p50, p95) |", rate)
	}
	b.WriteString(" reconciled |\n|---|---|")
	for range o.WriteModeRates {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, f := range r.WriteModes {
		reconciled := f.CatchUp.Reconciled
		fmt.Fprintf(&b, "| %s | %.0f |", f.Mode, f.CatchUp.EventsPerS)
		for _, st := range f.Steady {
			reconciled = reconciled && st.Reconciled
			switch {
			case st.Error != "":
				fmt.Fprintf(&b, " did not finish: %s |", st.Error)
			case st.FellBehind:
				fmt.Fprintf(&b, " %.2f s (%.2f, %.2f); **fell behind** |", st.LatencyP99, st.LatencyP50, st.LatencyP95)
			default:
				fmt.Fprintf(&b, " %.2f s (%.2f, %.2f) |", st.LatencyP99, st.LatencyP50, st.LatencyP95)
			}
		}
		fmt.Fprintf(&b, " %v |\n", reconciled)
	}
	for _, f := range r.WriteModes {
		for _, st := range f.Steady {
			if len(st.Cores) > 0 {
				fmt.Fprintf(&b, "\n- %s at %.0f events/s, cores kept busy until the kill:", f.Mode, st.Rate)
				for _, name := range slices.Sorted(maps.Keys(st.Cores)) {
					fmt.Fprintf(&b, " %s %.2f,", name, st.Cores[name])
				}
				fmt.Fprintf(&b, " of %d.", r.Machine.Cores)
				if st.LoadP50S > 0 {
					fmt.Fprintf(&b, " Load took p50 %.2f s, p95 %.2f s a batch.", st.LoadP50S, st.LoadP95S)
				}
			}
		}
	}
	b.WriteString("\n")
	return b.String()
}
