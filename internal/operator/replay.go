package operator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/progress"
	"github.com/paystream/paystream/workflows"
)

// QuarantinedBatch is a batch with records of one reason in quarantine.
type QuarantinedBatch struct {
	Range   contract.Range
	Records int64
}

// Replayable says whether records of reason may be replayed: late ones,
// and those turned away for their schema, which a fixed schema makes
// readable. The others (malformed, invalid, conflicting) never load.
func Replayable(reason string) bool {
	return reason == contract.ReasonLate || strings.HasPrefix(reason, "schema_")
}

// Quarantined lists the batches of the given partitions (all when none)
// within [from, to) that quarantined records of reason (late, or a
// schema_ reason), in partition and offset order: what replay-quarantine
// would replay.
func (o *Operator) Quarantined(ctx context.Context, reason string, partitions []int, from, to int64) ([]QuarantinedBatch, error) {
	params := []bigquery.QueryParameter{{Name: "topic", Value: o.Config.Topic}, {Name: "from", Value: from}, {Name: "to", Value: to}}
	onlySome := ""
	if len(partitions) > 0 {
		// Only with partitions: the emulator answers an empty array
		// parameter with an error the client retries forever.
		parts := make([]int64, 0, len(partitions))
		for _, p := range partitions {
			parts = append(parts, int64(p))
		}
		onlySome = "AND kafka_partition IN UNNEST(@partitions) "
		params = append(params, bigquery.QueryParameter{Name: "partitions", Value: parts})
	}
	sql := fmt.Sprintf("SELECT kafka_partition, start_offset, end_offset, late AS records FROM `%s.%s.batch_ledger` "+
		"WHERE kafka_topic = @topic AND late > 0 AND end_offset > @from AND start_offset < @to %sORDER BY kafka_partition, start_offset",
		o.BigQuery.Project(), o.Config.BigQueryDataset, onlySome)
	if reason != contract.ReasonLate {
		// The ledger counts the other reasons together: ingest_errors
		// says which batches hold records of this one. Only batches
		// behind their partition's dedup window: a record replayed while
		// the window could still take a resend of it as new (its
		// schema's records are outside the window) would load twice;
		// behind it, a resend with its event_time is late.
		sql = fmt.Sprintf("SELECT l.kafka_partition, l.start_offset, l.end_offset, e.records FROM "+
			"(SELECT batch_id, COUNT(DISTINCT kafka_offset) AS records FROM `%[1]s.%[2]s.ingest_errors` WHERE kafka_topic = @topic AND reason = @reason GROUP BY batch_id) AS e "+
			"JOIN (SELECT DISTINCT batch_id, kafka_partition, start_offset, end_offset FROM `%[1]s.%[2]s.batch_ledger` WHERE kafka_topic = @topic) AS l ON l.batch_id = e.batch_id "+
			"JOIN (SELECT kafka_partition, MAX(next_window_start) AS window_start FROM `%[1]s.%[2]s.batch_ledger` WHERE kafka_topic = @topic GROUP BY kafka_partition) AS w ON w.kafka_partition = l.kafka_partition "+
			"WHERE l.end_offset <= w.window_start AND l.end_offset > @from AND l.start_offset < @to %[3]sORDER BY l.kafka_partition, l.start_offset",
			o.BigQuery.Project(), o.Config.BigQueryDataset, strings.ReplaceAll(onlySome, "kafka_partition", "l.kafka_partition"))
		params = append(params, bigquery.QueryParameter{Name: "reason", Value: reason})
	}
	q := o.BigQuery.Query(sql)
	q.Parameters = params
	it, err := q.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read batch_ledger: %w", err)
	}
	var out []QuarantinedBatch
	for {
		var row struct {
			Partition int64 `bigquery:"kafka_partition"`
			Start     int64 `bigquery:"start_offset"`
			End       int64 `bigquery:"end_offset"`
			Records   int64 `bigquery:"records"`
		}
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read batch_ledger: %w", err)
		}
		out = append(out, QuarantinedBatch{Range: contract.Range{Topic: o.Config.Topic, Partition: int(row.Partition), Start: row.Start, End: row.End}, Records: row.Records})
	}
}

// ErrReplayRunning means another replay-quarantine of the topic runs.
var ErrReplayRunning = errors.New("another replay-quarantine of this topic is running; wait for it (starter status shows the pipeline, the web UI the replay)")

// ReplayQuarantine replays the quarantined late records of batches, one
// batch at a time in one QuarantineReplays run per topic: a second run
// while one is going is refused. Each batch's replay happens at most once;
// batches replayed before are reported as already replayed.
func (o *Operator) ReplayQuarantine(ctx context.Context, reason string, batches []QuarantinedBatch) ([]contract.ReplayOutcome, error) {
	sources := make([]contract.Range, 0, len(batches))
	for _, b := range batches {
		sources = append(sources, b.Range)
	}
	id := contract.QuarantineReplaysID(o.Config.Topic)
	run, err := o.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                o.Config.TaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("replay the quarantine of %d batches of %s", len(sources), o.Config.Topic),
	}, workflows.QuarantineReplays, sources, reason)
	if errors.As(err, new(*serviceerror.WorkflowExecutionAlreadyStarted)) {
		return nil, ErrReplayRunning
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", id, err)
	}
	bar := progress.New(o.Progress, "batches replayed", int64(len(sources)))
	done := make(chan struct{})
	var polling sync.WaitGroup
	polling.Add(1)
	go func() {
		defer polling.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Second):
			}
			if v, err := o.Temporal.QueryWorkflow(ctx, id, run.GetRunID(), contract.ProgressQuery); err == nil {
				var n int64
				if v.Get(&n) == nil {
					bar.Set(n)
				}
			}
		}
	}()
	var out []contract.ReplayOutcome
	err = run.Get(ctx, &out)
	close(done)
	polling.Wait()
	bar.Done(int64(len(out)))
	if err != nil {
		return out, fmt.Errorf("%s: %w", id, err)
	}
	return out, nil
}
