package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/paystream/paystream/internal/faults"
)

// CommitInput is the offset to commit for a partition: the end of the last
// loaded batch, which is the next offset to read.
type CommitInput struct {
	Topic     string
	Partition int
	Offset    int64
}

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
func (a *Activities) CommitOffsets(ctx context.Context, in CommitInput) error {
	faults.At("commit")
	current, err := a.committed(ctx, in.Topic, in.Partition)
	if err != nil {
		return err
	}
	if current >= in.Offset {
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

// committed is the group's committed offset of a partition, -1 for none.
func (a *Activities) committed(ctx context.Context, topic string, partition int) (int64, error) {
	resp, err := a.kafkaClient().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: a.ConsumerGroup, Topics: map[string][]int{topic: {partition}}})
	if err == nil && resp.Error != nil && !errors.Is(resp.Error, kafka.GroupIdNotFound) {
		err = resp.Error
	}
	if err != nil {
		return 0, fmt.Errorf("read the committed offset of %s/%d for group %s: %w", topic, partition, a.ConsumerGroup, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition && p.Error == nil {
			return p.CommittedOffset, nil
		}
	}
	return -1, nil
}
