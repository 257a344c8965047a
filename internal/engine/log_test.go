package engine

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/testtier"
)

// simulatedLog starts an in-process Kafka-protocol broker, stopped when
// the test ends, with a one-partition topic holding events simulated
// records made with opts.
func simulatedLog(tb testing.TB, topic string, opts simulation.Options, events int) (kafkalog.Cluster, simulation.Manifest) {
	tb.Helper()
	testtier.NeedsServers(tb)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cluster.Close)
	kc := kafkalog.Plain(cluster.ListenAddrs())
	m, err := simulation.Produce(context.Background(), opts, simulation.ProduceOptions{Kafka: kc, Topic: topic, Events: events})
	if err != nil {
		tb.Fatal(err)
	}
	return kc, m
}
