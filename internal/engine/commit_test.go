package engine

import (
	"context"
	"testing"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
)

// TestCommitNeverMovesBack: a zombie Load that wakes after later batches
// committed commits its older end; the group's offset stays where the
// later batches left it, and goes on forward from there.
func TestCommitNeverMovesBack(t *testing.T) {
	kafka, _ := simulatedLog(t, "commits", simulation.DefaultOptions(), 10)
	a := New(Config{Kafka: kafka, ConsumerGroup: "g"})
	defer a.Close()
	for _, step := range []struct {
		commit, want int64
	}{{200, 200}, {100, 200}, {200, 200}, {300, 300}} {
		if err := a.commitOffset(context.Background(), "commits", 0, step.commit); err != nil {
			t.Fatal(err)
		}
		got, err := kafkalog.CommittedOffsets(context.Background(), kafka, "g", "commits", 1)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != step.want {
			t.Fatalf("after committing %d the group is at %d, want %d", step.commit, got[0], step.want)
		}
	}
}
