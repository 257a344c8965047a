// Package kafkalog reads the payments topic as what it is to paystream: an
// immutable log of partitions, offsets and records.
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Partitions returns the topic's partitions, in order.
func Partitions(ctx context.Context, kc Cluster, topic string) ([]kafka.Partition, error) {
	if len(kc.Brokers) == 0 {
		return nil, errors.New("no Kafka brokers given")
	}
	conn, err := kc.Dialer(5*time.Second).DialContext(ctx, "tcp", kc.Brokers[0])
	if err != nil {
		return nil, fmt.Errorf("connect to Kafka at %s: %w", kc, err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		return nil, fmt.Errorf("read partitions of topic %s: %w", topic, err)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("topic %s does not exist on %s", topic, kc.Brokers[0])
	}
	ordered := make([]kafka.Partition, len(parts))
	for _, p := range parts {
		if p.ID < 0 || p.ID >= len(parts) {
			return nil, fmt.Errorf("topic %s: unexpected partition id %d", topic, p.ID)
		}
		ordered[p.ID] = p
	}
	return ordered, nil
}

// HighWatermarks returns each partition's next offset (the end of its log).
func HighWatermarks(ctx context.Context, kc Cluster, topic string) ([]int64, error) {
	parts, err := Partitions(ctx, kc, topic)
	if err != nil {
		return nil, err
	}
	client := kc.Client(10 * time.Second)
	defer client.Close()
	ids := make([]int, len(parts))
	for i, p := range parts {
		ids[i] = p.ID
	}
	ends, err := client.lastOffsets(ctx, topic, ids)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(parts))
	for p, end := range ends {
		out[p] = end
	}
	return out, nil
}

// HighWatermark returns a partition's next offset (the end of its log)
// over the client's kept connections: for polling, where dialing the
// leader each time (as Bounds does) would cost a connection, and with
// TLS or SASL a handshake, every poll.
func (c *Client) HighWatermark(ctx context.Context, topic string, partition int) (int64, error) {
	ends, err := c.lastOffsets(ctx, topic, []int{partition})
	if err != nil {
		return 0, err
	}
	end, ok := ends[partition]
	if !ok {
		return 0, fmt.Errorf("list offsets of %s/%d: no answer for the partition", topic, partition)
	}
	return end, nil
}

// lastOffsets asks for the end of each of the topic's given partitions.
func (c *Client) lastOffsets(ctx context.Context, topic string, partitions []int) (map[int]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	resp, err := c.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets of topic %s: %w", topic, err)
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// CommittedOffsets returns the group's committed offset per partition,
// -1 where it has none.
func CommittedOffsets(ctx context.Context, kc Cluster, group, topic string, partitions int) ([]int64, error) {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	c := kc.Client(10 * time.Second)
	defer c.Close()
	resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, err)
	}
	out := make([]int64, partitions)
	for i := range out {
		out[i] = -1
	}
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return out, nil // nothing committed yet
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, resp.Error)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error == nil && p.Partition < partitions {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}
