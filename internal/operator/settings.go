package operator

import (
	"context"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/paystream/paystream/contract"
)

// Settings are the settings a partition's run keeps from the start that
// started it: a later `start` cannot change them while it runs (only
// set-batch changes the batch size).
type Settings struct {
	MaxRecords      int
	MaxBytes        int64
	WriteMode       string
	AllowedLateness time.Duration
	MaxWindowIDs    int
	// ReadsRegistry: it reads records in the Schema Registry wire format.
	ReadsRegistry bool
}

// runningSettings reads a running partition's settings: the batch size
// from its progress (set-batch may have changed it), the rest from the
// input of its current run, which continue-as-new carries on unchanged.
// nil when neither can be read now.
func (o *Operator) runningSettings(ctx context.Context, id string) *Settings {
	var in contract.IngestInput
	if err := o.runInput(ctx, &commonpb.WorkflowExecution{WorkflowId: id}, &in); err != nil {
		return nil
	}
	s := &Settings{MaxRecords: in.MaxRecords, MaxBytes: in.MaxBytes, WriteMode: in.WriteMode, AllowedLateness: in.AllowedLateness, MaxWindowIDs: in.MaxWindowIDs,
		ReadsRegistry: in.Schemas.Registry}
	if s.WriteMode != contract.WriteModeStorageWrite {
		s.WriteMode = contract.WriteModeLoad // anything else writes with load jobs
	}
	if pr := o.queryProgress(ctx, id); pr != nil && pr.MaxRecords > 0 {
		s.MaxRecords, s.MaxBytes = pr.MaxRecords, pr.MaxBytes
	}
	return s
}
