package contract

import (
	"fmt"
	"strings"
)

// MaxPoolMembers caps the workers one pool holds. Each member costs the
// pool a lease (an activity and its heartbeats) and a share of every
// rebalance; more workers than this would each get few or no partitions
// of any topic paystream is built for, so a join past it is refused
// rather than let anyone who can signal the pool grow its history.
const MaxPoolMembers = 256

// CheckJoin says why the pool of taskQueue, with members members, refuses
// a join of queue, or nil when it takes it: only a worker's own queue
// (WorkerQueue of taskQueue) may join, and only while the pool is below
// MaxPoolMembers. A member joining again is the caller's to accept first.
func CheckJoin(taskQueue, queue string, members int) error {
	identity, ok := strings.CutPrefix(queue, taskQueue+"/")
	switch {
	case !ok || identity == "":
		return fmt.Errorf("join of queue %q refused: not a worker queue of task queue %q (%s/<worker identity>)", queue, taskQueue, taskQueue)
	case members >= MaxPoolMembers:
		return fmt.Errorf("join of queue %q refused: the pool of task queue %q has %d members, at most %d (contract.MaxPoolMembers)", queue, taskQueue, members, MaxPoolMembers)
	}
	return nil
}

// ErrTypeLeaseRefused is a pool lease's error when it was scheduled on a
// queue that is not its worker's own.
const ErrTypeLeaseRefused = "LeaseRefused"
