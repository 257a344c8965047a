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
	// firstAt is the first offset at which the read met each ID it asked
	// about: its verdict covers the records from there.
	firstAt map[int]int64
	// wanted are the new fields the read met that have no recorded column.
	wanted map[string]wantedColumn
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
			out.AddKnown(id, j.firstAt[id])
		} else {
			out.AddUnknown(id, j.firstAt[id], j.until)
		}
	}
	return out
}

// agrees says whether records parsed before are the ones this judge
// would parse: no framed record's schema ID it has a verdict for, at the
// record's offset, was taken the other way.
func (j *judge) agrees(recs []rows.Record) bool {
	for i := range recs {
		r := &recs[i]
		id, ok := registry.SchemaID(r.Value)
		if !ok || !registry.Framed(r.Value) || !j.recorded.Reads(r.Offset) {
			continue
		}
		unknown := payment.ReasonOf(r.ParseErr) == payment.ReasonSchemaUnknownID
		switch j.recorded.Verdict(id, r.Offset) {
		case contract.VerdictKnown:
			if unknown {
				return false
			}
		case contract.VerdictUnknown:
			if !unknown {
				return false
			}
		}
	}
	return true
}

// see keeps the registry's answer on id, met at offset.
func (j *judge) see(id int, known bool, offset int64) {
	if j.seen == nil {
		j.seen, j.firstAt = map[int]bool{}, map[int]int64{}
	}
	j.seen[id] = known
	if from, ok := j.firstAt[id]; !ok || offset < from {
		j.firstAt[id] = offset
	}
}

// parse judges one record. An error is not the record's fault (the
// registry is down, or this worker has none): the read fails, to be
// retried, and no record is quarantined for it.
func (e *Engine) parse(ctx context.Context, r kafkalog.Record, j *judge) (rows.Record, error) {
	if !registry.Framed(r.Value) || len(r.Value) > payment.MaxRecordBytes || !j.recorded.Reads(r.Offset) {
		return parse(r, j.lateness), nil
	}
	ev, cols, err := e.decodeFramed(ctx, r, j)
	if err != nil {
		var pe *payment.Error
		if errors.As(err, &pe) {
			return rows.Record{Record: r, ParseErr: pe}, nil
		}
		return rows.Record{}, err
	}
	ev, err = payment.CheckRecord(ev, r.Key, r.Time, j.lateness)
	return rows.Record{Record: r, Event: ev, ParseErr: err, Columns: cols}, nil
}

// decodeFramed reads a framed record into the event contract; a
// *payment.Error is the record's rejection, any other error the
// registry's trouble.
func (e *Engine) decodeFramed(ctx context.Context, r kafkalog.Record, j *judge) (payment.Event, []contract.Column, error) {
	id, ok := registry.SchemaID(r.Value)
	if !ok {
		return payment.Event{}, nil, &payment.Error{Reason: payment.ReasonSchemaUndecodable, Detail: "shorter than the wire format's 5-byte header"}
	}
	verdict := j.recorded.Verdict(id, r.Offset)
	if known, ok := j.seen[id]; ok && verdict == contract.VerdictNone {
		verdict = contract.VerdictUnknown
		if known {
			verdict = contract.VerdictKnown
		}
	}
	if verdict == contract.VerdictNone && j.recorded.Full() {
		// No room to record another ID: unknown without asking, the
		// range recorded as Unasked (contract.Schemas.AddUnknown).
		verdict = contract.VerdictUnknown
		j.see(id, false, r.Offset)
	}
	if verdict == contract.VerdictUnknown {
		if j.recorded.Verdict(id, r.Offset) == contract.VerdictNone {
			j.see(id, false, r.Offset)
		}
		return payment.Event{}, nil, unknownSchema(id)
	}
	if e.Registry == nil {
		return payment.Event{}, nil, fmt.Errorf("offset %d holds a record of schema ID %d in the Schema Registry wire format, and this worker has no --schema-registry to read it", r.Offset, id)
	}
	s, err := e.Registry.Schema(ctx, id)
	switch {
	case errors.Is(err, registry.ErrUnknownSchema) && verdict == contract.VerdictKnown:
		// An earlier batch read this schema: records of it were loaded,
		// and only the same schema reads the rest alike.
		return payment.Event{}, nil, fmt.Errorf("offset %d: the schema registry no longer has schema ID %d, which earlier batches of this partition were read with; restore it to the registry: %w", r.Offset, id, err)
	case errors.Is(err, registry.ErrUnknownSchema):
		j.see(id, false, r.Offset)
		return payment.Event{}, nil, unknownSchema(id)
	case err != nil:
		return payment.Event{}, nil, fmt.Errorf("offset %d: %w", r.Offset, err)
	}
	if verdict == contract.VerdictNone {
		j.see(id, true, r.Offset)
	}
	ev, cols, err := s.Read(r.Value)
	if err != nil {
		return payment.Event{}, nil, err
	}
	cols, err = j.typed(s, cols, r.Offset)
	return ev, cols, err
}

