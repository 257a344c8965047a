package activities

import (
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/paystream/paystream/contract"
)

// byName maps each activity's contract name to its method: the worker
// registers exactly these, so an exported helper never becomes an
// activity by accident.
func (a *Activities) byName() map[string]any {
	return map[string]any{
		contract.ActivityPlanBatch:        a.PlanBatch,
		contract.ActivityDedup:            a.Dedup,
		contract.ActivityEnrich:           a.Enrich,
		contract.ActivityLoad:             a.Load,
		contract.ActivityCreateStreams:    a.CreateStreams,
		contract.ActivityNewPartitions:    a.NewPartitions,
		contract.ActivityDecideReplay:     a.DecideReplay,
		contract.ActivityLoadReplay:       a.LoadReplay,
		contract.ActivityHoldMembership:   a.HoldMembership,
		contract.ActivityTerminateBatch:   a.TerminateBatch,
		contract.ActivityReleaseWorkflows: a.ReleaseWorkflows,
	}
}

// Register puts every activity of contract.Activities on a worker under
// its contract name.
func Register(w worker.ActivityRegistry, a *Activities) {
	for name, fn := range a.byName() {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}
