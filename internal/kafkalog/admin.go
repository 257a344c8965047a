package kafkalog

import (
	"context"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// CommitOffset commits offset as group's offset of topic/partition with
// metadata, as a simple (not group-managed) consumer: unconditionally,
// whatever the group's offset was.
func (c *Client) CommitOffset(ctx context.Context, group, topic string, partition int, offset int64, metadata string) error {
	resp, err := c.kc.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      group,
		GenerationID: -1, // a simple consumer
		Topics:       map[string][]kafka.OffsetCommit{topic: {{Partition: partition, Offset: offset, Metadata: metadata}}},
	})
	if err != nil {
		return fmt.Errorf("commit offset %d of %s/%d for group %s: %w", offset, topic, partition, group, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return fmt.Errorf("commit offset %d of %s/%d for group %s: %w", offset, topic, partition, group, p.Error)
		}
	}
	return nil
}

// CreateTopic creates topic with partitions partitions, each on one
// replica (the local broker's; a production topic is made by its
// owners, with their replication).
func (c *Client) CreateTopic(ctx context.Context, topic string, partitions int) error {
	resp, err := c.kc.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		return fmt.Errorf("create topic %s with %d partitions on %s: %w", topic, partitions, c.cluster, err)
	}
	return nil
}

// GrowTopic gives topic total partitions in all (Kafka only adds them).
func (c *Client) GrowTopic(ctx context.Context, topic string, total int) error {
	resp, err := c.kc.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: int32(total)}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		return fmt.Errorf("grow topic %s to %d partitions on %s: %w", topic, total, c.cluster, err)
	}
	return nil
}

// DeleteTopic deletes topic and its records.
func (c *Client) DeleteTopic(ctx context.Context, topic string) error {
	resp, err := c.kc.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		return fmt.Errorf("delete topic %s on %s: %w", topic, c.cluster, err)
	}
	return nil
}
