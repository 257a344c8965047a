// Package contract holds what the workflows, the activities and the
// operator's client pass each other: batch ranges and IDs, decisions,
// totals, activity inputs, results and names, error types and table
// names. Offsets, IDs, counts and scores only — never the events
// themselves, which activities re-read from Kafka (docs/design.md §3, invariant 1).
// The workflows and the activities depend on it, never on each other.
package contract

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Range is a partition's offsets [Start, End).
type Range struct {
	Topic     string
	Partition int
	Start     int64
	End       int64
}

// ID is the batch ID and the MicroBatch workflow ID: derived from the range,
// so one range is one batch, forever (invariant 2).
func (r Range) ID() string {
	return fmt.Sprintf("batch/%s/%d/%d-%d", r.Topic, r.Partition, r.Start, r.End)
}

// ParseID reads a batch ID back into its range: the operator learns from
// a partition's running children which offsets are in batches.
func ParseID(id string) (Range, error) {
	bad := fmt.Errorf("%q is not a batch ID (batch/<topic>/<partition>/<start>-<end>)", id)
	rest, ok := strings.CutPrefix(id, "batch/")
	i := strings.LastIndexByte(rest, '/')
	if !ok || i < 0 {
		return Range{}, bad
	}
	var r Range
	if _, err := fmt.Sscanf(rest[i+1:], "%d-%d", &r.Start, &r.End); err != nil || r.End < r.Start {
		return Range{}, bad
	}
	j := strings.LastIndexByte(rest[:i], '/')
	if j <= 0 {
		return Range{}, bad
	}
	p, err := strconv.Atoi(rest[j+1 : i])
	if err != nil || p < 0 {
		return Range{}, bad
	}
	r.Topic, r.Partition = rest[:j], p
	if r.ID() != id {
		return Range{}, bad
	}
	return r, nil
}

// IngestID is the PartitionIngest workflow ID of a partition.
func IngestID(topic string, partition int) string {
	return fmt.Sprintf("ingest/%s/%d", topic, partition)
}

// IngestPartition is the partition whose PartitionIngest of topic has
// workflow ID id (IngestID); false for any other ID.
func IngestPartition(topic, id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, "ingest/"+topic+"/")
	p, err := strconv.Atoi(rest)
	if !ok || err != nil || IngestID(topic, p) != id {
		return 0, false
	}
	return p, true
}

// LoadJobID is the BigQuery job ID of the attempt-th load job of a batch
// into table (invariant 4). BigQuery job IDs allow letters, digits, '_'
// and '-', so the batch ID is spelled with those and prefixed by a hash of
// itself, which keeps two topics that spell alike apart.
func LoadJobID(batchID, table string, attempt int) string {
	sum := sha256.Sum256([]byte(batchID))
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, batchID)
	return fmt.Sprintf("paystream_%s_%s_%s_r%d", hex.EncodeToString(sum[:6]), clean, table, attempt)
}

// Window is where the dedup window of a partition starts: the offset a cold
// worker replays from and the partition's newest event_time just before it.
type Window struct {
	Start  int64
	Newest time.Time
	// Floors are the raises of the watermark's floor a rebuild from Start
	// replays (dedup.Floor): empty unless the window hit its ID bound.
	Floors []Floor `json:",omitempty"`
}

// Floor is a raise of the dedup watermark's floor at Offset to Time.
type Floor struct {
	Offset int64
	Time   time.Time
}

// Spec is everything a MicroBatch needs.
type Spec struct {
	Range
	Window          Window // dedup window bounds at Range.Start
	AllowedLateness time.Duration
	// MaxWindowIDs bounds the partition's dedup window (0: no bound, in
	// runs started before it existed); a partition keeps one value, since
	// a rebuilt window must decide as the warm one did.
	MaxWindowIDs int `json:",omitempty"`
	// FraudRules is the fraud rule set's version (fraud.Version) that Load
	// scores the batch's loaded records with: scores are a pure function
	// of the records, the recorded decisions and that version, so they are
	// computed again rather than recorded. 0 in batches started before
	// it existed, whose Enrich recorded the scores.
	FraudRules int `json:",omitempty"`
	// NoCountAttributes: the batch does not upsert its counts as search
	// attributes when done, which saves a billed action a batch. Unset in
	// batches started before it existed, which upserted them.
	NoCountAttributes bool `json:",omitempty"`
	// Streams, in storagewrite mode, is where each table's rows go: its
	// partition's COMMITTED write stream and the offset this batch's rows
	// start at. Empty in load mode.
	Streams map[string]StreamOffset `json:",omitempty"`
	// Schemas are the registry schema IDs the partition recorded before
	// this batch: its records, and the window's, are judged by them.
	Schemas Schemas `json:",omitzero"`
}

