package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/operator"
)

type reportPaths struct{ json, markdown, chart string }

// write saves the report as <date>.json, <date>.md and <date>.svg in dir.
func (r *report) write(dir string) (reportPaths, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return reportPaths{}, err
	}
	base := r.baseName()
	p := reportPaths{
		json:     filepath.Join(dir, base+".json"),
		markdown: filepath.Join(dir, base+".md"),
		chart:    filepath.Join(dir, base+".svg"),
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return p, err
	}
	if err := os.WriteFile(p.json, append(b, '\n'), 0o644); err != nil {
		return p, err
	}
	if err := os.WriteFile(p.chart, []byte(r.svg()), 0o644); err != nil {
		return p, err
	}
	return p, os.WriteFile(p.markdown, []byte(r.markdown(filepath.Base(p.chart))), 0o644)
}

// baseName names the report's files: its date (smoke runs get a "-smoke"
// suffix so they never replace a real one).
func (r *report) baseName() string {
	if r.Options.Smoke {
		return r.Date.Format("2006-01-02") + "-smoke"
	}
	return r.Date.Format("2006-01-02")
}

// Targets of the benchmark issue, on a 2-core machine.
const (
	targetEmulatorEventsPerS = 10_000
	targetLoaderShare        = 0.70
	targetDiscardEventsPerS  = 50_000
	targetLatencyP99         = 5.0
	targetOverhead           = 0.15
	targetRSSMB              = 300
	targetRecoveryS          = 5.0
)

