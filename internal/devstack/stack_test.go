package devstack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/searchattr"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

// TestStackServesAndKeepsStateAcrossRestart starts the real servers, checks
// that each answers and holds what paystream needs, writes one thing to
// each, restarts the stack on the same state dir and finds all three again.
func TestStackServesAndKeepsStateAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cfg := devstacktest.Config(t, 3)
	s := devstacktest.Start(t, cfg)

	// Each endpoint answers.
	tc, err := s.DialTemporal(ctx)
	if err != nil {
		t.Fatalf("dial Temporal: %v", err)
	}
	if _, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		t.Fatalf("Temporal health: %v", err)
	}
	for _, url := range []string{s.TemporalUIURL(), s.BigQueryEndpoint() + "/bigquery/v2/projects/" + cfg.Project + "/datasets"} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", url, resp.Status)
		}
	}

	// Both servers run with the GC target devstack gives them, unless
	// the environment sets one.
	if os.Getenv("GOGC") == "" {
		temporal, emulator := s.ServerPIDs()
		for _, pid := range []int{temporal, emulator} {
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(strings.Split(string(env), "\x00"), "GOGC="+devstack.ServerGOGC) {
				t.Errorf("server process %d runs without GOGC=%s", pid, devstack.ServerGOGC)
			}
		}
	}

	// Kafka has the topic with the partitions asked for.
	parts, err := kafkalog.Partitions(ctx, kafkalog.Plain(s.KafkaBrokers()), cfg.Topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Fatalf("topic %s has %d partitions, want 3", cfg.Topic, len(parts))
	}

	// paystream's search attributes are registered with their types.
	sa, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: config.DefaultNamespace})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range searchattr.Definitions() {
		got, ok := sa.GetCustomAttributes()[d.Name]
		if !ok {
			t.Errorf("search attribute %s not registered", d.Name)
			continue
		}
		if want := map[string]enumspb.IndexedValueType{"Keyword": enumspb.INDEXED_VALUE_TYPE_KEYWORD, "Int": enumspb.INDEXED_VALUE_TYPE_INT, "Double": enumspb.INDEXED_VALUE_TYPE_DOUBLE}[d.Type]; got != want {
			t.Errorf("search attribute %s has type %v, want %v", d.Name, got, want)
		}
	}

	// The schema exists, queried through the BigQuery client.
	bq, err := warehouse.Open(ctx, cfg.Project, s.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	var found []string
	it := bq.Dataset(cfg.Dataset).Tables(ctx)
	for {
		tbl, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, tbl.TableID)
	}
	for _, name := range append(slices.Clone(schema.Tables), schema.Views...) {
		if !slices.Contains(found, name) {
			t.Errorf("dataset %s lacks %s (has %v)", cfg.Dataset, name, found)
		}
	}
	md, err := bq.Dataset(cfg.Dataset).Table("transactions").Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if typ := fieldType(md.Schema, "amount"); typ != bigquery.NumericFieldType {
		t.Errorf("transactions.amount is %q, want NUMERIC", typ)
	}
	for _, view := range schema.Views {
		if n := count(ctx, t, bq, fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.%s`", cfg.Project, cfg.Dataset, view)); n != 0 {
			t.Errorf("view %s has %d rows on an empty dataset", view, n)
		}
	}

	// One record, one workflow, one row.
	record := []byte(`{"probe":"survives restart"}`)
	w := kafkalog.Plain(s.KafkaBrokers()).Producer(cfg.Topic, kafkalog.ProducerOptions{Partitioner: kafkalog.ByKey})
	if err := w.Produce(ctx, kafkalog.Message{Key: []byte("probe-key"), Value: record}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	probePartition := kafkalog.PartitionForKey([]byte("probe-key"), 3)
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "devstack-restart-probe", TaskQueue: "no-worker-listens"}, "Probe")
	if err != nil {
		t.Fatal(err)
	}
	tc.Close()
	insert := fmt.Sprintf("INSERT INTO `%s.%s.transactions` (transaction_id, event_time, amount, currency, customer_id, merchant_id, card_id, payment_method, status, batch_id, kafka_partition, kafka_offset, loaded_at) "+
		"VALUES ('tx-restart', TIMESTAMP '2026-01-01 00:00:00+00', NUMERIC '12.34', 'USD', 'c', 'm', 'k', 'card', 'captured', 'probe', 0, 0, CURRENT_TIMESTAMP())", cfg.Project, cfg.Dataset)
	if err := warehouse.Exec(ctx, bq, insert); err != nil {
		t.Fatal(err)
	}
	// A load job keeps its ID: paystream's loads are idempotent by job ID.
	probeTable := bq.Dataset(cfg.Dataset).Table("restart_probe")
	if err := probeTable.Create(ctx, &bigquery.TableMetadata{Schema: bigquery.Schema{{Name: "x", Type: bigquery.IntegerFieldType}}}); err != nil {
		t.Fatal(err)
	}
	const probeJobID = "devstack-restart-probe-job"
	if job, err := probeLoad(probeTable, probeJobID).Run(ctx); err != nil {
		t.Fatal(err)
	} else if st, err := job.Wait(ctx); err != nil || st.Err() != nil {
		t.Fatalf("load job %s: %v %v", probeJobID, err, st.Err())
	}

	s.Stop()
	s = devstacktest.Start(t, cfg)

	var got [][]byte
	err = kafkalog.ReadRange(ctx, kafkalog.Plain(s.KafkaBrokers()), cfg.Topic, probePartition, 0, 1, func(r kafkalog.Record) error {
		got = append(got, r.Value)
		return nil
	})
	if err != nil || len(got) != 1 || string(got[0]) != string(record) {
		t.Errorf("after restart, partition %d offset 0 holds %q (err %v), want %q", probePartition, got, err, record)
	}
	tc, err = s.DialTemporal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	desc, err := tc.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Errorf("after restart, workflow %s: %v", run.GetID(), err)
	} else if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Errorf("after restart, workflow %s is %v, want running", run.GetID(), st)
	}
	bq2, err := warehouse.Open(ctx, cfg.Project, s.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer bq2.Close()
	q := fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.transactions` WHERE transaction_id = 'tx-restart' AND amount = NUMERIC '12.34'", cfg.Project, cfg.Dataset)
	if n := count(ctx, t, bq2, q); n != 1 {
		t.Errorf("after restart, %d rows of tx-restart with amount 12.34, want 1", n)
	}
	// The emulator is patched to read jobs by ID (tools/README.md): the
	// job is still found, listed, and its ID still refused.
	if _, err := bq2.JobFromID(ctx, probeJobID); err != nil {
		t.Errorf("after restart, job %s: %v", probeJobID, err)
	}
	listed := false
	for jobs := bq2.Jobs(ctx); ; {
		j, err := jobs.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("list jobs: %v", err)
		}
		listed = listed || j.ID() == probeJobID
	}
	if !listed {
		t.Errorf("after restart, jobs.list lacks job %s", probeJobID)
	}
	// (The emulator refuses an upload's job ID with its own 500 "already
	// created"; warehouse.Loader knows both that and BigQuery's 409.)
	var apiErr *googleapi.Error
	if _, err := probeLoad(bq2.Dataset(cfg.Dataset).Table("restart_probe"), probeJobID).Run(ctx); !errors.As(err, &apiErr) ||
		(apiErr.Code != http.StatusConflict && !strings.Contains(apiErr.Message, "already created")) {
		t.Errorf("after restart, a second job with ID %s: err = %v, want it refused as a duplicate", probeJobID, err)
	}
	if n := count(ctx, t, bq2, fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.restart_probe`", cfg.Project, cfg.Dataset)); n != 1 {
		t.Errorf("after restart and a repeated load job, restart_probe has %d rows, want 1", n)
	}

	// Asking for another partition count on existing state is refused
	// with a reason, not silently ignored.
	s.Stop()
	other := cfg
	other.Partitions = 5
	_, err = devstack.Start(ctx, other)
	if err == nil || !strings.Contains(err.Error(), "has 3 partitions, not the 5 asked for") {
		t.Errorf("restart with --partitions 5 on a 3-partition state dir: err = %v", err)
	}
}

// TestPortInUseIsAClearError checks every port: the error names the port
// and comes at once, before anything is started.
func TestPortInUseIsAClearError(t *testing.T) {
	cfg := devstacktest.Config(t, 1)
	for _, port := range []*int{&cfg.TemporalPort, &cfg.TemporalUIPort, &cfg.KafkaPort, &cfg.BigQueryPort, &cfg.BigQueryGRPCPort, &cfg.RegistryPort} {
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", cfg.Host, *port))
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		_, err = devstack.Start(context.Background(), cfg)
		ln.Close()
		if err == nil {
			t.Fatalf("started although port %d was taken", *port)
		}
		if want := fmt.Sprintf("port %d", *port); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "already in use") {
			t.Errorf("error %q does not say %s is already in use", err, want)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("port conflict took %s to report", d)
		}
	}
}

func fieldType(s bigquery.Schema, name string) bigquery.FieldType {
	for _, f := range s {
		if f.Name == name {
			return f.Type
		}
	}
	return ""
}

// probeLoad loads one row into table under a fixed job ID.
func probeLoad(table *bigquery.Table, jobID string) *bigquery.Loader {
	src := bigquery.NewReaderSource(strings.NewReader(`{"x": 1}` + "\n"))
	src.SourceFormat = bigquery.JSON
	l := table.LoaderFrom(src)
	l.JobID = jobID
	return l
}

func count(ctx context.Context, t *testing.T, bq *bigquery.Client, sql string) int64 {
	t.Helper()
	it, err := bq.Query(sql).Read(ctx)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var row []bigquery.Value
	if err := it.Next(&row); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if err := it.Next(&row); !errors.Is(err, iterator.Done) {
		t.Fatalf("%s: more than one row", sql)
	}
	return row[0].(int64)
}