// StreamOffset is a position in a Storage Write API stream.
type StreamOffset struct {
	Name   string
	Offset int64
}

// Decisions are the Dedup activity's result, recorded once in history
// (invariant 3): the offsets the dedup window turned away. Every other
// record is loaded if it parses and filed as invalid if it does not —
// a pure function of its bytes, so Load can recompute that part.
type Decisions struct {
	DuplicateOffsets Offsets // loaded elsewhere: these go to dedup_audit
	DuplicateOf      Offsets // the loaded record each one repeats
	// DuplicateIdentical marks producer retries (same bytes as the original).
	DuplicateIdentical Flags
	ConflictOffsets    Offsets // same ID, other amount or currency: ingest_errors
	ConflictOf         Offsets
	LateOffsets        Offsets // behind the watermark: ingest_errors

	Records int // data records in the range
	Loaded  int
	Invalid int
	// Control and Aborted count the range's transaction markers and
	// records of aborted transactions: offsets that hold no payment, so
	// that the ledger still explains every offset.
	Control int `json:",omitempty"`
	Aborted int `json:",omitempty"`
	// Schemas are the registry schema IDs this batch met first, as it
	// found them; Load judges its records by them, and the partition
	// records them for the batches after.
	Schemas Schemas `json:",omitzero"`

	Next Window // the window's bounds at Range.End, for the next batch
}

// FraudRules is the fraud rule set version new batches are scored with
// (Spec.FraudRules); it must equal a version the workers' fraud package
// knows.
const FraudRules = 1

// Enrichment is the Enrich activity's result: one score per loaded record,
// in offset order (fraud.Score's fields, kept as plain arrays). Batches
// with Spec.FraudRules set have none: Load scores them.
type Enrichment struct {
	Scores  []uint8 `json:",omitempty"` // encoding/json writes a []uint8 as base64 already
	Reasons Codes   `json:",omitempty"`
}

// Totals is what Load wrote, the batch's answer to reconciliation.
type Totals struct {
	Records          int
	Loaded           int
	Duplicates       int
	Errors           int // invalid and conflicting
	Late             int
	Control          int // transaction markers
	Aborted          int // records of aborted transactions
	Skipped          int // offsets without a record (compacted away)
	HighRisk         int
	AmountByCurrency map[string]string // loaded amounts, exact decimals
	// Rows, in storagewrite mode, is how many rows each table's stream
	// received: where the next batch's offsets start.
	Rows map[string]int `json:",omitempty"`
}

// Result is the MicroBatch workflow's result.
type Result struct {
	BatchID string
	Totals  Totals
	Next    Window
	Schemas Schemas `json:",omitzero"` // Decisions.Schemas
}

// KeepWatermark is the window a partition resumes with at offset next
// when its allowed lateness changes from was to now. The window holds only
// the IDs the old lateness kept: under a longer one, a resent payment
// older than those would not be found and would load a second time. A
// floor at next holds the watermark where the old lateness had it, so such
// a resend is late, until the newest event time passes it.
func (w Window) KeepWatermark(was, now time.Duration, next int64) Window {
	if was <= 0 || now <= was || w.Newest.IsZero() {
		return w
	}
	floor := w.Newest.Add(-was)
	if n := len(w.Floors); n > 0 && !floor.After(w.Floors[n-1].Time) {
		return w // a floor already holds it higher
	}
	w.Floors = append(slices.Clone(w.Floors), Floor{Offset: next, Time: floor})
	return w
}