// pairsNote names the pairs the overhead is the median of, when it is.
func (oh overhead) pairsNote() string {
	if len(oh.PairOverheads) < 2 {
		return ""
	}
	sorted := slices.Sorted(slices.Values(oh.PairOverheads))
	return fmt.Sprintf("; median of %d pairs, each a workflow run and a loop run right after it, %.1f–%.1f %%", len(sorted), 100*sorted[0], 100*sorted[len(sorted)-1])
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// markdown is the human summary, with the chart linked.
func (r *report) markdown(chart string) string {
	var b strings.Builder
	o := r.Options
	parts, mid := o.Partitions[0], headlineBatchSize(o)
	fmt.Fprintf(&b, "# paystream benchmark, %s\n\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %d cores, %s, %d GB RAM, %s, %s. Every server shares those cores.\n", r.Machine.Cores, r.Machine.CPUModel, r.Machine.MemoryGB, r.Machine.Go, r.Machine.OS)
	if o.measures("catch-up") {
		fmt.Fprintf(&b, "Catch-up runs: %d events each (%d into the emulator, which slows as its tables grow), median of %d runs.", o.Events, o.EmulatorEvents, o.Runs)
	}
	if len(o.Only) > 0 {
		fmt.Fprintf(&b, " Measured here: %s; the other parts are in other reports.", strings.Join(o.Only, ", "))
	}
	if o.Smoke {
		b.WriteString(" **Smoke mode: figures too small to mean anything.**")
	}
	b.WriteString("\n\n![throughput and latency](" + chart + ")\n\n")

	emu := find(r.CatchUp, "temporal", config.SinkBigQuery, parts, mid)
	disc := find(r.CatchUp, "temporal", config.SinkDiscard, parts, mid)
	bestDisc := disc
	for _, c := range r.CatchUp {
		if c.Driver == "temporal" && c.Sink == config.SinkDiscard && c.EventsPerS > bestDisc.EventsPerS {
			bestDisc = c
		}
	}
	share := 0.0
	if r.Loader.EventsPerS > 0 {
		share = emu.EventsPerS / r.Loader.EventsPerS
	}
	s, sd := r.Steady, r.SteadyDiscard
	b.WriteString("## Targets\n\n| figure | measured | target | |\n|---|---|---|---|\n")
	if o.measures("catch-up") {
		fmt.Fprintf(&b, "| catch-up, emulator sink (%d partitions, batches of %d) | %.0f events/s | ≥ %d events/s | %s |\n", parts, mid, emu.EventsPerS, targetEmulatorEventsPerS, verdict(emu.EventsPerS >= targetEmulatorEventsPerS))
		fmt.Fprintf(&b, "| … as a share of the plain loader's rate for the same rows (%.0f events/s) | %.0f %% | ≥ %.0f %% | %s |\n", r.Loader.EventsPerS, 100*share, 100*targetLoaderShare, verdict(share >= targetLoaderShare))
		fmt.Fprintf(&b, "| catch-up, discard sink (best: batches of %d) | %.0f events/s | ≥ %d events/s | %s |\n", bestDisc.BatchSize, bestDisc.EventsPerS, targetDiscardEventsPerS, verdict(bestDisc.EventsPerS >= targetDiscardEventsPerS))
	}
	if o.measures("steady") {
		for _, st := range []steadyState{s, sd} {
			fmt.Fprintf(&b, "| steady latency p99 at %.0f events/s, %s sink (p50 %.2f s, p95 %.2f s) | %.2f s | ≤ %.0f s at 5,000/s | %s |\n", st.Rate, st.Sink, st.LatencyP50, st.LatencyP95, st.LatencyP99, targetLatencyP99, verdict(st.LatencyP99 <= targetLatencyP99 && st.Rate >= 5000))
		}
	}
	for _, f := range r.WriteModes {
		if len(f.Steady) > 0 { // the first rate's, 5,000 by default
			st := f.Steady[0]
			fmt.Fprintf(&b, "| steady latency p99 at %.0f events/s, emulator sink, %s mode (p50 %.2f s; see Write modes) | %.2f s | ≤ %.0f s at 5,000/s | %s |\n",
				st.Rate, f.Mode, st.LatencyP50, st.LatencyP99, targetLatencyP99, verdict(st.LatencyP99 <= targetLatencyP99 && st.Rate >= 5000 && st.Error == "" && !st.FellBehind))
		}
	}
	if o.measures("catch-up") {
		isDefault := ""
		if r.Overhead.BatchSize == operator.DefaultTuning().MaxRecords {
			isDefault = ", the default"
		}
		fmt.Fprintf(&b, "| orchestration overhead vs plain loop (%s sink, batches of %d%s: %.0f vs %.0f events/s%s) | %.1f %% | ≤ %.0f %% | %s |\n", r.Overhead.Sink, r.Overhead.BatchSize, isDefault, r.Overhead.TemporalEventsPerS, r.Overhead.LoopEventsPerS, r.Overhead.pairsNote(), 100*r.Overhead.Overhead, 100*targetOverhead, verdict(r.Overhead.Overhead <= targetOverhead))
	}
	if a := r.Avro; len(a.Runs) > 0 {
		fmt.Fprintf(&b, "| catch-up of Avro records as a share of JSON's (discard sink, batches of %d: %.0f events/s; median of %d pairs, each an Avro run right after a JSON one, %s) | %.0f %% | ≥ %.0f %% | %s |\n",
			a.BatchSize, median(a.Runs).EventsPerS, len(a.PairShares), percents(a.PairShares), 100*a.Share, 100*targetAvroShare, verdict(a.Share >= targetAvroShare && allReconciled(a.Runs)))
	}
	if o.measures("steady") {
		for _, st := range []steadyState{s, sd} {
			halves := "first half %.0f MB, second half %.0f MB"
			if st.WindowFilledS > 0 {
				halves = fmt.Sprintf("after the window filled at %.0f s: ", st.WindowFilledS) + halves
			}
			fmt.Fprintf(&b, "| worker peak RSS over %s, %s sink (%s) | %.0f MB | ≤ %d MB, flat | %s |\n", steadyLength(o, st), st.Sink, fmt.Sprintf(halves, st.FirstHalfPeakMB, st.LastHalfPeakMB), st.PeakRSSMB, targetRSSMB, verdict(st.PeakRSSMB <= targetRSSMB && st.LastHalfPeakMB <= 1.1*st.FirstHalfPeakMB))
		}
		for _, st := range []steadyState{s, sd} {
			if st.RecoveryMaxS <= 0 {
				fmt.Fprintf(&b, "| recovery after SIGKILL of the worker, %s sink | not seen: a partition had no batch visible after the kill before the run ended | ≤ %.0f s | %s |\n", st.Sink, targetRecoveryS, verdict(false))
				continue
			}
			fmt.Fprintf(&b, "| recovery after SIGKILL of the worker, %s sink, slowest partition (median %.1f s) | %.1f s | ≤ %.0f s | %s |\n", st.Sink, st.RecoveryMedianS, st.RecoveryMaxS, targetRecoveryS, verdict(st.RecoveryMaxS <= targetRecoveryS))
		}
		if sv := r.SteadySurvivor; sv.Survivor {
			if sv.RecoveryMaxS <= 0 {
				fmt.Fprintf(&b, "| recovery after SIGKILL of one of two workers, on the survivor, %s sink | not seen before the run ended | ≤ %.0f s | %s |\n", sv.Sink, targetRecoveryS, verdict(false))
			} else {
				fmt.Fprintf(&b, "| recovery after SIGKILL of one of two workers, on the survivor (which held none of its windows; killed %.0f s in, %s), %s sink, slowest partition (median %.1f s) | %.1f s | ≤ %.0f s | %s |\n",
					killAt(steadyLength(o, sv)).Seconds(), windowState(o, sv), sv.Sink, sv.RecoveryMedianS, sv.RecoveryMaxS, targetRecoveryS, verdict(sv.RecoveryMaxS <= targetRecoveryS))
			}
		}
	}
	for _, f := range r.Recovery {
		fmt.Fprintf(&b, "| recovery after SIGKILL, %s, slowest partition, median of %s | %s | ≤ %.0f s | %s |\n",
			f.kind(), f.runsNote(), recoverySeconds(f.MedianMaxS), targetRecoveryS, verdict(len(f.Runs) > 0 && f.MedianMaxS >= 0 && f.MedianMaxS <= targetRecoveryS))
	}

	if o.measures("catch-up") {
		b.WriteString("\nWhat limits the catch-up figures (the busiest process of the run, in cores kept busy; see \"Where the time goes\"):\n\n")
		fmt.Fprintf(&b, "- emulator sink: %s; the plain loader, which only loads, keeps %s.\n", busiest(emu, r.Machine.Cores), busiest(r.Loader, r.Machine.Cores))
		fmt.Fprintf(&b, "- discard sink, batches of %d: %s.\n", bestDisc.BatchSize, busiest(bestDisc, r.Machine.Cores))
		loop := find(r.CatchUp, "loop", config.SinkDiscard, parts, mid)
		fmt.Fprintf(&b, "- orchestration: the Temporal server keeps %.2f cores busy in the workflow run (discard sink, batches of %d) and %.2f in the plain loop.\n",
			coresOf(disc, "temporal"), mid, coresOf(loop, "temporal"))
		if len(r.OverheadBySize) > 0 {
			b.WriteString("\nOrchestration overhead by batch size (discard sink; Temporal's cost is per batch, the work per event)")
			if len(r.OverheadBySize[0].PairOverheads) > 0 { // results from before pairs had none
				b.WriteString(". Each workflow run is followed by a plain loop run, and the overhead is the median of those pairs, so a drift in the shared machine's speed moves both sides of a pair alike")
			}
			b.WriteString(":\n\n| batch size | workflows (median) | plain loop (median) | overhead | the pairs |\n|---|---|---|---|---|\n")
			for _, oh := range r.OverheadBySize {
				pairs := make([]string, len(oh.PairOverheads))
				for i, p := range oh.PairOverheads {
					pairs[i] = fmt.Sprintf("%.1f", 100*p)
				}
				fmt.Fprintf(&b, "| %d | %.0f events/s | %.0f events/s | %.1f %% | %s |\n", oh.BatchSize, oh.TemporalEventsPerS, oh.LoopEventsPerS, 100*oh.Overhead, strings.Join(pairs, ", "))
			}
		}
		b.WriteString("\n## Catch-up throughput (median runs)\n\n| driver | sink | partitions | batch size | events | seconds | events/s | batches | worker peak RSS | reconciled |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, c := range append(append([]catchUp{}, r.CatchUp...), r.Loader) {
			rss := "-"
			if c.WorkerPeakMB > 0 {
				rss = fmt.Sprintf("%.0f MB", c.WorkerPeakMB)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %.1f | %.0f | %d | %s | %v |\n", c.Driver, c.Sink, c.Partitions, c.BatchSize, c.Events, c.Seconds, c.EventsPerS, c.Batches, rss, c.Reconciled)
		}
		b.WriteString("\n\"temporal\" is the product: worker process, PartitionIngest and MicroBatch workflows. \"loop\" runs the same activities from a plain Go loop in one process (no Temporal). \"loader\" only loads rows the pipeline built beforehand, one loader per partition: the emulator's own ceiling. Time runs from `start` until every partition's committed offset reaches its end; the data is then reconciled against the simulator's manifest (the discard sink writes only batch_ledger, so its check is offsets and ledger totals).\n")

		b.WriteString("\n## Where the time goes\n\nCores each process kept busy during the median runs (CPU seconds / wall seconds; the machine has " + fmt.Sprint(r.Machine.Cores) + "):\n\n| driver | sink | batch size | partitions | temporal | bigquery-emulator | worker | bench+kafka |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range append(append([]catchUp{}, r.CatchUp...), r.Loader) {
			cores := func(name string) string {
				v, ok := c.CPUSeconds[name]
				if !ok || c.Seconds == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f", v/c.Seconds)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s | %s |\n", c.Driver, c.Sink, c.BatchSize, c.Partitions, cores("temporal"), cores("bigquery-emulator"), cores("worker"), cores("bench+kafka"))
		}
		b.WriteString("\nThe loop and the loader run their activities in the bench process, with the Kafka broker.\n")
		b.WriteString(cpuBudget(disc, loop, r.Profile))

		t := r.Temporal
		b.WriteString("\n## Temporal cost\n\n")
		fmt.Fprintf(&b, "%d batches of %d events: %d history events (%.0f KB); per batch %.1f events and %.0f bytes; per 1,000 events %.1f events and %.0f bytes.\n",
			t.Batches, t.Events, t.HistoryEvents, float64(t.HistoryBytes)/1024, t.EventsPerBatch, t.BytesPerBatch, t.EventsPer1000Records, t.BytesPer1000Records)
		// By type from the discard run, whose batches are the overhead's.
		typed, typedSink := r.TemporalDiscard, config.SinkDiscard
		if len(typed.PerBatchByType) == 0 {
			typed, typedSink = t, config.SinkBigQuery
		}
		if len(typed.PerBatchByType) > 0 {
			types := slices.SortedFunc(maps.Keys(typed.PerBatchByType), func(a, b string) int {
				return cmp.Or(cmp.Compare(typed.PerBatchByType[b], typed.PerBatchByType[a]), cmp.Compare(a, b))
			})
			var parts []string
			for _, name := range types {
				parts = append(parts, fmt.Sprintf("%s %.1f", name, typed.PerBatchByType[name]))
			}
			fmt.Fprintf(&b, "\nHistory events a batch adds, by type (%s sink, %d batches of %d events): %s.\n", typedSink, typed.Batches, typed.Events/max(typed.Batches, 1), strings.Join(parts, ", "))
		}
		b.WriteString("\nWhere a batch's time goes, from the workflow histories' event times (median seconds per batch, batches of " + fmt.Sprint(mid) + " on " + fmt.Sprint(parts) + " partitions). " +
			"Between a batch completing and the partition's next MicroBatch starting: waiting for that batch's PlanBatch (reading and parsing it from Kafka, as the plain loop does too), and the rest, which is Temporal's (the PartitionIngest's workflow task, the child's start). " +
			"Decide: Dedup, a local activity in a workflow task. Load: the Load activity, which scores the batch too. Other: the MicroBatch's remaining workflow tasks and round trips through the server. " +
			"Temporal's share is the between-batches rest and other, of the whole.\n\n")
		b.WriteString("| sink | waiting for the plan | between batches, Temporal | decide | load | other | Temporal's share |\n|---|---|---|---|---|---|---|\n")
		for _, c := range []struct {
			sink string
			t    temporalCost
		}{{config.SinkBigQuery, r.Temporal}, {config.SinkDiscard, r.TemporalDiscard}} {
			bd := c.t.Breakdown
			if total := bd.PlanWaitS + bd.GapS + bd.DecideS + bd.LoadS + bd.OtherS; total > 0 {
				fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f %% |\n", c.sink, bd.PlanWaitS, bd.GapS, bd.DecideS, bd.LoadS, bd.OtherS, 100*(bd.GapS+bd.OtherS)/total)
			}
		}
	}

	if o.measures("steady") {
		b.WriteString("\n## Steady state\n\nLatency is produce time to the batch's ledger row being visible in BigQuery (the ledger row is written after every other table of the batch), over records whose batch was visible before the worker was killed.\n\n")
		if o.WorkerMemoryLimit != "" {
			fmt.Fprintf(&b, "The worker runs as in a container with a %s memory limit (`--memory-limit`: the GC keeps the heap under 90 %% of it), and a killed worker's replacement shares its state directory, as a restarted container shares its pod's emptyDir.\n\n", o.WorkerMemoryLimit)
		}

		runs := []steadyState{s, sd}
		if r.SteadySurvivor.Survivor {
			runs = append(runs, r.SteadySurvivor)
		}
		for _, st := range runs {
			recovered := fmt.Sprintf("had every partition's next batch visible within %.1f s (median %.1f s)", st.RecoveryMaxS, st.RecoveryMedianS)
			if st.RecoveryMaxS <= 0 {
				recovered = "had not made every partition's next batch visible when the run ended"
			}
			who, sink := "the replacement worker", st.Sink
			if st.Survivor {
				who, sink = "of one of two workers, the survivor", st.Sink+" sink, two workers"
			} else {
				sink += " sink"
			}
			fmt.Fprintf(&b, "- %s: %d events at %.0f events/s over %.0f s on %d partitions. Latency p50 %.2f s, p95 %.2f s, p99 %.2f s, max %.2f s. Worker RSS peak %.0f MB. After SIGKILL %s %s. Reconciled after the kill: %v%s.\n",
				sink, st.Events, st.Rate, st.Seconds, st.Partitions, st.LatencyP50, st.LatencyP95, st.LatencyP99, st.LatencyMax, st.PeakRSSMB, who, recovered, st.Reconciled, behind(st))
			if st.Error != "" {
				fmt.Fprintf(&b, "  **The run did not finish:** %s. The figures above are those it had by then.\n", st.Error)
			}
			if st.LoadP50S > 0 {
				what := "the Load activity (five data load jobs at once, then batch_ledger's)"
				if st.Sink == config.SinkDiscard {
					what = "the Load activity (with this sink only the batch_ledger load job into the emulator)"
				}
				fmt.Fprintf(&b, "  Worker log: %s took p50 %.2f s, p95 %.2f s a batch before the kill.", what, st.LoadP50S, st.LoadP95S)
				if st.WindowRestoredBy != "" {
					fmt.Fprintf(&b, " The worker that took over got its slowest dedup window back by %s in %.2f s.", st.WindowRestoredBy, st.WindowRestoreMaxS)
				}
				b.WriteString("\n")
			}
			if len(st.Cores) > 0 {
				b.WriteString("  Cores kept busy until the kill:")
				for _, name := range slices.Sorted(maps.Keys(st.Cores)) {
					fmt.Fprintf(&b, " %s %.2f,", name, st.Cores[name])
				}
				b.WriteString(" of " + fmt.Sprint(r.Machine.Cores) + ".\n")
			}
			if st.DedupWindowMB > 0 {
				fmt.Fprintf(&b, "  The dedup windows' tables held %.0f MB outside the Go heap before the kill.\n", st.DedupWindowMB)
			}
			if len(st.HeapTop) > 0 {
				b.WriteString("  The worker's live heap before the kill (`go tool pprof -top`):\n\n  ```\n")
				for _, l := range st.HeapTop {
					b.WriteString("  " + l + "\n")
				}
				b.WriteString("  ```\n")
			}
		}
		fmt.Fprintf(&b, "\nDedup index: %.0f bytes per held transaction ID.\n", r.Dedup.BytesPerEntry)
	}
	b.WriteString(r.recoveryMarkdown())
	b.WriteString(r.outagesMarkdown())
	b.WriteString(r.writeModesMarkdown())
	b.WriteString(r.costMarkdown())
	b.WriteString(r.scalingMarkdown())

	if o.measures("micro") {
		b.WriteString("\n## Micro-benchmarks\n\n| benchmark | ns/op | B/op | allocs/op |\n|---|---|---|---|\n")
		for _, m := range r.Micro {
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f |\n", m.Name, m.NsPerOp, m.BytesPerOp, m.AllocsPerOp)
		}
	}
	return b.String()
}

// svg draws two bar charts side by side: catch-up events/s by batch size
// per sink, and the steady-state latency percentiles.
func (r *report) svg() string {
	const w, h, pad = 900, 360, 50
	var b strings.Builder
	total := h
	if r.Scaling != nil {
		total += h + 20
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, total)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")

	// Left: throughput by batch size.
	parts := r.Options.Partitions[0]
	sinks := []struct{ name, color string }{{config.SinkBigQuery, "#4e79a7"}, {config.SinkDiscard, "#f28e2b"}}
	maxRate := 1.0
	for _, c := range r.CatchUp {
		maxRate = max(maxRate, c.EventsPerS)
	}
	chartW, chartH := 480.0, float64(h-2*pad)
	group := chartW / float64(len(r.Options.BatchSizes))
	bar := group / 3
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">catch-up events/s by batch size (%d partitions)</text>`+"\n", pad, parts)
	for i, size := range r.Options.BatchSizes {
		x0 := float64(pad) + float64(i)*group
		for j, s := range sinks {
			c := find(r.CatchUp, "temporal", s.name, parts, size)
			bh := c.EventsPerS / maxRate * chartH
			x := x0 + float64(j)*bar + bar/2
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, float64(h-pad)-bh, bar, bh, s.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", x+bar/2, float64(h-pad)-bh-4, c.EventsPerS)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x0+group/2, h-pad+16, size)
	}
	for j, s := range sinks {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s sink</text>`+"\n", pad+j*130, h-16, s.color, pad+14+j*130, h-7, html.EscapeString(s.name))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%.0f" y2="%d" stroke="black"/>`+"\n", pad, h-pad, float64(pad)+chartW, h-pad)

	// Right: latency percentiles.
	s := r.Steady
	lat := []struct {
		name string
		v    float64
	}{{"p50", s.LatencyP50}, {"p95", s.LatencyP95}, {"p99", s.LatencyP99}}
	maxLat := max(s.LatencyP99, targetLatencyP99)
	x0 := 600.0
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14">steady latency (s) at %.0f events/s</text>`+"\n", x0, s.Rate)
	for i, l := range lat {
		bh := l.v / maxLat * chartH
		x := x0 + float64(i)*80
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="50" height="%.1f" fill="#59a14f"/>`+"\n", x, float64(h-pad)-bh, bh)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.2f</text>`+"\n", x+25, float64(h-pad)-bh-4, l.v)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x+25, h-pad+16, l.name)
	}
	ty := float64(h-pad) - targetLatencyP99/maxLat*chartH
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="red" stroke-dasharray="4"/><text x="%.0f" y="%.1f" fill="red">target p99</text>`+"\n", x0-5, ty, x0+235, ty, x0+180, ty-4)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%d" x2="%.0f" y2="%d" stroke="black"/>`+"\n", x0-5, h-pad, x0+235, h-pad)
	r.scalingSVG(&b, h+20, w, h)
	b.WriteString("</svg>\n")
	return b.String()
}

