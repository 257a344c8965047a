package workflows

import (
	"fmt"
	"testing"

	"github.com/paystream/paystream/contract"
)

func partitionIDs(n int, queue string) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("ingest/payments/%d", i)] = queue
	}
	return m
}

func loads(assigned map[string]string) map[string]int {
	n := map[string]int{}
	for _, q := range assigned {
		n[q]++
	}
	return n
}

func TestAssignSpreadsAndKeeps(t *testing.T) {
	cases := []struct {
		name       string
		members    []string
		partitions map[string]string
		want       map[string]int // load per member
		moved      int            // partitions whose queue changed, at most
	}{
		{"fresh", []string{"a", "b", "c"}, partitionIDs(6, ""), map[string]int{"a": 2, "b": 2, "c": 2}, 6},
		{"two join one that holds all", []string{"a", "b", "c"}, partitionIDs(6, "a"), map[string]int{"a": 2, "b": 2, "c": 2}, 4},
		{"uneven", []string{"a", "b", "c"}, partitionIDs(7, ""), map[string]int{"a": 3, "b": 2, "c": 2}, 7},
		{"one left", []string{"a", "b"}, map[string]string{"p0": "a", "p1": "a", "p2": "b", "p3": "b", "p4": "c", "p5": "c"}, map[string]int{"a": 3, "b": 3}, 2},
		{"every worker gone", nil, partitionIDs(3, "a"), map[string]int{"": 3}, 3},
		{"more workers than partitions", []string{"a", "b", "c"}, partitionIDs(2, "a"), map[string]int{"a": 1, "b": 1}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := assign(c.members, c.partitions)
			if len(got) != len(c.partitions) {
				t.Fatalf("assigned %d of %d partitions", len(got), len(c.partitions))
			}
			l := loads(got)
			for m, n := range c.want {
				if l[m] != n {
					t.Errorf("member %s holds %d partitions, want %d (all: %v)", m, l[m], n, l)
				}
			}
			moved := 0
			for id, q := range got {
				if c.partitions[id] != q {
					moved++
				}
			}
			if moved > c.moved {
				t.Errorf("%d partitions moved, at most %d should", moved, c.moved)
			}
			// Deterministic: workflow code replays it.
			again := assign(c.members, c.partitions)
			for id, q := range got {
				if again[id] != q {
					t.Fatalf("a second call put %s on %s, the first on %s", id, again[id], q)
				}
			}
		})
	}
}

// TestStaleAssignmentsDoNotMoveAPartitionBack: the pool's answers may
// arrive out of order. An answer older than one already applied must not
// send the partition back to a worker that has left, nor clear that
// worker's loss; a pool started afresh counts from the start again.
func TestStaleAssignmentsDoNotMoveAPartitionBack(t *testing.T) {
	pl := &placement{lost: map[string]bool{}}
	assigned := contract.Assignment{Queue: "tq/a", Seq: 1, Pool: "run1"}            // a joined
	lostA := contract.Assignment{Queue: "tq/a", Lost: "tq/a", Seq: 2, Pool: "run1"} // a died
	toB := contract.Assignment{Queue: "tq/b", Lost: "tq/a", Seq: 3, Pool: "run1"}   // its partitions go to b
	for _, as := range []contract.Assignment{lostA, toB, assigned} {                // the first arrives last
		pl.apply(as)
	}
	if pl.queue != "tq/b" || !pl.moved("tq/a") {
		t.Fatalf("after a stale answer: queue %q, a moved %v; want tq/b and a lost", pl.queue, pl.moved("tq/a"))
	}
	pl.apply(contract.Assignment{Queue: "tq/c", Seq: 1, Pool: "run2"}) // a new pool
	if pl.queue != "tq/c" {
		t.Errorf("a new pool's first answer: queue %q, want tq/c", pl.queue)
	}
}