// Schemas are what a partition records about records in the Schema
// Registry wire format. When Registry is set, records from offset From on
// are read with the registry; before From, or when it is not set, a
// record starting with a zero byte is judged as JSON (malformed_json), as
// before the partition read the wire format. Each schema ID's verdict is
// the registry's answer when the plan of the batch holding its first
// record asked, recorded with the offsets it covers, so that the batch,
// however often it runs, and every window rebuilt from the log on any
// worker, judges its records alike: known from an offset on, or unknown
// in a range, past which it is asked again. Once MaxUnknownSchemas ranges
// are recorded, a range is recorded in Unasked instead: every ID with no
// verdict there is unknown without asking.
type Schemas struct {
	Registry bool            `json:",omitempty"`
	From     int64           `json:",omitempty"`
	Known    []KnownSchema   `json:",omitempty"`
	Unknown  []UnknownSchema `json:",omitempty"`
	Unasked  []Span          `json:",omitempty"`
	// Columns are the typed columns the partition writes its records'
	// new fields into (fields the event contract lacks), each with its
	// BigQuery type from an offset on, as the plan that first met them
	// found or made them in transactions and transactions_enriched.
	Columns []Column `json:",omitempty"`
}

// Column is a typed column of transactions and transactions_enriched
// that is not in their DDL: a schema's field, of a BigQuery type
// (STRING, INT64, FLOAT64, BOOL, NUMERIC, BIGNUMERIC, TIMESTAMP, DATE,
// BYTES or JSON), recorded from offset From on.
type Column struct {
	Name string
	Type string
	From int64 `json:",omitempty"`
	// The schema whose field it is, as the plan that recorded it met it
	// first (schema_changes names it).
	SchemaID int    `json:",omitempty"`
	Subject  string `json:",omitempty"`
	Version  int    `json:",omitempty"`
}

// MaxColumns bounds the typed columns a partition records: past it, a
// new field stays in the extra column only.
const MaxColumns = 1000

// Column is the type of the typed column name for the record at offset,
// "" when none is recorded.
func (s Schemas) Column(name string, offset int64) string {
	typ, from := "", int64(-1)
	for _, c := range s.Columns {
		if c.Name == name && c.From <= offset && c.From > from {
			typ, from = c.Type, c.From
		}
	}
	return typ
}

// AddColumn records c; the same column and type recorded before keeps
// the earlier offset.
func (s *Schemas) AddColumn(c Column) {
	for i, o := range s.Columns {
		if o.Name == c.Name && o.Type == c.Type {
			s.Columns[i].From = min(o.From, c.From)
			return
		}
	}
	if len(s.Columns) < MaxColumns {
		s.Columns = append(s.Columns, c)
	}
}

// ColumnTakes says whether a column of type column takes a field's value
// of type field without loss: the same type, or one BigQuery widens to
// (ALTER COLUMN SET DATA TYPE: INT64 to NUMERIC, BIGNUMERIC or FLOAT64,
// NUMERIC to BIGNUMERIC).
func ColumnTakes(column, field string) bool {
	switch {
	case column == field:
		return true
	case field == "INT64":
		return column == "NUMERIC" || column == "BIGNUMERIC" || column == "FLOAT64"
	case field == "NUMERIC":
		return column == "BIGNUMERIC"
	}
	return false
}

// KnownSchema is a schema ID the registry knew, for its records from
// offset From on.
type KnownSchema struct {
	ID   int
	From int64
}

// UnknownSchema is a schema ID the registry did not know when its records
// in [From, Until) were judged.
type UnknownSchema struct {
	ID          int
	From, Until int64
}

// Span is a range of offsets [From, Until).
type Span struct{ From, Until int64 }

// MaxUnknownSchemas bounds the unknown ranges a partition records: a
// registry has few missing IDs, and a producer writing Avro without the
// wire format's header would otherwise add one a record. Ranges behind
// the dedup window are dropped (Prune).
const MaxUnknownSchemas = 256

// Verdict is a schema ID's recorded verdict for a record.
type Verdict int

const (
	VerdictNone    Verdict = iota // not recorded: ask the registry
	VerdictKnown                  // read with its schema
	VerdictUnknown                // schema_unknown_id
)

