package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"

	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/metrics"
)

// Worker HTTP paths, as probes and scrapers use them (deploy/k8s).
const (
	HealthzPath = "/healthz" // liveness: the process serves
	ReadyzPath  = "/readyz"  // readiness: Temporal, Kafka and BigQuery answer
	MetricsPath = "/metrics" // Prometheus
)

// readyTimeout bounds each readiness check; a probe's own timeout should
// be longer (deploy/k8s uses 5 s).
const readyTimeout = 3 * time.Second

// HTTPHandler serves w's /healthz, /readyz and /metrics (m's registry).
func (w *Worker) HTTPHandler(tc client.Client, m *metrics.Pipeline) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(HealthzPath, func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc(ReadyzPath, func(rw http.ResponseWriter, r *http.Request) {
		report, ok := w.ready(r.Context(), tc)
		if !ok {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(rw, report)
	})
	if m != nil {
		mux.Handle(MetricsPath, promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	}
	return mux
}

// ready checks the three systems at once and reports each on a line.
// Errors name endpoints, never credentials.
func (w *Worker) ready(ctx context.Context, tc client.Client) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	checks := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"temporal", func(ctx context.Context) error {
			_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		}},
		{"kafka", func(ctx context.Context) error {
			_, err := kafkalog.Partitions(ctx, w.cfg.Kafka(), w.cfg.Topic)
			return err
		}},
		{"bigquery", func(ctx context.Context) error {
			_, err := w.bq.Dataset(w.cfg.BigQueryDataset).Metadata(ctx)
			return err
		}},
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.fn(ctx) })
	}
	wg.Wait()
	var b strings.Builder
	ok := true
	for i, c := range checks {
		if errs[i] != nil {
			ok = false
			msg, _, _ := strings.Cut(errs[i].Error(), "\n")
			fmt.Fprintf(&b, "%s: %s\n", c.name, msg)
			continue
		}
		fmt.Fprintf(&b, "%s: ok\n", c.name)
	}
	return b.String(), ok
}
