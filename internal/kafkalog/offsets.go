// Package kafkalog reads the payments topic as what it is to paystream: an
// immutable log of partitions, offsets and records, read as a
// read_committed consumer reads it, from whichever broker leads each
// partition.
package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// Bounds are where a partition's log starts and ends.
type Bounds struct {
	First int64 // the first offset still in the log
	// Stable is the last stable offset: every transaction below it has
	// committed or aborted, so the log below it never changes. A range to
	// ingest ends at or before it; an open transaction holds it at the
	// transaction's first offset.
	Stable int64
	End    int64 // the high watermark: the offset the next record gets
}

// Partitions returns the topic's partition IDs, 0 to n-1 in order, from
// any broker of the cluster that answers.
func Partitions(ctx context.Context, kc Cluster, topic string) ([]int, error) {
	c := kc.Client(10 * time.Second)
	defer c.Close()
	return c.Partitions(ctx, topic)
}

// Partitions returns the topic's partition IDs, 0 to n-1 in order, as the
// client's metadata knows them (refreshed every few seconds, so partitions
// added to the topic show up).
func (c *Client) Partitions(ctx context.Context, topic string) ([]int, error) {
	var failing retrier
	for {
		parts, err := c.partitions(ctx, topic)
		if err == nil {
			return parts, nil
		}
		if errors.Is(err, errNoTopic) {
			return nil, err
		}
		if werr := failing.wait(ctx, err); werr != nil {
			return nil, fmt.Errorf("read partitions of topic %s from %s: %w", topic, c.cluster, werr)
		}
	}
}

var errNoTopic = errors.New("topic does not exist")

func (c *Client) partitions(ctx context.Context, topic string) ([]int, error) {
	resp, err := c.kc.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) || (t.Error == nil && len(t.Partitions) == 0) {
			return nil, fmt.Errorf("topic %s on %s: %w", topic, c.cluster, errNoTopic)
		}
		if t.Error != nil {
			return nil, t.Error
		}
		ids := make([]int, len(t.Partitions))
		for i, p := range t.Partitions {
			ids[i] = p.ID
		}
		slices.Sort(ids)
		for i, id := range ids {
			if id != i {
				return nil, fmt.Errorf("topic %s: partition ids are not 0..%d (found %d)", topic, len(ids)-1, id)
			}
		}
		return ids, nil
	}
	return nil, fmt.Errorf("topic %s on %s: %w", topic, c.cluster, errNoTopic)
}

// AllBounds returns the bounds of every partition of the topic.
func AllBounds(ctx context.Context, kc Cluster, topic string) ([]Bounds, error) {
	c := kc.Client(10 * time.Second)
	defer c.Close()
	return c.AllBounds(ctx, topic)
}

// AllBounds returns the bounds of every partition of the topic.
func (c *Client) AllBounds(ctx context.Context, topic string) ([]Bounds, error) {
	ids, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	m, err := c.bounds(ctx, topic, ids)
	if err != nil {
		return nil, err
	}
	out := make([]Bounds, len(ids))
	for p, b := range m {
		out[p] = b
	}
	return out, nil
}

// Bounds returns where a partition's log starts, is stable, and ends.
func (c *Client) Bounds(ctx context.Context, topic string, partition int) (Bounds, error) {
	m, err := c.bounds(ctx, topic, []int{partition})
	if err != nil {
		return Bounds{}, err
	}
	return m[partition], nil
}

// Stable returns a partition's last stable offset alone: one request, for
// polling.
func (c *Client) Stable(ctx context.Context, topic string, partition int) (int64, error) {
	var failing retrier
	for {
		resp, err := c.kc.ListOffsets(ctx, &kafka.ListOffsetsRequest{IsolationLevel: kafka.ReadCommitted,
			Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(partition)}}})
		if err == nil {
			for _, po := range resp.Topics[topic] {
				if po.Partition == partition {
					if err = po.Error; err == nil {
						return po.LastOffset, nil
					}
				}
			}
			if err == nil {
				err = fmt.Errorf("%s/%d: no offset in the answer", topic, partition)
			}
		}
		if werr := failing.wait(ctx, err); werr != nil {
			return 0, fmt.Errorf("list the stable offset of %s/%d: %w", topic, partition, werr)
		}
	}
}

