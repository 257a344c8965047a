package activities

import (
	"errors"
	"strings"
	"testing"
	"time"

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
