package contract

import (
	"fmt"
	"time"
)

// What the operator's client and the workflows pass each other: inputs,
// queries, updates and signals, and the workflow IDs they are sent to.

// SetBatchInput is set-batch's argument; a zero MaxBytes keeps the current.
type SetBatchInput struct {
	MaxRecords int
	MaxBytes   int64
}

// TopicBatch is the topic supervisor's answer to SetBatchUpdate: the
// batch size of the partitions it starts from then on, how many partitions
// it keeps (those at or past it it has yet to start), and how often it
// looks for new ones.
type TopicBatch struct {
	Partitions int
	MaxRecords int
	MaxBytes   int64
	Every      time.Duration
}

// ControlResult is every control update's answer: where the partition
// stands once the update took effect.
type ControlResult struct {
	Partition  int
	State      string
	Next       int64 // the next offset to ingest; every offset below is committed
	MaxRecords int
	MaxBytes   int64
}

// IngestInput is a partition's whole state, the PartitionIngest
// workflow's input: what it was started with (the settings, at the top)
// and what it keeps (the groups below). A run changes it in place and
// continue-as-new carries it whole to the next run: nothing is copied
// back. The groups are embedded, so on the wire, in every recorded
// history, it stays one flat object.
type IngestInput struct {
	Topic           string
	Partition       int
	MaxRecords      int // set-batch changes it and MaxBytes
	MaxBytes        int64
	AllowedLateness time.Duration
	// MaxWindowIDs bounds the partition's dedup window (Spec).
	MaxWindowIDs int `json:",omitempty"`
	// PollFor is how long PlanBatch waits for new records when caught up.
	PollFor time.Duration
	// Linger bounds how long a batch's first record waits before its
	// batch is written (PlanInput.Linger).
	Linger time.Duration
	// MaxBatchesPerRun continues-as-new after this many batches even if
	// Temporal does not suggest it yet (0: 500).
	MaxBatchesPerRun int
	// SearchableCounts makes each batch upsert its counts as search
	// attributes when done (Spec.NoCountAttributes).
	SearchableCounts bool `json:",omitempty"`
	// WriteMode is WriteModeStorageWrite for appends to COMMITTED
	// write streams (docs/design.md §3.4); anything else writes with load jobs.
	// Each run creates its own streams: continue-as-new rotates them.
	WriteMode string
	// Pool is the workflow ID of the worker pool that places the
	// partition on a worker (WorkerPool); empty: plans and batches run on
	// any worker of the partition's task queue.
	Pool string `json:",omitempty"`

	Cursor
	Done
	Control
	Spacing
	Retry
	Placement
}

// Cursor is where the partition continues, and its dedup window there.
type Cursor struct {
	Next   int64
	Window Window
	// Schemas are the registry schema IDs its records have named so far.
	Schemas Schemas `json:",omitzero"`
}

// Done is what the partition has ingested, for status.
type Done struct {
	BatchesDone int64
	RecordsDone int64
}

// Control is what the operator asked of the partition (pause, drain).
type Control struct {
	// Paused is an operator's pause.
	Paused bool
	// Draining is an operator's drain not yet done: the run closes at
	// the next batch boundary.
	Draining bool `json:",omitempty"`
}

// Spacing spaces the partition's batches so that all partitions together
// stay within the tables' daily load-job budget (BatchInterval); a batch
// planned after the wait takes up to MaxBatchRecords, what accumulated
// meanwhile. The supervisor widens it when partitions are added
// (BudgetSignal).
type Spacing struct {
	// MinBatchInterval is the spacing; 0: none.
	MinBatchInterval time.Duration `json:",omitempty"`
	// NextBatchAt is when the next batch may start under that spacing.
	NextBatchAt time.Time `json:",omitempty"`
}

// Retry is a failed batch waiting to run again.
type Retry struct {
	// Pending is a batch that failed at Next. It runs first, under the
	// same ID and range: re-planning the range could load its first
	// records under a second batch ID.
	Pending *Spec `json:",omitempty"`
	// Failures is how many times in a row Pending failed: the wait before
	// it runs again grows with it.
	Failures int `json:",omitempty"`
}

// Placement is where the pool last placed the partition (Assignment).
type Placement struct {
	// Queue is the task queue of the worker the pool assigned; empty: the
	// partition's own.
	Queue string `json:",omitempty"`
	// QueueSeq and QueuePool are the Seq and Pool of the pool's answer
	// that named Queue.
	QueueSeq  int64  `json:",omitempty"`
	QueuePool string `json:",omitempty"`
}

