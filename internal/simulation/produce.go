package simulation

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/paystream/paystream/internal/kafkalog"
)

// ProduceOptions say where the records go and how many.
type ProduceOptions struct {
	Kafka kafkalog.Cluster
	Topic string
	// Events is how many records to send. With Rate > 0 they are paced at
	// Rate records per second of wall time; otherwise sent as fast as the
	// broker takes them.
	Events int
	Rate   float64
	// Progress, when set, gets a line every few seconds.
	Progress io.Writer
	// Encoder, when set, writes the events in another format than JSON
	// (Avro, Protobuf: the Schema Registry wire format).
	Encoder Encoder
}

// Encoder rewrites generated record n, JSON, in another format.
type Encoder interface {
	Encode(n int, value []byte) ([]byte, error)
}

// chunk is how many records go to the producer at once; it batches
// them per partition and keeps each partition's order.
const chunk = 2000

// Produce sends opts.Events records from a generator built with genOpts
// (whose Partitions is replaced by the topic's partition count) and returns
// the manifest, with the partitions' offsets before and after.
func Produce(ctx context.Context, genOpts Options, opts ProduceOptions) (Manifest, error) {
	if opts.Events < 0 {
		return Manifest{}, fmt.Errorf("events must not be negative, got %d", opts.Events)
	}
	parts, err := kafkalog.Partitions(ctx, opts.Kafka, opts.Topic)
	if err != nil {
		return Manifest{}, err
	}
	genOpts.Partitions = len(parts)
	if opts.Rate > 0 {
		genOpts.EventRate = opts.Rate
	}
	gen, err := NewGenerator(genOpts)
	if err != nil {
		return Manifest{}, err
	}
	start, err := kafkalog.HighWatermarks(ctx, opts.Kafka, opts.Topic)
	if err != nil {
		return Manifest{}, err
	}

	// Each record goes to the partition the generator chose (the
	// Java-compatible murmur2 hash of its key), so the manifest knows
	// every record's partition.
	w := opts.Kafka.Producer(opts.Topic, kafkalog.ProducerOptions{
		// A send is retried for about two minutes, as the Java producer's
		// delivery.timeout.ms does, so a broker restart is ridden out.
		Partitioner: kafkalog.ToPartition, BatchSize: chunk, BatchBytes: 8 << 20, BatchTimeout: 5 * time.Millisecond, MaxAttempts: 120,
	})
	defer w.Close()

	began := time.Now()
	lastReport := began
	msgs := make([]kafkalog.Message, 0, chunk)
	for sent := 0; sent < opts.Events; {
		msgs = msgs[:0]
		// Paced sends are small so they leave on time, unless the
		// producer has fallen behind its schedule: then it sends what is
		// owed at once, or each send's round trip would cap the rate.
		paced := chunk
		if opts.Rate > 0 {
			owed := int(time.Since(began).Seconds()*opts.Rate) - sent
			paced = min(chunk, max(1, int(opts.Rate/20), owed))
		}
		for len(msgs) < paced && sent+len(msgs) < opts.Events {
			r := gen.Next()
			// The record's timestamp is when it was produced (CreateTime),
			// which is what end-to-end latency is measured from.
			value := r.Value
			if opts.Encoder != nil {
				if value, err = opts.Encoder.Encode(r.Seq, value); err != nil {
					return gen.Manifest(), err
				}
			}
			msgs = append(msgs, kafkalog.Message{Partition: r.Partition, Key: r.Key, Value: value, Time: time.Now()})
		}
		if opts.Rate > 0 {
			due := began.Add(time.Duration(float64(sent) / opts.Rate * float64(time.Second)))
			select {
			case <-time.After(time.Until(due)):
			case <-ctx.Done():
				return gen.Manifest(), ctx.Err()
			}
		}
		if err := w.Produce(ctx, msgs...); err != nil {
			return gen.Manifest(), fmt.Errorf("produce to %s after %d records: %w", opts.Topic, sent, err)
		}
		sent += len(msgs)
		if opts.Progress != nil && (time.Since(lastReport) > 2*time.Second || sent == opts.Events) {
			lastReport = time.Now()
			fmt.Fprintf(opts.Progress, "simulator: %d/%d records sent (%.0f/s)\n", sent, opts.Events, float64(sent)/time.Since(began).Seconds())
		}
	}
	m := gen.Manifest()
	m.Topic = opts.Topic
	m.StartOffsets = start
	if m.EndOffsets, err = kafkalog.HighWatermarks(ctx, opts.Kafka, opts.Topic); err != nil {
		return m, err
	}
	return m, nil
}
