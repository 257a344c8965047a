package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestControlOnARunningPipeline pauses, resizes, resumes and drains a
// pipeline that is ingesting, through the CLI against the real stack, and
// checks after each that offsets and rows say exactly once: a pause holds
// at a committed batch boundary, nothing moves while paused, batches after
// set-batch have the new size, a drained partition restarts where it
// ended, and reconciliation with the manifest passes to the cent.
func TestControlOnARunningPipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, m, manifest := startOperatorStack(t, ctx, 6000)
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, args, &out); err != nil {
			t.Fatalf("starter %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	status := func() []operator.PartitionStatus {
		t.Helper()
		var st []operator.PartitionStatus
		if err := json.Unmarshal([]byte(cli("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	// offsets reads "partition P: ... offset N" lines into N by P.
	offsets := func(out, verb string) map[int]int64 {
		t.Helper()
		got := map[int]int64{}
		for _, m := range regexp.MustCompile(`partition (\d+): `+verb+` at offset (\d+)`).FindAllStringSubmatch(out, -1) {
			p, _ := strconv.Atoi(m[1])
			got[p], _ = strconv.ParseInt(m[2], 10, 64)
		}
		return got
	}

	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	query := func(sql string) [][]bigquery.Value {
		t.Helper()
		it, err := bq.Query(sql).Read(ctx)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		var out [][]bigquery.Value
		for {
			var row []bigquery.Value
			if err := it.Next(&row); err == iterator.Done {
				return out
			} else if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			out = append(out, row)
		}
	}
	ds := fmt.Sprintf("`%s.%s", cfg.BigQueryProject, cfg.BigQueryDataset)
	// exactlyOnceSoFar checks a partly ingested stream: no transaction_id
	// twice, every batch of the partitions in at balanced, and their ledger ending at
	// its committed offset: nothing loaded that is not committed, nothing
	// committed that is not loaded.
	exactlyOnceSoFar := func(when string, at map[int]int64) {
		t.Helper()
		if n := query("SELECT COUNT(*) FROM " + ds + ".recon_duplicates`")[0][0]; n != int64(0) {
			t.Errorf("%s: %v transaction_ids loaded twice", when, n)
		}
		for p := range at {
			// Only partitions at rest: another may have a batch in flight.
			n := query(fmt.Sprintf("SELECT COUNTIF(NOT balanced) FROM %s.recon_batch_totals` WHERE STARTS_WITH(batch_id, 'batch/%s/%d/')", ds, cfg.Topic, p))[0][0]
			if n != nil && n != int64(0) {
				t.Errorf("%s: partition %d has %v unbalanced batches", when, p, n)
			}
		}
		ends := map[int]int64{}
		for _, row := range query("SELECT kafka_partition, MAX(end_offset) FROM " + ds + ".batch_ledger` GROUP BY 1") {
			ends[int(row[0].(int64))] = row[1].(int64)
		}
		for p, want := range at {
			if ends[p] != want {
				t.Errorf("%s: partition %d's ledger ends at %d, want %d", when, p, ends[p], want)
			}
		}
	}

	cli("start", "--max-records", "400", "--poll-for", "1s")
	paused := offsets(cli("pause"), "paused")
	if len(paused) != 2 {
		t.Fatalf("pause answered for %d partitions, want 2", len(paused))
	}
	st := status()
	for p, at := range paused {
		if st[p].State != contract.StatePaused || st[p].Committed != at && !(at == 0 && st[p].Committed == -1) {
			t.Errorf("partition %d after pausing at %d: %+v", p, at, st[p])
		}
	}
	if paused[0] == m.EndOffsets[0] && paused[1] == m.EndOffsets[1] {
		t.Fatal("both partitions were done before the pause; the test would prove nothing")
	}
	exactlyOnceSoFar("paused", paused)
	time.Sleep(3 * time.Second)
	for p, later := range status() {
		if later.Committed != st[p].Committed || later.BatchesDone != st[p].BatchesDone {
			t.Errorf("partition %d moved while paused: %+v, then %+v", p, st[p], later)
		}
	}

	if out := cli("set-batch", "--records", "250"); len(regexp.MustCompile(`(?m)^partition \d: batches of up to 250 records`).FindAllString(out, -1)) != 2 ||
		!strings.Contains(out, "partitions its supervisor starts from now on take batches of up to 250 records") {
		t.Fatalf("set-batch: %s", out)
	}
	var resumed controlOutput
	if out := cli("resume", "--json"); json.Unmarshal([]byte(out), &resumed) != nil || len(resumed.Partitions) != 2 ||
		resumed.Partitions[0].State != contract.StateIngesting || resumed.Partitions[1].Next == nil || resumed.Partitions[1].MaxRecords != 250 {
		t.Fatalf("resume --json: %s", out)
	}
	time.Sleep(time.Second)
	drained := offsets(cli("drain", "--partition", "0"), "drained")
	if len(drained) != 1 {
		t.Fatal("drain --partition 0 did not answer for partition 0 alone")
	}
	if st := status(); st[0].State != "drained" || st[0].Committed != drained[0] {
		t.Errorf("partition 0 after draining at %d: %+v", drained[0], st[0])
	}
	exactlyOnceSoFar("partition 0 drained", drained)
	// A new run takes its batch size from start's flags, as a first one.
	if out := cli("start", "--max-records", "250", "--poll-for", "1s"); !strings.Contains(out, fmt.Sprintf("started at offset %d", drained[0])) || !strings.Contains(out, "already running") {
		t.Fatalf("start after drain: %s", out)
	}

	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		st := status()
		if st[0].Lag == 0 && st[1].Lag == 0 && st[0].Committed == m.EndOffsets[0] && st[1].Committed == m.EndOffsets[1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not caught up: %+v", st)
		}
	}
	if out := cli("reconcile", "--manifest", manifest); !strings.Contains(out, "every check passed") {
		t.Fatalf("reconcile: %s", out)
	}

	// Batches planned after the resize hold at most 250 records, and
	// some hold exactly that: the new size took effect.
	full := 0
	for _, row := range query("SELECT kafka_partition, start_offset, end_offset FROM " + ds + ".batch_ledger` ORDER BY 1, 2") {
		p, start, end := int(row[0].(int64)), row[1].(int64), row[2].(int64)
		limit := int64(400)
		if start >= paused[p] {
			limit = 250
		}
		if end-start > limit {
			t.Errorf("batch %d/%d-%d holds %d records, more than %d", p, start, end, end-start, limit)
		}
		if start >= paused[p] && end-start == 250 {
			full++
		}
	}
	if full == 0 {
		t.Error("no batch after set-batch holds 250 records")
	}

	// Partition 1's run was paused, resized and resumed: its history,
	// recorded, lets CI replay runs that received control updates.
	if dir := os.Getenv("PAYSTREAM_RECORD_HISTORY"); dir != "" {
		tc, err := pipeline.DialTemporal(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		file := filepath.Join(dir, "ingest_payments_1_controlled.json")
		if err := os.WriteFile(file, []byte(devstacktest.HistoryJSON(t, tc, contract.IngestID(cfg.Topic, 1))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStopThenStartDuringACatchUp types stop and then start at once, as an
// operator changing a setting would, while both partitions catch up on a
// backlog: stop returns only once every partition has stopped, start only
// once every partition runs again, and then every partition catches up
// and reconciles to the cent. A start that answered "already running" to
// a run about to stop would leave that partition stopped for good.
func TestStopThenStartDuringACatchUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, m, manifest := startOperatorStack(t, ctx, 20000)
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, args, &out); err != nil {
			t.Fatalf("starter %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	status := func() []operator.PartitionStatus {
		t.Helper()
		var st []operator.PartitionStatus
		if err := json.Unmarshal([]byte(cli("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	cli("start", "--max-records", "500", "--poll-for", "1s")
	// Both partitions are part way through the backlog.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		st := status()
		if st[0].Committed > 0 && st[1].Committed > 0 {
			if st[0].Committed == m.EndOffsets[0] || st[1].Committed == m.EndOffsets[1] {
				t.Fatalf("a partition caught up before the stop; the test would prove nothing: %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no partition committed a batch: %+v", st)
		}
	}

	stopped := cli("stop")
	if n := strings.Count(stopped, ": stopped at offset"); n != 2 {
		t.Errorf("stop reported %d partitions stopped, want 2:\n%s", n, stopped)
	}
	started := cli("start", "--max-records", "700", "--poll-for", "1s")
	if n := strings.Count(started, "started at offset"); n != 2 || strings.Contains(started, "already running") {
		t.Errorf("start right after stop started %d partitions, want 2:\n%s", n, started)
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		st := status()
		done := true
		for p, s := range st {
			switch s.State {
			case "stopped", "drained", "failed", "terminated", "not started", "timed out":
				t.Fatalf("partition %d is %s with %d records waiting after stop and start: %+v", p, s.State, s.Lag, st)
			}
			done = done && s.Committed == m.EndOffsets[p]
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not caught up after stop and start: %+v", st)
		}
	}
	if out := cli("reconcile", "--manifest", manifest); !strings.Contains(out, "every check passed") {
		t.Fatalf("reconcile: %s", out)
	}
}

// TestSetBatchReachesPartitionsAddedLater: right after partitions were
// added to the topic, before the supervisor started them, set-batch
// exited 1 ("partition 2: not running (starter start starts it)") and
// the supervisor then started them at the first start's size. Now it
// sets the size the supervisor starts them with, says so, and every
// partition, old and new, plans at it. A second start with other settings
// says what the running partitions keep.
func TestSetBatchReachesPartitionsAddedLater(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg, _, _ := startOperatorStack(t, ctx, 500)
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, args, &out); err != nil {
			t.Fatalf("starter %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	cli("start", "--max-records", "400", "--poll-for", "1s", "--supervise-every", "20s")
	if out := cli("start", "--max-records", "400", "--write-mode", "storagewrite"); strings.Count(out, "already running; it keeps --write-mode load (storagewrite given); to change them, starter stop") != 2 {
		t.Errorf("a start with another write mode:\n%s", out)
	}

	c := cfg.Kafka().Client(10 * time.Second)
	if err := c.GrowTopic(ctx, cfg.Topic, 4); err != nil {
		t.Fatal(err)
	}
	var set controlOutput
	out := cli("set-batch", "--records", "300", "--json")
	if err := json.Unmarshal([]byte(out), &set); err != nil || set.Topic == nil || !set.Topic.Supervised || set.Topic.MaxRecords != 300 || len(set.Partitions) != 4 {
		t.Fatalf("set-batch --json: %v\n%s", err, out)
	}
	for _, p := range set.Partitions {
		switch {
		case p.MaxRecords != 300:
			t.Errorf("partition %d: %+v, want 300 records", p.Partition, p)
		case p.Partition >= 2 && p.State == "not started yet" && !strings.Contains(p.Message, "the supervisor starts it within 20s with batches of up to 300 records"):
			t.Errorf("partition %d: %q", p.Partition, p.Message)
		case p.Partition >= 2 && p.State != "not started yet":
			t.Logf("partition %d was started before set-batch reached it: %+v", p.Partition, p)
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		var st []operator.PartitionStatus
		if err := json.Unmarshal([]byte(cli("status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		sizes := []int{}
		for _, p := range st {
			sizes = append(sizes, p.MaxRecords)
		}
		if fmt.Sprint(sizes) == "[300 300 300 300]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch sizes %v, want 300 on all four partitions once the supervisor started the new ones", sizes)
		}
	}
}
