package workflows

import (
	"go.temporal.io/sdk/worker"

	"github.com/paystream/paystream/activities"
)

// Register puts paystream's workflows and acts on a worker.
func Register(w worker.Registry, acts *activities.Activities) {
	w.RegisterWorkflow(PartitionIngest)
	w.RegisterWorkflow(TopicSupervisor)
	w.RegisterWorkflow(WorkerPool)
	w.RegisterWorkflow(MicroBatch)
	w.RegisterWorkflow(ReplayQuarantine)
	w.RegisterWorkflow(QuarantineReplays)
	w.RegisterActivity(acts)
}