// typed judges a record's new fields by the partition's recorded columns:
// a field whose column does not take its type turns the record away
// (schema_type_changed); one with no recorded column is kept in extra
// only, and asked for (want), for the plan to record. It returns the
// schema's columns, all of them (the rows write those recorded).
func (j *judge) typed(s *registry.Schema, cols []contract.Column, offset int64) ([]contract.Column, error) {
	for _, c := range cols {
		have := j.recorded.Column(c.Name, offset)
		if have == "" {
			j.want(s, c, offset)
			continue
		}
		if !contract.ColumnTakes(have, c.Type) {
			j.want(s, c, offset) // the plan reads the table again: its column may have been widened since
			return nil, typeChanged(s, c, have)
		}
	}
	return cols, nil
}

// typeChanged is the rejection of a record whose field c its column, of
// type have, does not take.
func typeChanged(s *registry.Schema, c contract.Column, have string) *payment.Error {
	return &payment.Error{Reason: payment.ReasonSchemaTypeChanged, Field: c.Name,
		Detail: fmt.Sprintf("%s gives %s the type %s; its column in transactions is %s, which does not take it", s, c.Name, c.Type, have)}
}

// retype judges records parsed before columns were recorded again, by
// the columns recorded now, as typed would have: a record one of whose
// fields its column does not take is turned away, as if read now.
func (e *Engine) retype(ctx context.Context, j *judge, recs []rows.Record) error {
	for i := range recs {
		r := &recs[i]
		for _, c := range r.Columns {
			have := j.recorded.Column(c.Name, r.Offset)
			if have == "" || contract.ColumnTakes(have, c.Type) {
				continue
			}
			id, _ := registry.SchemaID(r.Value)
			s, err := e.Registry.Schema(ctx, id) // cached: the record was read with it
			if err != nil {
				return err
			}
			recs[i] = rows.Record{Record: r.Record, ParseErr: typeChanged(s, c, have)}
			break
		}
	}
	return nil
}

// want keeps a field with no recorded column, for the plan to record:
// of the types the read met, one that takes the others when there is
// one, else the first record's by offset.
func (j *judge) want(s *registry.Schema, c contract.Column, offset int64) {
	if j.wanted == nil {
		j.wanted = map[string]wantedColumn{}
	}
	w, ok := j.wanted[c.Name]
	switch {
	case !ok:
		j.wanted[c.Name] = wantedColumn{typ: c.Type, offset: offset, schema: s}
	case w.typ != c.Type && contract.ColumnTakes(c.Type, w.typ):
		// A wider type takes the records met before too.
		j.wanted[c.Name] = wantedColumn{typ: c.Type, offset: min(offset, w.offset), schema: s}
	case offset < w.offset && (w.typ == c.Type || !contract.ColumnTakes(w.typ, c.Type)):
		j.wanted[c.Name] = wantedColumn{typ: c.Type, offset: offset, schema: s}
	}
}

// wantedColumn is a field that met no recorded column: its type, and the
// first record and schema that have it.
type wantedColumn struct {
	typ    string
	offset int64
	schema *registry.Schema
}

func unknownSchema(id int) *payment.Error {
	return &payment.Error{Reason: payment.ReasonSchemaUnknownID, Detail: fmt.Sprintf("schema ID %d is unknown to the schema registry", id)}
}