// bounds asks the partitions' leaders for their log bounds: the first and
// last offsets as a read_uncommitted consumer sees them, the last as a
// read_committed one does.
func (c *Client) bounds(ctx context.Context, topic string, partitions []int) (map[int]Bounds, error) {
	var failing retrier
	for {
		out, err := c.listOffsets(ctx, topic, partitions)
		if err == nil {
			return out, nil
		}
		if werr := failing.wait(ctx, err); werr != nil {
			return nil, fmt.Errorf("list offsets of topic %s: %w", topic, werr)
		}
	}
}

func (c *Client) listOffsets(ctx context.Context, topic string, partitions []int) (map[int]Bounds, error) {
	ends := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}, IsolationLevel: kafka.ReadUncommitted}
	stable := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}, IsolationLevel: kafka.ReadCommitted}
	for _, p := range partitions {
		ends.Topics[topic] = append(ends.Topics[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		stable.Topics[topic] = append(stable.Topics[topic], kafka.LastOffsetOf(p))
	}
	out := map[int]Bounds{}
	for _, req := range []*kafka.ListOffsetsRequest{ends, stable} {
		resp, err := c.kc.ListOffsets(ctx, req)
		if err != nil {
			return nil, err
		}
		for _, po := range resp.Topics[topic] {
			if po.Error != nil {
				return nil, fmt.Errorf("%s/%d: %w", topic, po.Partition, po.Error)
			}
			b := out[po.Partition]
			if req == ends {
				b.First, b.End = po.FirstOffset, po.LastOffset
			} else {
				b.Stable = po.LastOffset
			}
			out[po.Partition] = b
		}
	}
	for _, p := range partitions {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("%s/%d: no offsets in the answer", topic, p)
		}
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
	return c.Committed(ctx, group, topic, ids)
}

// Committed returns the group's committed offset of each of partitions,
// in their order, -1 where it has none.
func (c *Client) Committed(ctx context.Context, group, topic string, partitions []int) ([]int64, error) {
	commits, err := c.Commits(ctx, group, topic, partitions)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(commits))
	for i, cm := range commits {
		out[i] = cm.Offset
	}
	return out, nil
}

// Commit is a group's committed offset of a partition (-1: none) and the
// metadata string committed with it.
type Commit struct {
	Offset   int64
	Metadata string
}

// Commits returns the group's commit of each of partitions, in their
// order.
func (c *Client) Commits(ctx context.Context, group, topic string, partitions []int) ([]Commit, error) {
	resp, err := c.kc.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, err)
	}
	out := make([]Commit, len(partitions))
	for i := range out {
		out[i].Offset = -1
	}
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return out, nil // nothing committed yet
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, resp.Error)
	}
	for _, p := range resp.Topics[topic] {
		if i := slices.Index(partitions, p.Partition); i >= 0 && p.Error == nil {
			out[i] = Commit{Offset: p.CommittedOffset, Metadata: p.Metadata}
		}
	}
	return out, nil
}

// BoundsOf returns a partition's bounds with a client of its own.
func BoundsOf(ctx context.Context, kc Cluster, topic string, partition int) (Bounds, error) {
	c := kc.Client(10 * time.Second)
	defer c.Close()
	return c.Bounds(ctx, topic, partition)
}

// HighWatermarks returns each partition's high watermark (the end of its
// log, open transactions included).
func HighWatermarks(ctx context.Context, kc Cluster, topic string) ([]int64, error) {
	all, err := AllBounds(ctx, kc, topic)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(all))
	for p, b := range all {
		out[p] = b.End
	}
	return out, nil
}
