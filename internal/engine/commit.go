package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/paystream/paystream/internal/faults"
)

// commitLoadedAt starts the metadata of a commit after a load: the time
// of the load, so that every worker, and Kafka's own tools, can tell when
// a partition last loaded from the broker alone, whether or not its
// workflow still runs.
const commitLoadedAt = "loaded_at="

// CommitMetadata is the metadata of the commit after a load at loadedAt.
func CommitMetadata(loadedAt time.Time) string {
	return commitLoadedAt + loadedAt.UTC().Format(time.RFC3339Nano)
}

// LoadedAt reads the time of the load back from a commit's metadata;
// false for a commit that is not a paystream load's (none yet, an older
// version's, or a tool's).
func LoadedAt(metadata string) (time.Time, bool) {
	v, ok := strings.CutPrefix(metadata, commitLoadedAt)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// commitOffset records the consumer-group offset after every table of the
// batch is loaded (invariant 5), so standard lag tooling sees paystream's
// progress, with the time of the load as its metadata (CommitMetadata). Committing the same offset again is harmless. Load calls it as
// its last step.
//
// It never moves the group's offset backwards. A Load that stalled past its
// heartbeat timeout (a zombie) may wake after its retry and later batches
// have committed; its commit of an older end would hand standard consumers
// and lag tooling records already loaded. Kafka's commit is unconditional
// for a simple consumer, so the committed offset is read first: the race
// left is between that read and the commit, milliseconds, not the zombie's
// minutes. A rewind on purpose is an operator's, with Kafka's own tools.
func (e *Engine) commitOffset(ctx context.Context, topic string, partition int, offset int64) error {
	faults.At("commit")
	current, err := e.client.Committed(ctx, e.ConsumerGroup, topic, []int{partition})
	if err != nil {
		return fmt.Errorf("commit offset %d of %s/%d: %w", offset, topic, partition, err)
	}
	if current[0] >= offset {
		return nil
	}
	return e.client.CommitOffset(ctx, e.ConsumerGroup, topic, partition, offset, CommitMetadata(time.Now()))
}