func behind(s steadyState) string {
	if !s.FellBehind {
		return ""
	}
	return " (" + strings.Join(s.Mismatches, "; ") + ")"
}

// coresOf is how many cores a process kept busy during a run.
func coresOf(c catchUp, process string) float64 {
	if c.Seconds == 0 {
		return 0
	}
	return c.CPUSeconds[process] / c.Seconds
}

// busiest names the process that used the most CPU in a run.
func busiest(c catchUp, cores int) string {
	name, most := "", -1.0
	for _, p := range slices.Sorted(maps.Keys(c.CPUSeconds)) {
		if v := coresOf(c, p); v > most {
			name, most = p, v
		}
	}
	if name == "" {
		return "not measured"
	}
	return fmt.Sprintf("%s, %.2f of %d cores", name, most, cores)
}

// steadyLength is how long st's steady run was planned to be.
func steadyLength(o options, st steadyState) time.Duration {
	switch {
	case st.Sink == config.SinkBigQuery:
		return o.EmulatorSteadyFor
	case st.Survivor:
		return o.SurvivorFor
	}
	return o.SteadyFor
}

// killAt is when a steady run of length kills its worker: three quarters
// in, or a minute before the end of a run of five minutes or more.
func killAt(length time.Duration) time.Duration {
	if length >= 5*time.Minute {
		return length - time.Minute
	}
	return length * 3 / 4
}

