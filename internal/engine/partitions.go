package engine

import (
	"context"

	"github.com/paystream/paystream/contract"
)

// NewPartitions returns the first offset still in the log of each of the
// topic's partitions numbered From and up, in order: the partitions added
// since the topic's supervisor last looked, and where each one starts.
func (e *Engine) NewPartitions(ctx context.Context, in contract.PartitionsInput) ([]int64, error) {
	parts, err := e.client.Partitions(ctx, in.Topic)
	if err != nil {
		return nil, err
	}
	var firsts []int64
	for p := in.From; p < len(parts); p++ {
		b, err := e.client.Bounds(ctx, in.Topic, p)
		if err != nil {
			return nil, err
		}
		firsts = append(firsts, b.First)
	}
	return firsts, nil
}
