// Package workflows holds paystream's Temporal workflows: PartitionIngest,
// one per Kafka partition, plans contiguous offset ranges and runs a
// MicroBatch child for each; MicroBatch dedups, enriches and loads one range.
// Their inputs and results are offsets, IDs, counts and scores: the events
// stay in Kafka (docs/design.md §3).
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/searchattr"
)

// decide runs Dedup on the batch as a local activity, and Enrich after it
// for batches from before Load scored them (Spec.FraudRules 0).
func decide(ctx workflow.Context, spec contract.Spec) (contract.Decisions, contract.Enrichment, error) {
	var d contract.Decisions
	var enr contract.Enrichment
	if err := workflow.ExecuteLocalActivity(withLocalSummary(ctx, dedupSummary(spec)), contract.ActivityDedup, spec).Get(ctx, &d); err != nil {
		return d, enr, err
	}
	if spec.FraudRules > 0 {
		return d, enr, nil // Load scores with that rule set
	}
	err := workflow.ExecuteLocalActivity(withLocalSummary(ctx, enrichSummary(d)), contract.ActivityEnrich, spec, d).Get(ctx, &enr)
	return d, enr, err
}

// withLocalSummary gives Dedup and Enrich readOptions' timeout and retries
// as local activities.
func withLocalSummary(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: readOptions.StartToCloseTimeout,
		RetryPolicy:         readOptions.RetryPolicy,
		Summary:             summary,
	})
}

// heartbeatTimeout is how soon an activity whose worker died or stalled
// is retried elsewhere when nothing else notices: the pool moves a dead
// worker's partitions, and ends their batches, within seconds. Activities
// send no heartbeat in their first 4 s, each being a billed action
// (activities.heartbeatQuiet), then one every 80 % of this.
const heartbeatTimeout = 8 * time.Second

// Activity options, set deliberately:
//   - retries never stop on their own (a batch must not be skipped), backing
//     off to a minute, except for errors retrying cannot fix; the first
//     comes after a quarter second, not a second, because the common
//     retry is of an activity whose worker died, and every second of
//     that wait is a second of recovery;
//   - heartbeat timeouts catch a dead or stalled worker within seconds, so
//     a retry runs elsewhere (a zombie that wakes up later cannot write
//     twice: load job IDs decide).
var (
	retry = &temporal.RetryPolicy{
		InitialInterval:        250 * time.Millisecond,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: []string{contract.ErrTypeOffsetOutOfRange, contract.ErrTypeLoadFailed},
	}
	readOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute, // a cold rebuild reads a whole window
		HeartbeatTimeout:    heartbeatTimeout, // they heartbeat every 5,000 records
		RetryPolicy:         retry,
	}
	loadOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    heartbeatTimeout, // every second while it runs (activities.keepAlive)
		RetryPolicy:         retry,
	}
)

// MicroBatch runs one batch: Dedup and Enrich decide, once, recorded in
// history; Load applies the decisions to every table, idempotently.
//
// Dedup and Enrich run as local activities: their results are recorded
// in history as markers, exactly as activity results are, but they run in
// the worker's own workflow task, which saves the server two activity
// tasks and two workflow tasks per batch (the orchestration overhead the
// benchmark measures) and keeps the parsed batch on the worker that
// decides it. A worker dying inside one loses its workflow task, which
// another worker takes after batchTaskTimeout.
func MicroBatch(ctx workflow.Context, spec contract.Spec) (contract.Result, error) {
	workflow.SetCurrentDetails(ctx, "Deciding duplicates and late records of "+batchSummary(spec))
	d, enr, err := decide(ctx, spec)
	if err != nil {
		return contract.Result{}, err
	}
	workflow.SetCurrentDetails(ctx, "Loading: "+loadSummary(d))
	var totals contract.Totals
	loadCtx := withSummary(ctx, loadOptions, loadSummary(d))
	if err := workflow.ExecuteActivity(loadCtx, contract.ActivityLoad, contract.LoadInput{Spec: spec, Decisions: d, Enrichment: enr}).Get(ctx, &totals); err != nil {
		return contract.Result{}, err
	}
	// Counts become searchable in the web UI once the batch is done,
	// where the operator asked for it (a billed action a batch).
	if !spec.NoCountAttributes {
		_ = workflow.UpsertTypedSearchAttributes(ctx,
			searchattr.BatchLoaded.ValueSet(float64(totals.Loaded)),
			searchattr.BatchDuplicates.ValueSet(float64(totals.Duplicates)),
			searchattr.BatchRejected.ValueSet(float64(totals.Errors+totals.Late)),
		)
	}
	workflow.SetCurrentDetails(ctx, totalsDetails(spec, totals))
	return contract.Result{BatchID: spec.ID(), Totals: totals, Next: d.Next, Schemas: d.Schemas}, nil
}
