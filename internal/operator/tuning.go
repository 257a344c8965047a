package operator

import "time"

// Tuning is how big batches are and how ingestion waits when caught up.
type Tuning struct {
	MaxRecords int
	MaxBytes   int64
	PollFor    time.Duration
	// Linger is how long a batch short of MaxRecords waits to fill (see
	// contract.PlanInput).
	Linger time.Duration
	// MaxBatchesPerRun forces continue-as-new that often (0: the
	// workflow's default); tests use it to cross run boundaries.
	MaxBatchesPerRun int
	// SearchableCounts upserts each batch's counts as search attributes
	// (BatchLoaded, BatchDuplicates, BatchRejected) when it is done: one
	// billed Temporal action a batch more.
	SearchableCounts bool
	// SuperviseEvery is how often the topic's supervisor looks for added
	// partitions (0: contract.DefaultSuperviseEvery).
	SuperviseEvery time.Duration
}

// DefaultTuning: every batch costs Temporal a workflow and BigQuery a load
// job per table, whatever its size, so batches are large when there is a
// backlog; a linger of 4 s, less what the partition's batches take to
// write, keeps a live stream's records within the 5 s latency target at
// p99 in as few batches as that allows (docs/performance.md has the
// measurements behind the sizes).
func DefaultTuning() Tuning {
	return Tuning{MaxRecords: 20000, MaxBytes: 16 << 20, PollFor: 5 * time.Second, Linger: 4 * time.Second}
}
