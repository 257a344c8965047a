package pipeline

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/paystream/paystream/internal/engine"
)

// DefaultPartitionMetricsEvery is how often a worker reads its topic's
// offsets for the partition metrics: well within any alert's minutes, and
// three small requests to Kafka a worker each time.
const DefaultPartitionMetricsEvery = 15 * time.Second

// exportPartitions exports, every every until ctx ends, what Kafka holds
// of each partition of the topic (metrics.Pipeline.PartitionOffsets). It
// reads the broker, not any workflow, so that a partition that is paused,
// failed, backing off or terminated keeps its series, and every worker of
// the pool exports the same values. A failure is logged once until the
// next success; the series keep their last values meanwhile.
func (w *Worker) exportPartitions(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		err := w.readPartitions(ctx, every)
		if err != nil && !failing && ctx.Err() == nil {
			w.Engine.Log.Warn("partition offsets not read from Kafka; the partition metrics keep their last values", zap.Error(err))
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readPartitions reads every partition's commit, then its log end, so
// that a commit made meanwhile never shows beyond the log end read.
func (w *Worker) readPartitions(ctx context.Context, timeout time.Duration) error {
	kc := w.Engine.KafkaClient()
	if kc == nil {
		return nil // stopped
	}
	ctx, cancel := context.WithTimeout(ctx, max(timeout, 5*time.Second))
	defer cancel()
	ids, err := kc.Partitions(ctx, w.cfg.Topic)
	if err != nil {
		return err
	}
	commits, err := kc.Commits(ctx, w.cfg.ConsumerGroup, w.cfg.Topic, ids)
	if err != nil {
		return err
	}
	bounds, err := kc.AllBounds(ctx, w.cfg.Topic)
	if err != nil {
		return err
	}
	if len(bounds) < len(commits) {
		return fmt.Errorf("topic %s: %d partitions, then %d", w.cfg.Topic, len(commits), len(bounds))
	}
	for p, c := range commits {
		loadedAt, _ := engine.LoadedAt(c.Metadata)
		w.Engine.Metrics.PartitionOffsets(w.cfg.Topic, p, c.Offset, bounds[p].End, loadedAt)
	}
	return nil
}
