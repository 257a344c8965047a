package pipeline

import (
	"path/filepath"
	"testing"

	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func loggingWorkflow(ctx workflow.Context) error {
	workflow.GetLogger(ctx).Info("from the workflow")
	return nil
}

// TestSDKLogLinesNameTheirCaller: lines the Temporal SDK logs through zap
// name the code that logged (here a workflow in this file), not the
// adapter in pipeline.go.
func TestSDKLogLinesNameTheirCaller(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	logger := sdkLogger(zap.New(core, zap.AddCaller()))
	logger.Info("direct")
	sdklog.With(logger, "k", "v").Info("through With")

	var s testsuite.WorkflowTestSuite
	s.SetLogger(logger)
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(loggingWorkflow)
	env.ExecuteWorkflow(loggingWorkflow)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"direct", "through With", "from the workflow"} {
		lines := logs.FilterMessage(msg).All()
		if len(lines) != 1 {
			t.Fatalf("%q logged %d times", msg, len(lines))
		}
		if file := filepath.Base(lines[0].Caller.File); file != "sdklog_test.go" {
			t.Errorf("%q names %s:%d as its caller, want this test file", msg, file, lines[0].Caller.Line)
		}
	}
}
