package activities

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/paystream/paystream/contract"
)

// TestALeaseRunsOnlyOnTheWorkersOwnQueue: a HoldMembership scheduled on
// a queue that is not the worker's own (the test suite's task queue here,
// as the shared queue would be) fails at once, naming both queues, and is
// not retried; on its own queue the lease runs its time.
func TestALeaseRunsOnlyOnTheWorkersOwnQueue(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &Activities{Queue: "paystream/w1"}
	env.RegisterActivity(a)
	_, err := env.ExecuteActivity(a.HoldMembership, time.Millisecond)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != contract.ErrTypeLeaseRefused || !app.NonRetryable() ||
		!strings.Contains(err.Error(), `"paystream/w1"`) || !strings.Contains(err.Error(), `"default-test-taskqueue"`) {
		t.Fatalf("a lease on another queue: %v; want a non-retryable %s naming both queues", err, contract.ErrTypeLeaseRefused)
	}

	own := &Activities{Queue: "default-test-taskqueue"}
	env = s.NewTestActivityEnvironment()
	env.RegisterActivity(own)
	if _, err := env.ExecuteActivity(own.HoldMembership, 10*time.Millisecond); err != nil {
		t.Fatalf("a lease on the worker's own queue: %v", err)
	}
}

// TestALeaseBeatsOnTheServersClock: each lease heartbeat carries when it
// was sent, counted from the attempt's start as the server stamped it,
// so that the pool can tell beats a server could not record from a
// worker that stopped beating (workflows.missedInOutage).
func TestALeaseBeatsOnTheServersClock(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &Activities{Queue: "default-test-taskqueue"}
	env.RegisterActivity(a)
	var beats []contract.LeaseBeat
	var started time.Time
	env.SetOnActivityHeartbeatListener(func(info *activity.Info, details converter.EncodedValues) {
		var b contract.LeaseBeat
		if err := details.Get(&b); err != nil {
			t.Errorf("a lease beat without its time: %v", err)
		}
		started, beats = info.StartedTime, append(beats, b)
	})
	if _, err := env.ExecuteActivity(a.HoldMembership, 2*leaseBeat+leaseBeat/2); err != nil {
		t.Fatal(err)
	}
	if len(beats) == 0 { // the test suite sends on at most one of the SDK's throttled beats
		t.Fatal("no beat in two and a half beat intervals")
	}
	for i, b := range beats {
		if b.At.Before(started.Add(leaseBeat)) || i > 0 && !b.At.After(beats[i-1].At) {
			t.Errorf("beat %d at %v (attempt started %v, beats %v); want each a beat or more after the start, later than the one before", i, b.At, started, beats)
		}
	}
}
