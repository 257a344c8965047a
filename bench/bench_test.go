package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/testtier"
)

// TestSmoke runs the whole benchmark in smoke mode, so it never rots. It
// asserts what every figure must be made of (runs that reconciled, counts,
// samples), never how fast anything was: times on shared machines are noise.
func TestSmoke(t *testing.T) {
	testtier.NeedsServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o := smokeOptions()
	o.OutDir, o.Quiet, o.MicroTime = t.TempDir(), true, "1x"
	rep, err := measure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := rep.write(o.OutDir)
	if err != nil {
		t.Fatal(err)
	}

	// 2 sinks x 1 batch size, plus the loop.
	if got, want := len(rep.CatchUp), 2*len(o.BatchSizes)+len(o.Partitions)-1+1; got != want {
		t.Errorf("%d catch-up configurations, want %d", got, want)
	}
	for _, r := range append(rep.Runs, rep.Loader) {
		if !r.Reconciled {
			t.Errorf("%s/%s run did not reconcile: %v", r.Driver, r.Sink, r.Mismatches)
		}
		if r.Events != o.Events && r.Events != o.EmulatorEvents && r.Driver != "loader" {
			t.Errorf("%s/%s run ingested %d events, produced %d", r.Driver, r.Sink, r.Events, o.Events)
		}
		if r.EventsPerS <= 0 || r.Seconds <= 0 {
			t.Errorf("%s/%s run has no rate: %+v", r.Driver, r.Sink, r)
		}
	}
	for _, r := range rep.CatchUp {
		if r.Driver == "temporal" && r.WorkerPeakMB <= 0 {
			t.Errorf("temporal run without the worker's memory: %+v", r)
		}
	}
	if rep.Loader.Events != min(o.LoaderEvents, o.EmulatorEvents) {
		t.Errorf("plain loader loaded %d events' rows, want %d", rep.Loader.Events, min(o.LoaderEvents, o.EmulatorEvents))
	}
	if rep.Overhead.LoopEventsPerS <= 0 || rep.Overhead.TemporalEventsPerS <= 0 || len(rep.Overhead.PairOverheads) != o.Runs {
		t.Errorf("overhead not measured over %d pairs: %+v", o.Runs, rep.Overhead)
	}
	for _, tc := range []temporalCost{rep.Temporal, rep.TemporalDiscard} {
		if tc.Batches == 0 || tc.HistoryEvents < 10*tc.Batches || tc.HistoryBytes == 0 {
			t.Errorf("temporal cost implausible: %+v", tc)
		}
		// Every batch decides and loads, so those parts take time; the
		// others may be near zero but, read from event times, never less.
		if bd := tc.Breakdown; bd.DecideS <= 0 || bd.LoadS <= 0 || bd.OtherS < 0 || bd.GapS < 0 || bd.PlanWaitS < 0 {
			t.Errorf("batch time breakdown not measured: %+v", bd)
		}
	}
	// Both profiles saw the activities run: the worker's over its whole
	// run, the loop's over its own. (A smoke run's activities take tens
	// of milliseconds, a few samples, so one activity may have none.)
	var workerActs, loopActs float64
	for i, p := range rep.Profile.Parts {
		if i < activityParts {
			workerActs, loopActs = workerActs+p.WorkerS, loopActs+p.LoopS
		}
	}
	if len(rep.Profile.Parts) <= activityParts || workerActs <= 0 || loopActs <= 0 {
		t.Errorf("CPU profiles by part: worker activities %.2f s, loop's %.2f s: %+v", workerActs, loopActs, rep.Profile)
	}
	if len(rep.Profile.Files) != 2 {
		t.Errorf("profiles kept beside the report: %q, want the worker's and the loop's", rep.Profile.Files)
	}
	for _, f := range rep.Profile.Files {
		if st, err := os.Stat(filepath.Join(o.OutDir, f)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
	for _, s := range []steadyState{rep.Steady, rep.SteadyDiscard, rep.SteadySurvivor} {
		checkSteady(t, o, s)
	}
	if len(rep.WriteModes) != 2 {
		t.Fatalf("write modes measured: %+v, want load and storagewrite", rep.WriteModes)
	}
	for i, f := range rep.WriteModes {
		if f.Mode != writeModesCompared[i] || f.CatchUp.WriteMode != f.Mode || !f.CatchUp.Reconciled || f.CatchUp.EventsPerS <= 0 || f.CatchUp.Events != o.EmulatorEvents {
			t.Errorf("write mode %s catch-up: %+v", f.Mode, f.CatchUp)
		}
		if len(f.Steady) != len(o.WriteModeRates) {
			t.Fatalf("write mode %s: %d steady runs, want %d", f.Mode, len(f.Steady), len(o.WriteModeRates))
		}
		for j, st := range f.Steady {
			if st.WriteMode != f.Mode || st.Rate != float64(o.WriteModeRates[j]) {
				t.Errorf("write mode %s steady run %d: mode %q at %.0f events/s", f.Mode, j, st.WriteMode, st.Rate)
			}
			checkSteady(t, o, st)
		}
	}
	if !rep.SteadySurvivor.Survivor {
		t.Errorf("no survivor run: %+v", rep.SteadySurvivor)
	}
	checkRecovery(t, o, rep.Recovery)
	checkCost(t, o, rep)
	if rep.Steady.Sink != "bigquery" || rep.SteadyDiscard.Sink != "discard" {
		t.Errorf("steady runs' sinks: %q and %q", rep.Steady.Sink, rep.SteadyDiscard.Sink)
	}
	names := map[string]bool{}
	for _, m := range rep.Micro {
		names[m.Name] = m.NsPerOp > 0
	}
	for _, n := range []string{"Parse", "WindowObserve", "WindowBytesPerEntry", "Score"} {
		if !names[n] {
			t.Errorf("micro-benchmark %s missing or without ns/op: %+v", n, rep.Micro)
		}
	}
	if rep.Dedup.BytesPerEntry <= 0 {
		t.Errorf("dedup bytes per entry not measured")
	}

	// The files: JSON that reads back, an SVG that is XML, a summary
	// with every target row.
	b, err := os.ReadFile(paths.json)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b, &back); err != nil || back.Steady.Events != rep.Steady.Events {
		t.Errorf("results JSON does not read back: %v", err)
	}
	svg, err := os.ReadFile(paths.chart)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{})); err != nil {
		t.Errorf("chart is not well-formed SVG: %v", err)
	}
	md, err := os.ReadFile(paths.markdown)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"catch-up, emulator sink", "discard sink", "latency p99", "orchestration overhead", "peak RSS", "recovery after SIGKILL", "on the survivor", "Smoke mode", "Where the CPU went", "History events a batch adds", "## Write modes", "storagewrite mode", "## Recovery", "queue lost", "## Temporal cost", "actions a batch by kind", "## Scaling with partitions"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if !strings.Contains(string(md), "What limits the catch-up figures") {
		t.Errorf("summary lacks the limits")
	}
	// --render writes the same summary from the JSON alone.
	if err := render(paths.json); err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(paths.markdown)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(md) {
		t.Errorf("--render wrote another summary than the run:\n%s\n---\n%s", again, md)
	}
	if rep.Machine.Cores <= 0 || rep.Machine.CPUModel == "" {
		t.Errorf("machine not recorded: %+v", rep.Machine)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"--smoke", "--batch-sizes", "100,200"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Smoke || o.Events != smokeOptions().Events || len(o.BatchSizes) != 2 || o.BatchSizes[1] != 200 {
		t.Errorf("options = %+v", o)
	}
	if o, err := parseOptions([]string{"--only", "steady,micro"}); err != nil || !o.measures("steady") || o.measures("catch-up") {
		t.Errorf("--only steady,micro: %v, options %+v", err, o)
	}
	for _, bad := range [][]string{{"--batch-sizes", "x"}, {"--events", "5"}, {"--partitions", "0"}, {"--steady-for", "1s"}, {"--only", "steady,fast"}, {"--worker-memory-limit", "lots"}} {
		if _, err := parseOptions(bad); err == nil {
			t.Errorf("parseOptions(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("parseOptions(%q): error is not one line: %q", bad, err)
		}
	}
}

func checkSteady(t *testing.T, o options, s steadyState) {
	t.Helper()
	if want := int(s.Rate * steadyLength(o, s).Seconds()); s.Rate <= 0 || s.Events != want {
		t.Errorf("steady run (%s) produced %d events, want %d", s.Sink, s.Events, want)
	}
	if !s.Reconciled {
		t.Errorf("steady run (worker killed) did not reconcile: %v", s.Mismatches)
	}
	if !(0 < s.LatencyP50 && s.LatencyP50 <= s.LatencyP95 && s.LatencyP95 <= s.LatencyP99 && s.LatencyP99 <= s.LatencyMax) {
		t.Errorf("latency percentiles out of order: %+v", s)
	}
	if s.LoadP50S <= 0 || s.WindowRestoredBy == "" || s.Cores["worker"] <= 0 {
		t.Errorf("steady run (%s): load time %.2f s, windows restored by %q, worker cores %.2f: not read from the worker's log or /proc",
			s.Sink, s.LoadP50S, s.WindowRestoredBy, s.Cores["worker"])
	}
	if s.RecoveryMaxS <= 0 || s.RecoveryMedianS <= 0 || len(s.RSS) == 0 || s.PeakRSSMB <= 0 {
		t.Errorf("recovery or memory not measured: recovery %.1f/%.1f s, %d RSS samples", s.RecoveryMaxS, s.RecoveryMedianS, len(s.RSS))
	}
	if s.DedupWindowMB <= 0 {
		t.Errorf("steady run (%s): the dedup windows' memory outside the heap was not read from /metrics", s.Sink)
	}
	// The heap profile's summary and at least one holder.
	if len(s.HeapTop) < 3 || !strings.HasPrefix(s.HeapTop[0], "Showing nodes") {
		t.Errorf("steady run (%s): no heap profile summary: %q", s.Sink, s.HeapTop)
	}
}

// TestOverheadIsTheMedianPair pairs each workflow run with the loop run
// made right after it, in order, not with the loops' median.
func TestOverheadIsTheMedianPair(t *testing.T) {
	rate := func(rs ...float64) []catchUp {
		var out []catchUp
		for _, r := range rs {
			out = append(out, catchUp{EventsPerS: r})
		}
		return out
	}
	var oh overhead
	// The machine slows down over the runs; each pair costs 10 % or 20 %.
	oh.setPairs(rate(90, 64, 45), rate(100, 80, 50))
	want := []float64{0.1, 0.2, 0.1}
	if len(oh.PairOverheads) != len(want) {
		t.Fatalf("pairs %v, want %v", oh.PairOverheads, want)
	}
	for i := range want {
		if math.Abs(oh.PairOverheads[i]-want[i]) > 1e-9 {
			t.Errorf("pair %d: %.3f, want %.3f", i, oh.PairOverheads[i], want[i])
		}
	}
	// The medians (64 and 80) would say 20 %.
	if math.Abs(oh.Overhead-0.1) > 1e-9 {
		t.Errorf("overhead %.3f, want the median pair's 0.100", oh.Overhead)
	}
}

// checkRecovery: every kind of recovery run ran, recovered, reconciled,
// and its steps follow each other in time.
func checkRecovery(t *testing.T, o options, kinds []recoveryFigures) {
	t.Helper()
	if len(kinds) != 3 {
		t.Fatalf("recovery measured for %d kinds, want 3: %+v", len(kinds), kinds)
	}
	for _, f := range kinds {
		if len(f.Runs) != o.RecoveryRuns || f.MedianMaxS <= 0 {
			t.Errorf("recovery, %s: %d runs, median %.2f s (errors %v); want %d runs that recovered", f.kind(), len(f.Runs), f.MedianMaxS, f.Errors, o.RecoveryRuns)
			continue
		}
		for _, r := range f.Runs {
			bd := r.Breakdown
			if !r.Reconciled || bd == nil {
				t.Errorf("recovery, %s: reconciled %v, breakdown %v", f.kind(), r.Reconciled, bd)
				continue
			}
			// The batch that recovered started, was picked up, decided
			// and completed, in that order; its ledger row shows before
			// it completes (the offset commit comes after) but not before
			// it decided.
			steps := []float64{bd.BatchStartedS, bd.PickedUpS, bd.DecidedS, bd.BatchDoneS}
			if bd.BatchStartedS <= 0 || !slices.IsSorted(steps) || bd.VisibleS < bd.DecidedS || math.Abs(bd.VisibleS-r.MaxS) > 0.01 {
				t.Errorf("recovery, %s: breakdown %s out of order or incomplete (recovery %.2f s)", f.kind(), bd, r.MaxS)
			}
			if bd.LostS <= 0 || bd.LostS > bd.BatchStartedS {
				t.Errorf("recovery, %s: the partition was not told its queue was lost before its batch started again: %s", f.kind(), bd)
			}
		}
	}
}

// checkCost: the cost runs and the scaling curve ran without a kill,
// reconciled, and counted what Temporal bills: a batch is at least a
// child's start (2), an activity (1) and its decisions' markers (1).
func checkCost(t *testing.T, o options, rep *report) {
	t.Helper()
	if rep.Scaling == nil {
		t.Fatal("no scaling curve")
	}
	runs := slices.Concat(rep.Cost, rep.Scaling.Steady)
	if want := len(o.CostRates) + len(o.ScalingRates)*len(o.ScalingPartitions); len(runs) != want {
		t.Errorf("%d cost and scaling runs, want %d", len(runs), want)
	}
	for _, st := range runs {
		c := st.Cost
		if c == nil || !st.Reconciled || st.RecoveryMaxS != 0 {
			t.Errorf("%s run at %.0f events/s on %d partitions: cost %+v, reconciled %v, recovery %.1f s (no kill was asked for)", st.Sink, st.Rate, st.Partitions, c, st.Reconciled, st.RecoveryMaxS)
			continue
		}
		if c.Batches == 0 || c.ActionsPerBatch < 4 || c.ActionsByKind["child workflow started"] < 2 || c.ActionsByKind["local activities"] < 1 {
			t.Errorf("%s run: billed actions implausible: %+v", st.Sink, c)
		}
		if c.Events != st.Events || c.ServerCPUMsPer1000 <= 0 || c.ActionsPerS <= 0 || c.DollarsPerMillion <= 0 || c.Note != "" {
			t.Errorf("%s run: cost figures missing: %+v", st.Sink, c)
		}
		if math.Abs(c.DollarsPerMillion-c.ActionsPerMillion*dollarsPerMillionActions/1e6) > 1e-9 {
			t.Errorf("dollars %.4f do not follow from %.0f actions a million", c.DollarsPerMillion, c.ActionsPerMillion)
		}
	}
	if len(rep.Scaling.CatchUp) != len(o.ScalingPartitions) {
		t.Errorf("scaling catch-up runs: %d, want %d", len(rep.Scaling.CatchUp), len(o.ScalingPartitions))
	}
	for i, c := range rep.Scaling.CatchUp {
		if c.Partitions != o.ScalingPartitions[i] || !c.Reconciled || c.EventsPerS <= 0 {
			t.Errorf("scaling catch-up on %d partitions: %+v", o.ScalingPartitions[i], c)
		}
	}
}
