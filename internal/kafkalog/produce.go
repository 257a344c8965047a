package kafkalog

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Message is a record to produce.
type Message struct {
	// Partition is where the message goes with ToPartition.
	Partition  int
	Key, Value []byte
	// Time is the record's timestamp (CreateTime); zero: when sent.
	Time time.Time
}

// Partitioner chooses a message's partition.
type Partitioner int

const (
	// ToPartition sends each message to its Message.Partition.
	ToPartition Partitioner = iota
	// ByKey sends each message to PartitionForKey of its key, as the Java
	// client's default partitioner does.
	ByKey
	// RoundRobin spreads messages over the partitions in turn.
	RoundRobin
)

// ProducerOptions shape a Producer's requests; zero values take
// kafka-go's defaults (batches of 100 messages or 1 MiB, sent after
// 1 s, 10 attempts).
type ProducerOptions struct {
	Partitioner  Partitioner
	BatchSize    int
	BatchBytes   int64
	BatchTimeout time.Duration
	MaxAttempts  int
}

// Producer sends messages to one topic, acknowledged by all in-sync
// replicas. Close it when done: it holds connections.
type Producer struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// Producer returns a Producer to topic.
func (c Cluster) Producer(topic string, o ProducerOptions) *Producer {
	t := c.transport()
	var b kafka.Balancer
	switch o.Partitioner {
	case ByKey:
		b = kafka.Murmur2Balancer{}
	case RoundRobin:
		b = &kafka.RoundRobin{}
	default:
		b = toPartition{}
	}
	return &Producer{
		w: &kafka.Writer{
			Addr: kafka.TCP(c.Brokers...), Transport: t, Topic: topic, Balancer: b, RequiredAcks: kafka.RequireAll,
			BatchSize: o.BatchSize, BatchBytes: o.BatchBytes, BatchTimeout: o.BatchTimeout, MaxAttempts: o.MaxAttempts,
		},
		transport: t,
	}
}

// Produce sends msgs and returns once every one is acknowledged, or with
// the first error; each partition's messages keep their order.
func (p *Producer) Produce(ctx context.Context, msgs ...Message) error {
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		km[i] = kafka.Message{Partition: m.Partition, Key: m.Key, Value: m.Value, Time: m.Time}
	}
	if err := p.w.WriteMessages(ctx, km...); err != nil {
		return fmt.Errorf("produce %d messages to %s: %w", len(msgs), p.w.Topic, err)
	}
	return nil
}

// Close flushes and closes the producer and its connections.
func (p *Producer) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections() // a Writer leaves a transport it did not make open
	return err
}

// PartitionForKey is the partition of n that the Java client's default
// partitioner (murmur2 of the key) gives key.
func PartitionForKey(key []byte, n int) int {
	var buf [256]int // no garbage a record for most topics
	ids := buf[:0]
	for i := range n {
		ids = append(ids, i)
	}
	return kafka.Murmur2Balancer{}.Balance(kafka.Message{Key: key}, ids...)
}

// toPartition sends each message to the partition it names.
type toPartition struct{}

func (toPartition) Balance(msg kafka.Message, _ ...int) int { return msg.Partition }
