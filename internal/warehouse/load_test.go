package warehouse_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/warehouse"
)

// regionalBigQuery is the emulator behind a proxy that acts as BigQuery
// does for a dataset in location EU, and that can refuse load jobs for a
// table's quota: the parts of production the emulator leaves out.
type regionalBigQuery struct {
	URL string
	mu  sync.Mutex
	// quotaFailures is how many more jobs of the table fail with
	// quotaExceeded (the job is created, and fails).
	quotaFailures int
	// rateLimited is how many more job inserts are refused with
	// rateLimitExceeded (no job is created).
	rateLimited int
	inserted    []string // job IDs of inserts, in order, refused or not
	failed      map[string]bool
}

var jobIDInBody = regexp.MustCompile(`"jobId":\s*"([^"]+)"`)

func startRegionalBigQuery(t *testing.T, emulator string) *regionalBigQuery {
	t.Helper()
	target, err := url.Parse(emulator)
	if err != nil {
		t.Fatal(err)
	}
	rb := &regionalBigQuery{failed: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp := httputil.NewSingleHostReverseProxy(target)
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/jobs") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			m := jobIDInBody.FindSubmatch(body)
			if m == nil {
				rp.ServeHTTP(w, r)
				return
			}
			id := string(m[1])
			if !bytes.Contains(body, []byte(`"location":"EU"`)) {
				writeError(w, http.StatusNotFound, "notFound", "Not found: Dataset in location US")
				return
			}
			rb.mu.Lock()
			rb.inserted = append(rb.inserted, id)
			if rb.failed[id] { // it exists, failed: an ID is never reused
				rb.mu.Unlock()
				writeError(w, http.StatusConflict, "duplicate", "Already Exists: Job paystream-local:EU."+id)
				return
			}
			limited := rb.rateLimited > 0
			fail := rb.quotaFailures > 0 && !limited
			if limited {
				rb.rateLimited--
			} else if fail {
				rb.quotaFailures--
				rb.failed[id] = true
			}
			rb.mu.Unlock()
			switch {
			case limited:
				writeError(w, http.StatusForbidden, "rateLimitExceeded", "Exceeded rate limits: too many table update operations for this table")
			case fail:
				// Created, and failed: as BigQuery answers a load job
				// over the table's daily quota.
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{
					"jobReference": map[string]any{"projectId": "paystream-local", "jobId": id, "location": "EU"},
					"status": map[string]any{"state": "DONE", "errorResult": map[string]any{
						"reason": "quotaExceeded", "message": "Quota exceeded: Your table exceeded quota for imports or query appends per table"}},
				})
			default:
				rp.ServeHTTP(w, r)
			}
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/jobs/") {
			// A regional dataset's jobs are found only where they ran.
			if r.URL.Query().Get("location") != "EU" {
				writeError(w, http.StatusNotFound, "notFound", "Not found: Job "+r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
				return
			}
			id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			rb.mu.Lock()
			failed := rb.failed[id]
			rb.mu.Unlock()
			if failed {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{
					"jobReference": map[string]any{"projectId": "paystream-local", "jobId": id, "location": "EU"},
					"status":       map[string]any{"state": "DONE", "errorResult": map[string]any{"reason": "quotaExceeded", "message": "Quota exceeded"}},
				})
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rb.URL = srv.URL
	return rb
}

func writeError(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg, "errors": []any{map[string]any{"reason": reason, "message": msg, "domain": "global"}}}})
}

type loaderEnv struct {
	bq      *bigquery.Client // to the emulator directly, for counting
	proxy   *regionalBigQuery
	dataset string
}

func newLoaderEnv(t *testing.T) *loaderEnv {
	t.Helper()
	ctx := context.Background()
	cfg := devstacktest.Config(t, 1)
	s := devstacktest.Start(t, cfg)
	bq, err := warehouse.Open(ctx, cfg.Project, s.BigQueryEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bq.Close() })
	return &loaderEnv{bq: bq, proxy: startRegionalBigQuery(t, s.BigQueryEndpoint()), dataset: cfg.Dataset}
}

// loader loads through the proxy from location, counting its waits.
func (e *loaderEnv) loader(t *testing.T, location string, waits *int) *warehouse.Loader {
	t.Helper()
	c, err := warehouse.OpenIn(context.Background(), e.bq.Project(), e.proxy.URL, location)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &warehouse.Loader{Client: c, Dataset: e.dataset, Backoff: func(n int) time.Duration {
		*waits++
		return 10 * time.Millisecond
	}}
}