// Write modes (IngestInput.WriteMode): how Load writes to BigQuery.
const (
	WriteModeLoad         = "load"         // one load job per table and batch
	WriteModeStorageWrite = "storagewrite" // appends at offsets to COMMITTED streams (docs/design.md §3.4)
)

// Progress is what the "progress" query answers.
type Progress struct {
	Topic         string
	Partition     int
	Next          int64 // next offset to ingest = end of the last loaded batch
	HighWatermark int64 // the log's end when last planned
	BatchesDone   int64
	RecordsDone   int64
	LastBatch     string
	LastError     string
	CaughtUp      bool
	// OpenTransactionAt is the first offset of the open transaction the
	// partition waits on, when State is StateOpenTransaction.
	OpenTransactionAt int64 `json:",omitempty"`
	// State is one of the State* names; MaxRecords and MaxBytes the batch
	// size the next plan uses; EventsPerSecond the rate over the last
	// minute of batches, LastBatchAt when the last one completed.
	State string
	// Draining: a drain was asked of the run and it will close once its
	// batch in flight (or a failed one) has loaded; start waits for it.
	Draining        bool `json:",omitempty"`
	MaxRecords      int
	MaxBytes        int64
	EventsPerSecond float64
	LastBatchAt     time.Time
}

// LeaseBeat is what a worker's lease heartbeats: when the beat was sent,
// on the Temporal server's clock (the attempt's start, which the server
// stamps, plus the time since on the worker's monotonic clock). The pool
// compares it with when the lease's timeout reached it, to tell a worker
// that died from a server that could not record beats.
type LeaseBeat struct {
	At time.Time `json:"at"`
}

// PoolState is the pool, carried whole through continue-as-new.
type PoolState struct {
	// Members are the queues of the workers holding a lease, sorted.
	Members []string
	// Partitions maps each partition workflow's ID to its worker's queue
	// ("" while no worker is there to take it).
	Partitions map[string]string
	// Seq numbers the answers the pool has sent (Assignment.Seq).
	Seq int64 `json:",omitempty"`
}

// PoolWant is a partition asking for its worker. Queue is the one it has,
// if any: kept when that worker is still in the pool.
type PoolWant struct {
	WorkflowID string
	Queue      string
	// Pool is the pool run whose answer the partition holds, when it
	// announces itself again (every minute, or when its worker stopped
	// taking tasks): a pool run started afresh learns it so, and one that
	// already placed it there answers nothing. Empty on a run's first ask,
	// which is always answered.
	Pool string `json:",omitempty"`
}

// Assignment tells a partition which worker's queue to run on. Lost, when
// set, is its previous queue, whose worker has left the pool: work
// scheduled there will never start and must be moved.
type Assignment struct {
	Queue string
	Lost  string `json:",omitempty"`
	// Seq orders the pool's answers: signals from one workflow may arrive
	// out of order, and a stale answer must not move a partition back to
	// a worker that has left.
	Seq int64 `json:",omitempty"`
	// Pool is the pool's first run ID: a pool started afresh counts its
	// answers from the start again.
	Pool string `json:",omitempty"`
}

// ReplayOutcome is what QuarantineReplays did with one batch.
type ReplayOutcome struct {
	ReplayID string
	Already  bool // replayed before; nothing was loaded now
	Totals   ReplayTotals
}

// SuperviseInput is a topic supervisor's state, carried whole through
// continue-as-new.
type SuperviseInput struct {
	Topic string
	// Partitions is how many of the topic's partitions have a
	// PartitionIngest (those below it were started by `starter start`
	// or by this supervisor).
	Partitions int
	// Template is the input every new partition starts with; its
	// Partition, Next and Window are set per partition.
	Template IngestInput
	// Every is how often the topic is looked at (0: DefaultSuperviseEvery).
	Every time.Duration
	// LoadJobBudget is the load jobs a table may take a day, shared by
	// the topic's partitions (0: no spacing). When partitions are added
	// the supervisor spaces every partition's batches anew for the count.
	LoadJobBudget int `json:",omitempty"`
}

// BatchInterval spaces each of partitions partitions' batches so that
// together, each batch writing every table once, they take at most
// budget load jobs a table a day. 0 when there is no budget.
func BatchInterval(partitions, budget int) time.Duration {
	if budget <= 0 || partitions <= 0 {
		return 0
	}
	return 24 * time.Hour * time.Duration(partitions) / time.Duration(budget)
}

// Budget is what BudgetSignal carries: the topic's partition count and
// the spacing of each partition's batches it makes.
type Budget struct {
	Partitions       int
	MinBatchInterval time.Duration
}

// SupervisorProgress is what the supervisor's "progress" query answers.
type SupervisorProgress struct {
	Topic       string
	Partitions  int
	LastChecked time.Time
	Started     []int // partitions this run started
}