// cpuBudget compares the CPU the headline discard run used, every process
// together, with the plain loop's, and says where the worker's went: on a
// machine whose cores the run keeps busy, the orchestration overhead is
// the extra CPU.
func cpuBudget(disc, loop catchUp, p runProfile) string {
	sum := func(c catchUp) float64 {
		t := 0.0
		for _, v := range c.CPUSeconds {
			t += v
		}
		return t
	}
	if disc.Seconds == 0 || loop.Seconds == 0 {
		return ""
	}
	var b strings.Builder
	procs := func(c catchUp) string {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(c.CPUSeconds)) {
			parts = append(parts, fmt.Sprintf("%s %.1f", name, c.CPUSeconds[name]))
		}
		return strings.Join(parts, ", ")
	}
	fmt.Fprintf(&b, "\nCPU for the same %d events, every process together: the workflow run (discard sink, batches of %d) used %.1f CPU-seconds (%s), the plain loop %.1f (%s; the loop's activities run in bench+kafka).",
		disc.Events, disc.BatchSize, sum(disc), procs(disc), sum(loop), procs(loop))
	if disc.Batches > 0 {
		fmt.Fprintf(&b, " The Temporal server used %.0f ms of CPU a batch.", 1000*disc.CPUSeconds["temporal"]/float64(disc.Batches))
	}
	if server := disc.CPUSeconds["temporal"]; server > 0 {
		// On saturated cores time follows CPU: the loop's work plus the
		// server's is a floor under the workflow run's time.
		fmt.Fprintf(&b, " Both runs keep the machine's cores busy (the workflow run %.2f, the loop %.2f). On cores that busy, time follows CPU: the server's %.1f CPU-seconds alone, added to the loop's %.1f, put the overhead at about %.0f %%, however little the worker added to the loop's work.",
			sum(disc)/disc.Seconds, sum(loop)/loop.Seconds, server, sum(loop), 100*server/(sum(loop)+server))
	}
	b.WriteString("\n")
	if len(p.Parts) > 0 {
		total := 0.0
		for _, part := range p.Parts {
			total += part.WorkerS
		}
		fmt.Fprintf(&b, "\nWhere the CPU went, from CPU profiles of the worker (over %.0f s, %.1f CPU-seconds) and of the plain loop, each ingesting the same %d events at batches of %d into the discard sink, in a run of its own that is not timed (profiling slows what it profiles). "+
			"The activities are the same code in both; the loop's process also runs the Kafka broker, which is left out.\n\n| part | worker CPU-s | share of the worker | plain loop CPU-s | worker / loop |\n|---|---|---|---|---|\n",
			p.Seconds, total, p.Events, p.BatchSize)
		var workerActs, loopActs float64
		for _, part := range p.Parts {
			loopS, ratio := "-", "-"
			if part.LoopS > 0 {
				loopS, ratio = fmt.Sprintf("%.2f", part.LoopS), fmt.Sprintf("%.2f", part.WorkerS/part.LoopS)
				workerActs, loopActs = workerActs+part.WorkerS, loopActs+part.LoopS
			}
			fmt.Fprintf(&b, "| %s | %.2f | %.1f %% | %s | %s |\n", part.Part, part.WorkerS, 100*part.WorkerS/max(total, 1e-9), loopS, ratio)
		}
		if loopActs > 0 {
			fmt.Fprintf(&b, "| the activities together | %.2f | %.1f %% | %.2f | %.2f |\n", workerActs, 100*workerActs/max(total, 1e-9), loopActs, workerActs/loopActs)
		}
		if p.WorkerProcS > 0 {
			fmt.Fprintf(&b, "\nThe profiled run's worker used %.1f CPU-seconds from start to caught up (by /proc), which the profile's %.1f cover.\n", p.WorkerProcS, total)
		}
		if len(p.Files) > 0 {
			fmt.Fprintf(&b, "\nThe profiles are kept beside this report: `%s` (`go tool pprof -top <file>`).\n", strings.Join(p.Files, "`, `"))
		}
	}
	if len(p.Server) > 0 {
		fmt.Fprintf(&b, "\nWhere the Temporal server's CPU went in the same %.0f s (`perf record -g` at %d Hz, samples sorted by the first of these their stack holds):\n\n| part | share |\n|---|---|\n", p.Seconds, perfHz)
		for _, sh := range p.Server {
			fmt.Fprintf(&b, "| %s | %.1f %% |\n", sh.Part, sh.Percent)
		}
	}
	return b.String()
}

// windowState says whether the survivor run's kill came after the
// lateness window had filled.
func windowState(o options, st steadyState) string {
	if w := config.DefaultAllowedLateness; killAt(steadyLength(o, st)) >= w {
		return fmt.Sprintf("after the %s window had filled", w)
	}
	return "before the window had filled"
}

// targetAvroShare is how fast catch-up of Avro records must be, as a
// share of JSON's.
const targetAvroShare = 0.9

// percents lists shares as "97.1, 95.3 %".
func percents(shares []float64) string {
	parts := make([]string, len(shares))
	for i, s := range shares {
		parts[i] = fmt.Sprintf("%.1f", 100*s)
	}
	return strings.Join(parts, ", ") + " %"
}

func allReconciled(runs []catchUp) bool {
	for _, r := range runs {
		if !r.Reconciled {
			return false
		}
	}
	return true
}