func (e *loaderEnv) rows(t *testing.T, batchID string) int64 {
	t.Helper()
	q := e.bq.Query(fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.dedup_audit` WHERE batch_id = '%s'", e.bq.Project(), e.dataset, batchID))
	it, err := q.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var row []bigquery.Value
	if err := it.Next(&row); err != nil {
		t.Fatal(err)
	}
	return row[0].(int64)
}

func auditRows(batchID string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"transaction_id":"t%d","event_time":"2026-01-01T00:00:00Z","kafka_partition":0,"kafka_offset":%d,"duplicate_of_offset":0,"identical_bytes":true,"batch_id":%q,"loaded_at":"2026-01-01T00:00:00Z"}`+"\n", i, i, batchID)
	}
	return b.Bytes()
}

// TestLoadOutlastsQuotaFailures: a table over its quota fails nine load
// jobs in a row, after three inserts refused for its rate limit. A refused
// insert is tried again, after a wait, under its own ID; each job that
// failed for the quota ends its Load call with ErrLoadFailed (its batch
// waits minutes before it runs again), and the next call goes on with the
// next ID, never reusing one. Once the quota refills the rows land once.
func TestLoadOutlastsQuotaFailures(t *testing.T) {
	e := newLoaderEnv(t)
	e.proxy.quotaFailures, e.proxy.rateLimited = 9, 3
	waits := 0
	l := e.loader(t, "EU", &waits)
	const batchID = "batch/quota/0/0-10"
	jobID := func(n int) string { return fmt.Sprintf("quota_test_r%d", n) }
	calls := 0
	for {
		calls++
		err := l.Load(context.Background(), "dedup_audit", jobID, auditRows(batchID, 10))
		if err == nil {
			break
		}
		if !errors.Is(err, warehouse.ErrLoadFailed) || calls > 20 {
			t.Fatalf("call %d: %v", calls, err)
		}
	}
	if n := e.rows(t, batchID); n != 10 {
		t.Errorf("%d rows landed, want 10", n)
	}
	if calls != 10 || waits != 3 {
		t.Errorf("%d Load calls and %d waits, want 10 (one per failed job, then success) and 3 (one per refused insert)", calls, waits)
	}
	// Three refusals of r0 (no job made); then each call creates the next
	// ID after walking past the failed ones (refused: they exist).
	var want []string
	for range 3 {
		want = append(want, jobID(0))
	}
	for call := range 10 {
		for n := range call + 1 {
			want = append(want, jobID(n))
		}
	}
	if fmt.Sprint(e.proxy.inserted) != fmt.Sprint(want) {
		t.Errorf("job inserts %v, want %v", e.proxy.inserted, want)
	}
	// A retried Load walks past the failed jobs, finds the one that
	// landed, and writes nothing.
	waits = 0
	if err := l.Load(context.Background(), "dedup_audit", jobID, auditRows(batchID, 10)); err != nil {
		t.Fatal(err)
	}
	if n := e.rows(t, batchID); n != 10 || waits != 0 {
		t.Errorf("after a retried Load: %d rows, %d waits; want 10 and none", n, waits)
	}
}

// TestJobLookupsCarryTheLocation: on a dataset in EU a retried Load looks
// its job up in EU and finds it; without the location it cannot.
func TestJobLookupsCarryTheLocation(t *testing.T) {
	e := newLoaderEnv(t)
	waits := 0
	const batchID = "batch/location/0/0-5"
	jobID := func(n int) string { return fmt.Sprintf("location_test_r%d", n) }
	eu := e.loader(t, "EU", &waits)
	for range 2 { // the second is a retry: its create is refused, its look-up decides
		if err := eu.Load(context.Background(), "dedup_audit", jobID, auditRows(batchID, 5)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.rows(t, batchID); n != 5 {
		t.Errorf("%d rows landed, want 5", n)
	}
	nowhere := e.loader(t, "", &waits)
	err := nowhere.Load(context.Background(), "dedup_audit", jobID, auditRows(batchID, 5))
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a loader without the dataset's location: %v, want BigQuery's 404", err)
	}
}
