package activities

import (
	"context"
	"fmt"

	"github.com/paystream/paystream/contract"

	"github.com/segmentio/kafka-go"

	"github.com/paystream/paystream/internal/faults"
)

// CommitOffsets records the consumer-group offset after every table of the
// batch is loaded (invariant 5), so standard lag tooling sees paystream's
// progress. Committing the same offset again is harmless. Load calls it as
// its last step; it stays an activity for PartitionIngest runs recorded
// before that, which schedule it after each batch.
//
// It never moves the group's offset backwards. A Load that stalled past its
// heartbeat timeout (a zombie) may wake after its retry and later batches
// have committed; its commit of an older end would hand standard consumers
// and lag tooling records already loaded. Kafka's commit is unconditional
// for a simple consumer, so the committed offset is read first: the race
// left is between that read and the commit, milliseconds, not the zombie's
// minutes. A rewind on purpose is an operator's, with Kafka's own tools.
func (a *Activities) CommitOffsets(ctx context.Context, in contract.CommitInput) error {
	faults.At("commit")
	current, err := a.kafkaClient().Committed(ctx, a.ConsumerGroup, in.Topic, []int{in.Partition})
	if err != nil {
		return fmt.Errorf("commit offset %d of %s/%d: %w", in.Offset, in.Topic, in.Partition, err)
	}
	if current[0] >= in.Offset {
		return nil
	}
	resp, err := a.kafkaClient().OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      a.ConsumerGroup,
		GenerationID: -1, // a simple (not group-managed) consumer
		Topics:       map[string][]kafka.OffsetCommit{in.Topic: {{Partition: in.Partition, Offset: in.Offset}}},
	})
	if err != nil {
		return fmt.Errorf("commit offset %d of %s/%d for group %s: %w", in.Offset, in.Topic, in.Partition, a.ConsumerGroup, err)
	}
	for _, p := range resp.Topics[in.Topic] {
		if p.Error != nil {
			return fmt.Errorf("commit offset %d of %s/%d for group %s: %w", in.Offset, in.Topic, in.Partition, a.ConsumerGroup, p.Error)
		}
	}
	return nil
}
