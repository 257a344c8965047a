package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"

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

// readyFor is how long a readiness answer is served again: /readyz is
// unauthenticated, so however often it is asked, the worker asks its
// three systems at most once in this (a probe asks every 10 s).
const readyFor = 5 * time.Second

// HTTPHandler serves w's /healthz, /readyz and /metrics (m's registry).
func (w *Worker) HTTPHandler(tc client.Client, m *metrics.Pipeline) http.Handler {
	w.readyOnce.Do(func() {
		w.readiness = &readiness{check: func(ctx context.Context) (string, bool) { return w.ready(ctx, tc) }, ttl: readyFor}
	})
	return httpHandler(w.readiness, m)
}

func httpHandler(ready *readiness, m *metrics.Pipeline) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(HealthzPath, func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc(ReadyzPath, func(rw http.ResponseWriter, r *http.Request) {
		report, ok := ready.get(r.Context())
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

// readiness serves one check's answer for ttl to every caller; callers
// that come while a check runs wait for it rather than start their own.
type readiness struct {
	check func(context.Context) (string, bool)
	ttl   time.Duration

	mu      sync.Mutex
	at      time.Time     // when the last answer was found
	report  string        // the last answer
	ok      bool          // and whether it was ready
	running chan struct{} // closed when the check under way ends; nil: none
}

// get returns an answer at most ttl old, checking when there is none.
// The check runs on a context of its own: one caller giving up does not
// fail the others' answer.
func (r *readiness) get(ctx context.Context) (string, bool) {
	r.mu.Lock()
	if r.running == nil && (r.at.IsZero() || time.Since(r.at) > r.ttl) {
		done := make(chan struct{})
		r.running = done
		go func() {
			cctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
			report, ok := r.check(cctx)
			cancel()
			r.mu.Lock()
			r.at, r.report, r.ok, r.running = time.Now(), report, ok, nil
			r.mu.Unlock()
			close(done)
		}()
	}
	running := r.running
	r.mu.Unlock()
	if running != nil {
		select {
		case <-running:
		case <-ctx.Done():
			return "not checked: " + ctx.Err().Error() + "\n", false
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.report, r.ok
}

// ready checks the three systems at once, with the clients the worker
// uses, and reports each on a line. Errors name endpoints, never
// credentials.
func (w *Worker) ready(ctx context.Context, tc client.Client) (string, bool) {
	checks := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"temporal", func(ctx context.Context) error {
			if why := w.waitingFor(); why != "" {
				return errors.New(why)
			}
			_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		}},
		{"kafka", func(ctx context.Context) error {
			kc := w.Engine.KafkaClient()
			if kc == nil {
				return errors.New("the worker has stopped")
			}
			_, err := kc.Partitions(ctx, w.cfg.Topic)
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
