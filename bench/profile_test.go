package main

import (
	"testing"
	"time"
)

// TestClassifySortsSamplesByPart: a sample counts for the engine's
// operation on its stack (the worker's activities call the engine, as the
// plain loop does) before the SDK frames that called it; the rest by GC,
// SDK or other.
func TestClassifySortsSamplesByPart(t *testing.T) {
	traces := `File: worker
Type: cpu
-----------+-------------------------------------------------------
      30ms   runtime.mallocgc (inline)
             github.com/paystream/paystream/internal/payment.Parse
             github.com/paystream/paystream/internal/engine.(*Engine).Plan
             github.com/paystream/paystream/activities.(*Activities).PlanBatch
             go.temporal.io/sdk/internal.executeFunction
-----------+-------------------------------------------------------
     1.20s   runtime.scanObject
             runtime.gcBgMarkWorker
-----------+-------------------------------------------------------
      20ms   compress/flate.(*compressor).deflate
             google.golang.org/grpc.compress
-----------+-------------------------------------------------------
      10ms   syscall.Syscall6
-----------+-------------------------------------------------------
      40ms   runtime.memmove
             github.com/paystream/paystream/internal/warehouse.NDJSON
             github.com/paystream/paystream/internal/engine.(*Engine).Write
             main.(*env).loopRun.func1
-----------+-------------------------------------------------------
`
	names := workerParts.names()
	byPart, total, err := classify([]byte(traces))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		names[0]:          30 * time.Millisecond,
		names[2]:          40 * time.Millisecond,
		names[3]:          1200 * time.Millisecond,
		names[4]:          20 * time.Millisecond,
		workerParts.other: 10 * time.Millisecond,
	}
	if total != 1300*time.Millisecond || len(byPart) != len(want) {
		t.Fatalf("total %v, parts %v; want 1.3s in %v", total, byPart, want)
	}
	for part, d := range want {
		if byPart[part] != d {
			t.Errorf("%s: %v, want %v", part, byPart[part], d)
		}
	}
}

// TestClassifyPerfSortsServerSamples: a visibility write counts as
// visibility although persistence frames are on its stack; a history
// write as persistence though the history service called it.
func TestClassifyPerfSortsServerSamples(t *testing.T) {
	script := `temporal 1 1.0:    2004008 cpu-clock:ppp: 
	          1 modernc.org/sqlite/lib._sqlite3VdbeExec+0x1 (/bin/temporal)
	          2 go.temporal.io/server/common/persistence/visibility.(*visibilityManagerImpl).RecordWorkflowExecutionStarted+0x1 (/bin/temporal)

temporal 1 1.1:    2004008 cpu-clock:ppp: 
	          1 modernc.org/sqlite/lib._sqlite3VdbeExec+0x1 (/bin/temporal)
	          2 go.temporal.io/server/common/persistence.(*executionManagerImpl).UpdateWorkflowExecution+0x1 (/bin/temporal)
	          3 go.temporal.io/server/service/history.(*historyEngineImpl).RespondWorkflowTaskCompleted+0x1 (/bin/temporal)

temporal 1 1.2:    2004008 cpu-clock:ppp: 
	          1 go.temporal.io/server/service/matching.(*matchingEngineImpl).AddActivityTask+0x1 (/bin/temporal)

temporal 1 1.3:    2004008 cpu-clock:ppp: 
	ffffffff pvm_irq_enable+0x1 ([kernel.kallsyms])
`
	got := map[string]float64{}
	for _, s := range classifyPerf(script) {
		got[s.Part] = s.Percent
	}
	names := serverParts.names()
	want := map[string]float64{names[0]: 25, names[1]: 25, names[2]: 25, serverParts.other: 25}
	for part, pct := range want {
		if got[part] != pct {
			t.Errorf("%s: %.0f %%, want %.0f %% (all: %v)", part, got[part], pct, got)
		}
	}
	if classifyPerf("\n\n") != nil {
		t.Error("no samples gave shares")
	}
}
