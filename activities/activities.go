// Package activities adapts the worker's engine (internal/engine) to
// Temporal: each activity attaches a heartbeat observer, calls the engine,
// and makes the engine's permanent errors non-retryable. The pool's lease
// and its two repairs (pool.go) are the only activities of their own.
package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/engine"
)

// Activities are registered on the worker as one struct (see Register).
type Activities struct {
	// Engine does the work; nil only where activities are registered and
	// never run (workflow tests).
	Engine *engine.Engine
	// Temporal ends batches stranded on a worker that left the pool and
	// releases workflows from a dead worker's sticky queue.
	Temporal client.Client
	// Queue is the worker's own task queue (contract.WorkerQueue): the
	// only one its pool lease may run on (HoldMembership). Empty: any.
	Queue string
}

// PlanBatch picks the end of the partition's next batch (engine.Plan).
func (a *Activities) PlanBatch(ctx context.Context, in contract.PlanInput) (contract.PlanResult, error) {
	res, err := a.Engine.Plan(observe(ctx), in)
	return res, adapt(err)
}

// Dedup decides the batch's duplicates and late records (engine.Decide).
func (a *Activities) Dedup(ctx context.Context, spec contract.Spec) (contract.Decisions, error) {
	d, err := a.Engine.Decide(observe(ctx), spec)
	return d, adapt(err)
}

// Enrich scores the batch's loaded records, for batches of builds that
// recorded scores (engine.Score).
func (a *Activities) Enrich(ctx context.Context, spec contract.Spec, d contract.Decisions) (contract.Enrichment, error) {
	out, err := a.Engine.Score(observe(ctx), spec, d)
	return out, adapt(err)
}

// Load writes the batch to every table and commits its offset
// (engine.Write).
func (a *Activities) Load(ctx context.Context, in contract.LoadInput) (contract.Totals, error) {
	if activity.GetInfo(ctx).Attempt > 1 {
		a.Engine.Metrics.LoadRetried("activity")
	}
	totals, err := a.Engine.Write(observe(ctx), in)
	return totals, adapt(err)
}

// CreateStreams creates a partition run's write streams in storagewrite
// mode (engine.CreateStreams).
func (a *Activities) CreateStreams(ctx context.Context, tables []string) (map[string]string, error) {
	names, err := a.Engine.CreateStreams(observe(ctx), tables)
	return names, adapt(err)
}

// NewPartitions returns where each partition added to the topic starts
// (engine.NewPartitions).
func (a *Activities) NewPartitions(ctx context.Context, in contract.PartitionsInput) ([]int64, error) {
	firsts, err := a.Engine.NewPartitions(observe(ctx), in)
	return firsts, adapt(err)
}

// DecideReplay decides which quarantined records a replay loads
// (engine.DecideReplay).
func (a *Activities) DecideReplay(ctx context.Context, in contract.ReplayInput) (contract.ReplayDecision, error) {
	d, err := a.Engine.DecideReplay(observe(ctx), in)
	return d, adapt(err)
}

// LoadReplay loads a replay's decided records (engine.WriteReplay).
func (a *Activities) LoadReplay(ctx context.Context, in contract.ReplayLoadInput) (contract.ReplayTotals, error) {
	totals, err := a.Engine.WriteReplay(observe(ctx), in)
	return totals, adapt(err)
}

// adapt makes an error that retrying cannot fix non-retryable, under its
// contract type, so that the workflow sees it at once.
func adapt(err error) error {
	var p *engine.Permanent
	if errors.As(err, &p) {
		return temporal.NewNonRetryableApplicationError(err.Error(), p.Type, p.Err)
	}
	return err
}

// heartbeatQuiet is how long an attempt runs before its first heartbeat.
// Each heartbeat that reaches the server is a billed Temporal action, and
// the SDK sends the first at once, so heartbeating from the start would
// bill nearly every plan and load; most end sooner. The workflows'
// heartbeat timeout (8 s) leaves room for it.
const heartbeatQuiet = 4 * time.Second

// heartbeats is the engine's observer in an activity: its progress
// becomes heartbeats past the attempt's first heartbeatQuiet (the SDK
// sends them on at most every 80 % of the heartbeat timeout), and its
// log lines name the workflow run and the attempt, the web UI's way to
// the batch. The quiet time counts on the worker's clock, so that a
// worker clock behind the server's cannot delay a first heartbeat past
// the timeout.
type heartbeats struct {
	ctx   context.Context
	began time.Time
}

func (h heartbeats) Progress(detail any) {
	if time.Since(h.began) >= heartbeatQuiet {
		activity.RecordHeartbeat(h.ctx, detail)
	}
}

func (h heartbeats) LogFields() []zap.Field {
	info := activity.GetInfo(h.ctx)
	return []zap.Field{zap.String("workflow_id", info.WorkflowExecution.ID), zap.String("run_id", info.WorkflowExecution.RunID),
		zap.Int32("attempt", info.Attempt)}
}

// observe attaches the heartbeat observer to an activity's context. The
// context must be the activity's own: the SDK sends a throttled heartbeat
// later with the context it was given, and one that has ended by then
// makes it cancel the whole activity.
func observe(ctx context.Context) context.Context {
	return engine.WithObserver(ctx, heartbeats{ctx: ctx, began: time.Now()})
}
