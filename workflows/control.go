package workflows

import (
	"errors"
	"fmt"
	"time"

	"github.com/paystream/paystream/contract"

	"go.temporal.io/sdk/workflow"
)

// control is where the ingest loop stands towards the operator's pause
// or drain (contract.Control, in the partition's state): the update
// handlers set those, the loop acts on them between batches, where
// stopping is safe, and says where it is through status.state.
type control struct {
	// idle is set by the loop when no batch is in flight and the last
	// commit has settled: a pause or drain has taken effect.
	idle bool
	// handOver is set when the run is about to continue as new: a pause
	// or drain still waiting is answered with where the partition stands,
	// and the next run, which carries it, takes it into effect. (Waiting
	// for idle there deadlocked a partition whose failed batch waited to
	// run again: that batch runs before any pause, so idle never came.)
	handOver bool
}

// setControlHandlers registers the control updates on ctx; they change
// the partition's state in place.
func (p *partition) setControlHandlers(ctx workflow.Context) error {
	in, c := &p.in, &p.control
	result := func() contract.ControlResult {
		return contract.ControlResult{Partition: in.Partition, State: p.status.state, Next: in.Next, MaxRecords: in.MaxRecords, MaxBytes: in.MaxBytes}
	}
	// A pause or drain answers when the loop has reached a batch boundary.
	awaitIdle := func(ctx workflow.Context) (contract.ControlResult, error) {
		if err := workflow.Await(ctx, func() bool { return c.idle || c.handOver }); err != nil {
			return contract.ControlResult{}, err
		}
		return result(), nil
	}
	notDraining := func(ctx workflow.Context) error {
		if in.Draining {
			return errors.New("the partition is draining; start it again once drained")
		}
		return nil
	}
	handlers := []struct {
		name      string
		handler   any
		validator any
	}{
		{contract.PauseUpdate, func(ctx workflow.Context) (contract.ControlResult, error) {
			if !in.Paused { // a second pause waits with the first
				in.Paused, c.idle = true, false
			}
			return awaitIdle(ctx)
		}, notDraining},
		{contract.ResumeUpdate, func(ctx workflow.Context) (contract.ControlResult, error) {
			in.Paused, c.idle = false, false
			p.status.state = contract.StateIngesting
			return result(), nil
		}, notDraining},
		{contract.DrainUpdate, func(ctx workflow.Context) (contract.ControlResult, error) {
			if !in.Draining {
				in.Draining, c.idle = true, false
			}
			return awaitIdle(ctx)
		}, nil},
		{contract.SetBatchUpdate, func(ctx workflow.Context, s contract.SetBatchInput) (contract.ControlResult, error) {
			in.MaxRecords = s.MaxRecords
			if s.MaxBytes > 0 {
				in.MaxBytes = s.MaxBytes
			}
			return result(), nil
		}, validateSetBatch},
	}
	for _, h := range handlers {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, h.name, h.handler, workflow.UpdateHandlerOptions{Validator: h.validator}); err != nil {
			return fmt.Errorf("register update %s: %w", h.name, err)
		}
	}
	return nil
}

// status is what the ingest loop says of itself in the progress query,
// beside the partition's state; a new run starts it afresh.
type status struct {
	state             string // one of the contract.State* names
	highWatermark     int64  // the log's end when last planned
	caughtUp          bool
	openTransactionAt int64
	lastBatch         string
	lastError         string
	lastBatchAt       time.Time
	eventsPerSecond   float64
}

// progress is the progress query's answer: the state and the status.
func (p *partition) progress() contract.Progress {
	in, s := &p.in, &p.status
	return contract.Progress{
		Topic: in.Topic, Partition: in.Partition, Next: in.Next, HighWatermark: s.highWatermark,
		BatchesDone: in.BatchesDone, RecordsDone: in.RecordsDone, LastBatch: s.lastBatch, LastError: s.lastError,
		CaughtUp: s.caughtUp, OpenTransactionAt: s.openTransactionAt, State: s.state, Draining: in.Draining,
		MaxRecords: in.MaxRecords, MaxBytes: in.MaxBytes, EventsPerSecond: s.eventsPerSecond, LastBatchAt: s.lastBatchAt,
	}
}

// rate tracks events/s over the last minute, in workflow time, for
// status: samples of the records done at each batch and idle poll.
type rate struct {
	at      []time.Time
	records []int64
}

const rateWindow = time.Minute

func (r *rate) add(now time.Time, recordsDone int64) float64 {
	r.at, r.records = append(r.at, now), append(r.records, recordsDone)
	for len(r.at) > 2 && now.Sub(r.at[0]) > rateWindow {
		r.at, r.records = r.at[1:], r.records[1:]
	}
	if len(r.at) < 2 {
		return 0
	}
	secs := r.at[len(r.at)-1].Sub(r.at[0]).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(r.records[len(r.records)-1]-r.records[0]) / secs
}

// validateSetBatch refuses a batch size no partition may take, before
// the update is recorded.
func validateSetBatch(ctx workflow.Context, s contract.SetBatchInput) error {
	if s.MaxRecords < 1 || s.MaxRecords > contract.MaxBatchRecords {
		return fmt.Errorf("batch size %d is outside 1..%d records", s.MaxRecords, contract.MaxBatchRecords)
	}
	if s.MaxBytes < 0 {
		return fmt.Errorf("batch bytes %d is negative", s.MaxBytes)
	}
	return nil
}
