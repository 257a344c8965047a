package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/registry"
	"github.com/paystream/paystream/internal/rows"
)

// judge is how one read of the log parses its records: by the event
// contract at the allowed lateness, and, for records in the Schema
// Registry wire format, by the partition's recorded Schemas. A schema ID
// with no recorded verdict is asked of the registry; the answer is kept in
// seen (so a read asks once an ID) and returned by met, to be recorded.
type judge struct {
	lateness time.Duration
	recorded contract.Schemas
	until    int64 // the end of the read: an unknown ID's verdict covers its records up to it
	seen     map[int]bool
	// unknownFrom is the first offset at which the read met each ID it
	// found unknown: the verdict covers [unknownFrom, until).
	unknownFrom map[int]int64
}

// newJudge judges a read ending at until by the recorded verdicts.
func newJudge(lateness time.Duration, until int64, recorded ...contract.Schemas) *judge {
	j := &judge{lateness: lateness, until: until}
	for i, r := range recorded {
		if i == 0 {
			j.recorded = r.Clone()
			continue
		}
		j.recorded.Merge(r)
	}
	return j
}

// met are the verdicts this read asked the registry for.
func (j *judge) met() contract.Schemas {
	var out contract.Schemas
	for _, id := range slices.Sorted(maps.Keys(j.seen)) {
		if j.seen[id] {
			out.AddKnown(id)
		} else {
			out.AddUnknown(id, j.unknownFrom[id], j.until)
		}
	}
	return out
}

// agrees says whether records of [start, ...) parsed with the verdicts
// seen are the ones this judge would parse: no ID it has a verdict for
// was taken the other way.
func (j *judge) agrees(start int64, seen map[int]bool) bool {
	for id, known := range seen {
		switch j.recorded.Verdict(id, start) {
		case contract.VerdictKnown:
			if !known {
				return false
			}
		case contract.VerdictUnknown:
			if known {
				return false
			}
		}
	}
	return true
}

// see keeps the registry's answer on id, met at offset.
func (j *judge) see(id int, known bool, offset int64) {
	if j.seen == nil {
		j.seen, j.unknownFrom = map[int]bool{}, map[int]int64{}
	}
	j.seen[id] = known
	if from, ok := j.unknownFrom[id]; !known && (!ok || offset < from) {
		j.unknownFrom[id] = offset
	}
}

// parse judges one record. An error is not the record's fault (the
// registry is down, or this worker has none): the read fails, to be
// retried, and no record is quarantined for it.
func (e *Engine) parse(ctx context.Context, r kafkalog.Record, j *judge) (rows.Record, error) {
	if !registry.Framed(r.Value) || len(r.Value) > payment.MaxRecordBytes || !j.recorded.Reads(r.Offset) {
		return parse(r, j.lateness), nil
	}
	ev, err := e.decodeFramed(ctx, r, j)
	if err != nil {
		var pe *payment.Error
		if errors.As(err, &pe) {
			return rows.Record{Record: r, ParseErr: pe}, nil
		}
		return rows.Record{}, err
	}
	ev, err = payment.CheckRecord(ev, r.Key, r.Time, j.lateness)
	return rows.Record{Record: r, Event: ev, ParseErr: err}, nil
}

// decodeFramed reads a framed record into the event contract; a
// *payment.Error is the record's rejection, any other error the
// registry's trouble.
func (e *Engine) decodeFramed(ctx context.Context, r kafkalog.Record, j *judge) (payment.Event, error) {
	id, ok := registry.SchemaID(r.Value)
	if !ok {
		return payment.Event{}, &payment.Error{Reason: payment.ReasonSchemaUndecodable, Detail: "shorter than the wire format's 5-byte header"}
	}
	verdict := j.recorded.Verdict(id, r.Offset)
	if known, ok := j.seen[id]; ok && verdict == contract.VerdictNone {
		verdict = contract.VerdictUnknown
		if known {
			verdict = contract.VerdictKnown
		}
	}
	if verdict == contract.VerdictUnknown {
		if j.recorded.Verdict(id, r.Offset) == contract.VerdictNone {
			j.see(id, false, r.Offset)
		}
		return payment.Event{}, unknownSchema(id)
	}
	if e.Registry == nil {
		return payment.Event{}, fmt.Errorf("offset %d holds a record of schema ID %d in the Schema Registry wire format, and this worker has no --schema-registry to read it", r.Offset, id)
	}
	s, err := e.Registry.Schema(ctx, id)
	switch {
	case errors.Is(err, registry.ErrUnknownSchema) && verdict == contract.VerdictKnown:
		// An earlier batch read this schema: records of it were loaded,
		// and only the same schema reads the rest alike.
		return payment.Event{}, fmt.Errorf("offset %d: the schema registry no longer has schema ID %d, which earlier batches of this partition were read with; restore it to the registry: %w", r.Offset, id, err)
	case errors.Is(err, registry.ErrUnknownSchema):
		j.see(id, false, r.Offset)
		return payment.Event{}, unknownSchema(id)
	case err != nil:
		return payment.Event{}, fmt.Errorf("offset %d: %w", r.Offset, err)
	}
	if verdict == contract.VerdictNone {
		j.see(id, true, r.Offset)
	}
	return s.Event(r.Value)
}

func unknownSchema(id int) *payment.Error {
	return &payment.Error{Reason: payment.ReasonSchemaUnknownID, Detail: fmt.Sprintf("schema ID %d is unknown to the schema registry", id)}
}