// Verdict is id's recorded verdict for the record at offset.
func (s Schemas) Verdict(id int, offset int64) Verdict {
	for _, u := range s.Unknown {
		if u.ID == id && offset >= u.From && offset < u.Until {
			return VerdictUnknown
		}
	}
	for _, k := range s.Known {
		if k.ID == id && offset >= k.From {
			return VerdictKnown
		}
	}
	for _, u := range s.Unasked {
		if offset >= u.From && offset < u.Until {
			return VerdictUnknown
		}
	}
	return VerdictNone
}

// Full says whether no more unknown ranges may be recorded: a read then
// asks the registry of no new ID, and records its range as Unasked.
func (s Schemas) Full() bool { return len(s.Unknown) >= MaxUnknownSchemas }

// Reads says whether the record at offset is read with the registry when
// it is in the wire format.
func (s Schemas) Reads(offset int64) bool { return s.Registry && offset >= s.From }

// AddKnown records id as known from offset from on (or from earlier).
func (s *Schemas) AddKnown(id int, from int64) {
	for i, k := range s.Known {
		if k.ID == id {
			s.Known[i].From = min(k.From, from)
			return
		}
	}
	s.Known = append(s.Known, KnownSchema{ID: id, From: from})
}

// AddUnknown records id as unknown for its records in [from, until),
// joined to a range of it that touches this one; when Full, the range is
// recorded as Unasked.
func (s *Schemas) AddUnknown(id int, from, until int64) {
	for i, u := range s.Unknown {
		if u.ID == id && from <= u.Until && until >= u.From {
			s.Unknown[i].From, s.Unknown[i].Until = min(u.From, from), max(u.Until, until)
			return
		}
	}
	if s.Full() {
		s.AddUnasked(from, until)
		return
	}
	s.Unknown = append(s.Unknown, UnknownSchema{ID: id, From: from, Until: until})
}

// MaxUnaskedSpans bounds the Unasked spans: past it, the two nearest
// are joined across their gap. That changes no verdict given: every
// framed record in a gap had its ID's own verdict, Known or Unknown, or
// its range would be Unasked already.
const MaxUnaskedSpans = 64

// AddUnasked records [from, until) as a range where IDs with no verdict
// are unknown, joined to one it touches.
func (s *Schemas) AddUnasked(from, until int64) {
	for i, u := range s.Unasked {
		if from <= u.Until && until >= u.From {
			s.Unasked[i].From, s.Unasked[i].Until = min(u.From, from), max(u.Until, until)
			return
		}
	}
	s.Unasked = append(s.Unasked, Span{From: from, Until: until})
	if len(s.Unasked) <= MaxUnaskedSpans {
		return
	}
	slices.SortFunc(s.Unasked, func(a, b Span) int { return cmp.Compare(a.From, b.From) })
	nearest := 0
	for i := 1; i < len(s.Unasked)-1; i++ {
		if s.Unasked[i+1].From-s.Unasked[i].Until < s.Unasked[nearest+1].From-s.Unasked[nearest].Until {
			nearest = i
		}
	}
	s.Unasked[nearest].Until = s.Unasked[nearest+1].Until
	s.Unasked = slices.Delete(s.Unasked, nearest+1, nearest+2)
}

// Merge records o's verdicts too; Registry and From stay s's.
func (s *Schemas) Merge(o Schemas) {
	for _, k := range o.Known {
		s.AddKnown(k.ID, k.From)
	}
	for _, u := range o.Unknown {
		s.AddUnknown(u.ID, u.From, u.Until)
	}
	for _, u := range o.Unasked {
		s.AddUnasked(u.From, u.Until)
	}
	for _, c := range o.Columns {
		s.AddColumn(c)
	}
}

// Prune drops the unknown and unasked ranges that end at or before
// offset, the start of the partition's dedup window: no batch of the
// partition reads those records again.
func (s *Schemas) Prune(offset int64) {
	s.Unknown = slices.DeleteFunc(s.Unknown, func(u UnknownSchema) bool { return u.Until <= offset })
	s.Unasked = slices.DeleteFunc(s.Unasked, func(u Span) bool { return u.Until <= offset })
}

// Clone is a copy that shares nothing with s.
func (s Schemas) Clone() Schemas {
	s.Known, s.Unknown, s.Unasked, s.Columns = slices.Clone(s.Known), slices.Clone(s.Unknown), slices.Clone(s.Unasked), slices.Clone(s.Columns)
	return s
}
