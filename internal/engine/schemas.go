package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/registry"
	"github.com/paystream/paystream/internal/rows"
)

// judge is how one read of the log parses its records: by the event
// contract at the allowed lateness, and, for records in the Schema
// Registry wire format, by the schema IDs the partition recorded. Whether
// a schema ID is known is the registry's answer the first time a batch
// met it, recorded in that batch's decisions; an ID not yet recorded is
// asked of the registry, and the answer is kept in seen, which Decide
// returns to be recorded.
type judge struct {
	lateness time.Duration
	recorded contract.Schemas
	seen     contract.Schemas // every ID this read parsed by, as it found it
}

func newJudge(lateness time.Duration, recorded ...contract.Schemas) *judge {
	j := &judge{lateness: lateness}
	for _, r := range recorded {
		j.recorded.Merge(r)
	}
	return j
}

// met are the IDs this read found that the partition had not recorded.
func (j *judge) met() contract.Schemas {
	var out contract.Schemas
	for _, id := range j.seen.Known {
		if _, ok := j.recorded.Status(id); !ok {
			out.Add(id, true)
		}
	}
	for _, id := range j.seen.Unknown {
		if _, ok := j.recorded.Status(id); !ok {
			out.Add(id, false)
		}
	}
	return out
}

// agrees says whether records parsed with seen are the ones this judge
// would parse: no ID it has recorded was taken the other way.
func (j *judge) agrees(seen contract.Schemas) bool {
	for _, id := range seen.Known {
		if known, ok := j.recorded.Status(id); ok && !known {
			return false
		}
	}
	for _, id := range seen.Unknown {
		if known, ok := j.recorded.Status(id); ok && known {
			return false
		}
	}
	return true
}

// parse judges one record. An error is not the record's fault (the
// registry is down, or this worker has none): the read fails, to be
// retried, and no record is quarantined for it.
func (e *Engine) parse(ctx context.Context, r kafkalog.Record, j *judge) (rows.Record, error) {
	if !registry.Framed(r.Value) || len(r.Value) > payment.MaxRecordBytes {
		return parse(r, j.lateness), nil
	}
	js, err := e.decodeFramed(ctx, r, j)
	if err != nil {
		var pe *payment.Error
		if errors.As(err, &pe) {
			return rows.Record{Record: r, ParseErr: pe}, nil
		}
		return rows.Record{}, err
	}
	ev, err := payment.ParseRecord(r.Key, js, r.Time, j.lateness)
	return rows.Record{Record: r, Event: ev, ParseErr: err}, nil
}

// decodeFramed turns a framed record into the contract's JSON.
func (e *Engine) decodeFramed(ctx context.Context, r kafkalog.Record, j *judge) ([]byte, error) {
	id, ok := registry.SchemaID(r.Value)
	if !ok {
		return nil, &payment.Error{Reason: payment.ReasonSchemaUndecodable, Detail: "shorter than the wire format's 5-byte header"}
	}
	known, recorded := j.recorded.Status(id)
	if recorded && !known {
		j.seen.Add(id, false)
		return nil, unknownSchema(id)
	}
	if e.Registry == nil {
		return nil, fmt.Errorf("offset %d holds a record of schema ID %d in the Schema Registry wire format, and this worker has no --schema-registry to read it", r.Offset, id)
	}
	s, err := e.Registry.Schema(ctx, id)
	switch {
	case errors.Is(err, registry.ErrUnknownSchema) && recorded:
		// An earlier batch read this schema: records of it were loaded,
		// and only the same schema reads the rest alike.
		return nil, fmt.Errorf("offset %d: the schema registry no longer has schema ID %d, which earlier batches of this partition were read with; restore it to the registry: %w", r.Offset, id, err)
	case errors.Is(err, registry.ErrUnknownSchema):
		j.seen.Add(id, false)
		return nil, unknownSchema(id)
	case err != nil:
		return nil, fmt.Errorf("offset %d: %w", r.Offset, err)
	}
	j.seen.Add(id, true)
	return s.JSON(make([]byte, 0, 2*len(r.Value)), r.Value)
}

func unknownSchema(id int) *payment.Error {
	return &payment.Error{Reason: payment.ReasonSchemaUnknownID, Detail: fmt.Sprintf("schema ID %d is unknown to the schema registry", id)}
}