// Updates an operator sends PartitionIngest (starter pause|resume|drain|
// set-batch). Each answers once it has taken effect, so the starter can
// say what happened rather than what it asked for.
const (
	PauseUpdate    = "pause"     // finish the batch in flight, commit it, then wait
	ResumeUpdate   = "resume"    // go on from a pause
	DrainUpdate    = "drain"     // finish the batch in flight, commit it, then complete
	SetBatchUpdate = "set-batch" // change the batch size from the next plan on
)

// Partition states, as Progress.State and `starter status` name them.
const (
	StateIngesting = "ingesting"
	StateCaughtUp  = "caught up"
	StatePausing   = "pausing"
	StatePaused    = "paused"
	StateDraining  = "draining"
	StateDrained   = "drained"
	StateBackoff   = "retrying a failed batch"
	// StateBudget: waiting for the next batch the daily load-job budget
	// allows (IngestInput.MinBatchInterval).
	StateBudget = "spacing batches for the load-job budget"
	// StateOpenTransaction: caught up to the last stable offset, which an
	// open transaction holds below the log's end (Progress.OpenTransactionAt).
	StateOpenTransaction = "waiting on an open transaction"
)

// MaxBatchRecords bounds set-batch: a batch is held in one worker's memory
// and its decisions in one history event (2 MB payload limit).
const MaxBatchRecords = 200_000

// MaxBatchBytes bounds the bytes a plan may take when a load-job budget
// grows a batch to MaxBatchRecords: the bytes grow in proportion, up to
// this.
const MaxBatchBytes = 256 << 20

// ProgressQuery is the name of PartitionIngest's query.
const ProgressQuery = "progress"

// Signal names of the pool protocol.
const (
	JoinSignal   = "join"   // worker → pool: its own queue
	WantSignal   = "want"   // partition → pool: PoolWant
	LeaveSignal  = "leave"  // partition → pool: its workflow ID, when it ends
	AssignSignal = "assign" // pool → partition: Assignment
	// GoneSignal (worker → pool, a queue) names a member known dead: the
	// worker that replaced it in place, whose lock it found free.
	GoneSignal = "gone"
)

// BudgetSignal (supervisor → partition, Budget) re-spaces a partition's
// batches when the topic's partition count changes.
const BudgetSignal = "budget"

// TaskTimeout is the workflow task timeout of the partitions' and the
// pool's workflows (Temporal's default is 10 s): a task a worker had
// started when it died is given to another worker after this long, on
// the critical path of recovery. A live worker's task takes milliseconds.
const TaskTimeout = 5 * time.Second

// DefaultSuperviseEvery keeps a partition added to a running topic
// waiting at most this long, plus a plan, for its first batch.
const DefaultSuperviseEvery = 30 * time.Second

// PoolID is the workflow ID of the worker pool of a task queue.
func PoolID(taskQueue string) string { return "pool/" + taskQueue }

// WorkerQueue is the task queue only the worker with this identity polls.
func WorkerQueue(taskQueue, identity string) string { return taskQueue + "/" + identity }

// QuarantineReplaysID is the workflow ID of a topic's replay run: one at a
// time, so each replay's decision sees the rows of those before it and a
// transaction_id quarantined twice is loaded once.
func QuarantineReplaysID(topic string) string { return "replay-quarantine/" + topic }

// SupervisorID is the workflow ID of a topic's supervisor.
func SupervisorID(topic string) string { return "supervise/" + topic }

// BackfillInput is the Backfill workflow's: a partition's batches to run
// again, in offset order, each as the ledger recorded it (a hole in the
// ledger as a batch of its own).
type BackfillInput struct {
	Batches []Spec
}

// MaxBackfillBatches bounds one backfill, so its input stays far below
// Temporal's 2 MB payload limit (a spec is a few hundred bytes).
const MaxBackfillBatches = 1000

// BackfillOutcome says what a backfill did with one batch.
type BackfillOutcome struct {
	BatchID string
	Outcome string // BackfillLoaded or BackfillAlreadyRun
}

// Backfill outcomes.
const (
	BackfillLoaded     = "loaded"
	BackfillAlreadyRun = "already loaded" // completed before: its ID is never run twice
)

// BackfillProgress is the Backfill workflow's progress query answer.
type BackfillProgress struct {
	Done, Total int
}

// BackfillID is the workflow ID of a backfill of [from, to) of a partition.
func BackfillID(topic string, partition int, from, to int64) string {
	return fmt.Sprintf("backfill/%s/%d/%d-%d", topic, partition, from, to)
}
