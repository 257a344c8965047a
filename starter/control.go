package main

import (
	"fmt"
	"io"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/progress"
)

// controlOutput is what pause, resume, drain and set-batch print with
// --json: per partition where it stands and what happened, and for a
// set-batch of the whole topic the size partitions added later start with.
type controlOutput struct {
	Topic      *topicOutput      `json:"topic,omitempty"`
	Partitions []partitionOutput `json:"partitions"`
}

type topicOutput struct {
	Topic string `json:"topic"`
	// Supervised is false when no supervisor runs: partitions added to
	// the topic wait for `starter start`, which sets their size.
	Supervised bool   `json:"supervised"`
	Partitions int    `json:"partitions,omitempty"` // the supervisor keeps those below
	MaxRecords int    `json:"max_records,omitempty"`
	MaxBytes   int64  `json:"max_bytes,omitempty"`
	Message    string `json:"message"`
}

type partitionOutput struct {
	Partition  int    `json:"partition"`
	State      string `json:"state"`
	Next       *int64 `json:"next,omitempty"` // every offset below is loaded and committed
	MaxRecords int    `json:"max_records"`
	MaxBytes   int64  `json:"max_bytes"`
	Message    string `json:"message"`
}

// controlOutputOf turns the answers of a control command into output.
func controlOutputOf(name, topic string, res []contract.ControlResult, sb *operator.SetBatchResult) controlOutput {
	var out controlOutput
	if sb != nil {
		res = sb.Partitions
		t := &topicOutput{Topic: topic, Supervised: sb.Topic != nil}
		if sb.Topic != nil {
			t.Partitions, t.MaxRecords, t.MaxBytes = sb.Topic.Partitions, sb.Topic.MaxRecords, sb.Topic.MaxBytes
			t.Message = fmt.Sprintf("topic %s: partitions its supervisor starts from now on take %s", topic, batchSize(t.MaxRecords, t.MaxBytes))
		} else {
			t.Message = fmt.Sprintf("topic %s: no supervisor runs (stopped, or never started): a partition added to the topic waits for starter start, which sets its size", topic)
		}
		out.Topic = t
	}
	for _, r := range res {
		next := r.Next
		out.Partitions = append(out.Partitions, partitionOutput{Partition: r.Partition, State: r.State, Next: &next,
			MaxRecords: r.MaxRecords, MaxBytes: r.MaxBytes, Message: controlLine(name, r)})
	}
	if sb != nil && sb.Topic != nil {
		for _, p := range sb.Later {
			out.Partitions = append(out.Partitions, partitionOutput{Partition: p, State: "not started yet",
				MaxRecords: sb.Topic.MaxRecords, MaxBytes: sb.Topic.MaxBytes,
				Message: fmt.Sprintf("partition %d: not started yet; the supervisor starts it within %s with %s", p, sb.Topic.Every.Round(time.Second),
					batchSize(sb.Topic.MaxRecords, sb.Topic.MaxBytes))})
		}
	}
	return out
}

// writeControl prints a control command's output: lines, or JSON.
func writeControl(w io.Writer, jsonOut bool, out controlOutput) error {
	if jsonOut {
		return writeJSON(w, out)
	}
	if out.Topic != nil {
		fmt.Fprintln(w, out.Topic.Message)
	}
	for _, p := range out.Partitions {
		fmt.Fprintln(w, p.Message)
	}
	return nil
}

// batchSize says a batch size in words.
func batchSize(records int, bytes int64) string {
	s := fmt.Sprintf("batches of up to %s records", progress.Count(int64(records)))
	if bytes > 0 {
		s += fmt.Sprintf(" or %s bytes", progress.Count(bytes))
	}
	return s
}

// reconcileOutput is what reconcile prints with --json.
type reconcileOutput struct {
	OK     bool          `json:"ok"`
	Failed int           `json:"failed"`
	Checks []checkOutput `json:"checks"`
}

type checkOutput struct {
	Name string `json:"name"`
	Got  string `json:"got"`
	Want string `json:"want"`
	OK   bool   `json:"ok"`
}

func reconcileOutputOf(r operator.Report) reconcileOutput {
	out := reconcileOutput{OK: r.OK(), Failed: r.Failed(), Checks: []checkOutput{}}
	for _, c := range r.Checks {
		out.Checks = append(out.Checks, checkOutput{Name: c.Name, Got: c.Got, Want: c.Want, OK: c.OK})
	}
	return out
}
