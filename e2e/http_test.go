package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/internal/metrics"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/pipeline"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestWorkerServesHealthAndMetrics runs a worker with its HTTP endpoint
// on the real stack: /healthz answers, /readyz finds all three systems,
// and after a stream is ingested /metrics counts its events by outcome as
// the manifest does, its batches as the ledger does, a lag of zero on
// every partition, and the Temporal SDK's own metrics. A worker whose
// Kafka is unreachable is not ready, and says which system failed.
func TestWorkerServesHealthAndMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := Start(t, Options{Partitions: 2, NoWorker: true})
	cfg := s.ClientConfig()
	m := metrics.New()
	tc, err := pipeline.DialTemporalWithMetrics(ctx, cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	w, err := pipeline.NewWorker(ctx, cfg, tc, pipeline.WorkerOptions{Metrics: m}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	srv := httptest.NewServer(w.HTTPHandler(tc, m))
	t.Cleanup(srv.Close)
	get := func(base, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(srv.URL, pipeline.HealthzPath); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(srv.URL, pipeline.ReadyzPath); code != 200 || body != "temporal: ok\nkafka: ok\nbigquery: ok\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}

	bq, err := warehouse.Open(ctx, cfg.BigQueryProject, cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 700, time.Second
	op := &operator.Operator{Config: cfg, Temporal: tc, BigQuery: bq, Tuning: tuning}
	man, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 3000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := op.WaitCaughtUp(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ledger, err := bq.Query(fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.batch_ledger`", cfg.BigQueryProject, cfg.BigQueryDataset)).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var row []bigquery.Value
	if err := ledger.Next(&row); err != nil {
		t.Fatal(err)
	}
	batches := []int64{row[0].(int64)}

	// Lag is set at each plan: wait for the plans after the last batch.
	var text string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, text = get(srv.URL, pipeline.MetricsPath)
		if sum(text, metrics.KafkaLag, "") == 0 && strings.Count(text, metrics.KafkaLag+"{") == 2 || time.Now().After(deadline) {
			break
		}
	}
	rejected := 0
	for _, n := range man.ErrorsByReason {
		rejected += n
	}
	for _, c := range []struct {
		name, match string
		want        float64
	}{
		{metrics.EventsTotal, `outcome="loaded"`, float64(man.UniqueIDs)},
		{metrics.EventsTotal, `outcome="duplicate"`, float64(man.Duplicates)},
		{metrics.EventsTotal, `outcome="error"`, float64(rejected - man.ErrorsByReason["late"])},
		{metrics.EventsTotal, `outcome="late"`, float64(man.ErrorsByReason["late"])},
		{metrics.BatchesTotal, "", float64(batches[0])},
		{metrics.BatchLatencySeconds + "_count", "", float64(batches[0])},
		{metrics.KafkaLag, "", 0},
	} {
		if got := sum(text, c.name, c.match); got != c.want {
			t.Errorf("%s{%s} sums to %v, want %v", c.name, c.match, got, c.want)
		}
	}
	if strings.Count(text, metrics.KafkaLag+"{") != 2 {
		t.Errorf("%s has no line per partition:\n%s", metrics.KafkaLag, grep(text, metrics.KafkaLag))
	}
	for _, name := range []string{"temporal_activity_execution_latency_seconds_count", "temporal_workflow_task_execution_latency_seconds_count", "temporal_request_total"} {
		if !strings.Contains(text, name) {
			t.Errorf("/metrics lacks the Temporal SDK's %s", name)
		}
	}

	// The shipped Grafana dashboard queries only what /metrics exports.
	checkDashboard(t, "../deploy/grafana/paystream.json", text)

	// A worker whose Kafka cannot be reached is alive but not ready. (It
	// is not started, so that it takes no task: its Temporal line says it
	// is not polling yet.)
	broken := cfg
	broken.KafkaBrokers = []string{"127.0.0.1:1"}
	bw, err := pipeline.NewWorker(ctx, broken, tc, pipeline.WorkerOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bsrv := httptest.NewServer(bw.HTTPHandler(tc, nil))
	t.Cleanup(bsrv.Close)
	if code, _ := get(bsrv.URL, pipeline.HealthzPath); code != 200 {
		t.Errorf("/healthz of a worker without Kafka: %d", code)
	}
	code, body := get(bsrv.URL, pipeline.ReadyzPath)
	if code != http.StatusServiceUnavailable || !regexp.MustCompile(`(?m)^temporal: `).MatchString(body) || !strings.Contains(body, "bigquery: ok\n") ||
		!regexp.MustCompile(`(?m)^kafka: .*127\.0\.0\.1:1`).MatchString(body) {
		t.Errorf("/readyz without Kafka: %d %q", code, body)
	}
}

// sum adds the values of the metric's lines that contain match.
func sum(text, name, match string) float64 {
	total := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") || !strings.Contains(line, match) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

func grep(text, prefix string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// checkDashboard finds every paystream_, temporal_ and process_ name the
// dashboard's queries use in a worker's /metrics text.
func checkDashboard(t *testing.T, path, exported string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	queries := 0
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			queries++
			for _, name := range regexp.MustCompile(`\b(?:paystream|temporal|process)_[a-z0-9_]+`).FindAllString(target.Expr, -1) {
				if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(exported) {
					t.Errorf("dashboard panel %q queries %s, which /metrics does not export", p.Title, name)
				}
			}
		}
	}
	if queries < 8 {
		t.Errorf("the dashboard has %d queries", queries)
	}
}
