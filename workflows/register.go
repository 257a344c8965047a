package workflows

import "go.temporal.io/sdk/worker"

// Register puts paystream's workflows on a worker; the activities they
// call by name are registered by activities.Register.
func Register(w worker.WorkflowRegistry) {
	w.RegisterWorkflow(PartitionIngest)
	w.RegisterWorkflow(TopicSupervisor)
	w.RegisterWorkflow(WorkerPool)
	w.RegisterWorkflow(MicroBatch)
	w.RegisterWorkflow(ReplayQuarantine)
	w.RegisterWorkflow(QuarantineReplays)
	w.RegisterWorkflow(Backfill)
}
