package contract

import "time"

// The activities' names, as the worker registers them and the workflows
// call them: a workflow schedules an activity by name, so neither package
// needs the other.
const (
	ActivityPlanBatch      = "PlanBatch"
	ActivityDedup          = "Dedup"
	ActivityEnrich         = "Enrich"
	ActivityLoad           = "Load"
	ActivityCreateStreams  = "CreateStreams"
	ActivityNewPartitions  = "NewPartitions"
	ActivityDecideReplay   = "DecideReplay"
	ActivityLoadReplay     = "LoadReplay"
	ActivityHoldMembership = "HoldMembership"
	ActivityTerminateBatch = "TerminateBatch"
	// ActivityReleaseWorkflows runs as the pool's local activity.
	ActivityReleaseWorkflows = "ReleaseWorkflows"
)

// Activities lists every activity name: the worker registers exactly these.
var Activities = []string{
	ActivityPlanBatch, ActivityDedup, ActivityEnrich, ActivityLoad, ActivityCreateStreams,
	ActivityNewPartitions, ActivityDecideReplay, ActivityLoadReplay, ActivityHoldMembership, ActivityTerminateBatch,
	ActivityReleaseWorkflows,
}

// Error types an activity fails with when retrying cannot help; the
// workflows do not retry them.
const (
	// ErrTypeOffsetOutOfRange: Kafka's retention deleted offsets the
	// batch needs.
	ErrTypeOffsetOutOfRange = "OffsetOutOfRange"
	// ErrTypeLoadFailed: BigQuery refused a batch's rows for good.
	ErrTypeLoadFailed = "LoadFailed"
	// ErrTypeLogTruncated: the partition's log ends before the next
	// offset to ingest (the topic was deleted and re-created, or
	// truncated); an operator must decide.
	ErrTypeLogTruncated = "LogTruncated"
	// ErrTypeReplayMismatch: the quarantined rows no longer match the
	// recorded decision (someone edited ingest_errors).
	ErrTypeReplayMismatch = "ReplayMismatch"
)

// LoadInput is a batch with its recorded decisions.
type LoadInput struct {
	Spec       Spec
	Decisions  Decisions
	Enrichment Enrichment
}

// PartitionsInput asks which partitions a topic has at or past From.
type PartitionsInput struct {
	Topic string
	From  int
}

// PlanInput asks for the next range of a partition.
type PlanInput struct {
	Topic      string
	Partition  int
	Next       int64
	MaxRecords int
	MaxBytes   int64
	// PollFor is how long to wait for new records when caught up, instead
	// of a workflow spinning timers.
	PollFor time.Duration
	// Linger bounds how long a batch's first record waits before its
	// batch is written: a batch short of MaxRecords waits to fill until
	// that record was produced Linger ago, less what the partition's
	// recent batches took to write on the worker (activities' pace). A
	// live stream then makes a batch per few seconds instead of one per
	// record burst, and each batch costs a workflow, a ledger row and load
	// jobs whatever its size. A log that stopped growing (the end of a
	// backlog) is cut at once.
	Linger time.Duration
	// AllowedLateness judges the records the plan parses (see parse); the
	// plan keeps them parsed for the batch only when it is set.
	AllowedLateness time.Duration `json:",omitempty"`
	// Schemas are the partition's recorded registry schema IDs, which the
	// parse of the plan's records follows (Spec.Schemas).
	Schemas Schemas `json:",omitzero"`
}

// PlanResult is the planned range [Next, End); End == Next means nothing
// arrived while polling.
type PlanResult struct {
	End           int64
	HighWatermark int64
	// Stable is the partition's last stable offset: a batch never passes
	// it. Below HighWatermark while a transaction is open; when it equals
	// Next, the partition waits on the transaction that starts there.
	Stable int64 `json:",omitempty"`
	// Schemas are the registry's verdicts on the schema IDs the range's
	// records name that the partition had not recorded: recorded with the
	// plan, they are the batch's (Spec.Schemas), however often it runs.
	Schemas Schemas `json:",omitzero"`
}

// ReplayInput names the batch whose quarantined records are replayed.
type ReplayInput struct {
	Source Range
	// Reason is the ingest_errors reason of the records replayed: "" (or
	// late) for late records, or a schema_ reason once the schema that
	// turned them away has been fixed.
	Reason string `json:",omitempty"`
}

// ReasonLate is the reason of late records, the ones a replay without a
// reason replays.
const ReasonLate = "late"

// ReplayReason is the reason in, late when it names none.
func (in ReplayInput) ReplayReason() string {
	if in.Reason == "" {
		return ReasonLate
	}
	return in.Reason
}

// ReplayDecision is what DecideReplay found: offsets only.
type ReplayDecision struct {
	Quarantined int     // late records of the source batch
	Offsets     []int64 // to load, in offset order
	// DuplicateOffsets carry a transaction_id that transactions holds
	// already, or that an earlier offset of this replay carries: they
	// stay in quarantine.
	DuplicateOffsets []int64
	// Scores and Reasons are the fraud rules' verdict on each record of
	// Offsets, decided here and recorded, so that a retried load applies
	// them and never scores again (invariant 3).
	Scores  []uint8  `json:",omitempty"`
	Reasons []uint16 `json:",omitempty"`
	// Columns are the typed columns the records' new fields go to, as
	// the decision found or added them (Schemas.Columns).
	Columns []Column `json:",omitempty"`
}

// ReplayTotals is what LoadReplay wrote.
type ReplayTotals struct {
	Quarantined      int
	Loaded           int
	Duplicates       int
	HighRisk         int
	AmountByCurrency map[string]string
}

// ReplayLoadInput is a replay with its recorded decision.
type ReplayLoadInput struct {
	Replay   ReplayInput
	Decision ReplayDecision
}

// ID is the replay's workflow ID and the batch_id of the rows it loads:
// one replay per batch, forever.
func (in ReplayInput) ID() string {
	if in.ReplayReason() == ReasonLate {
		return "replay/" + in.Source.ID()
	}
	return "replay/" + in.Reason + "/" + in.Source.ID()
}
