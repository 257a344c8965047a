package pipeline

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/engine"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/warehouse"
)

// countingTemporal answers CheckHealth after a while and counts the
// calls; nothing else of the client is used by /readyz.
type countingTemporal struct {
	client.Client
	calls atomic.Int32
}

func (c *countingTemporal) CheckHealth(ctx context.Context, _ *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	c.calls.Add(1)
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	return &client.CheckHealthResponse{}, nil
}

// TestReadyzIsCheckedOnceForConcurrentCallers: /readyz is not
// authenticated, so many callers at once must not make the worker ask its
// systems as many times: 20 concurrent calls, and more within a few
// seconds, share one check and get the same answer; a call after the
// answer has aged asks again.
func TestReadyzIsCheckedOnceForConcurrentCallers(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	bq, err := warehouse.OpenIn(ctx, cfg.BigQueryProject, "http://127.0.0.1:1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	tc := &countingTemporal{}
	eng := engine.New(engine.Config{Kafka: kafkalog.Plain([]string{"127.0.0.1:1"})})
	defer eng.Close()
	w := &Worker{cfg: cfg, bq: bq, Engine: eng}
	srv := httptest.NewServer(w.HTTPHandler(tc, nil))
	defer srv.Close()
	ask := func(n int) []string {
		bodies := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, err := http.Get(srv.URL + ReadyzPath)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				bodies[i] = resp.Status + " " + string(b)
			})
		}
		wg.Wait()
		return bodies
	}
	bodies := ask(20)
	if n := tc.calls.Load(); n != 1 {
		t.Fatalf("20 concurrent /readyz calls checked Temporal %d times, want once", n)
	}
	for _, b := range bodies {
		if b != bodies[0] || !strings.HasPrefix(b, "503 ") || !strings.Contains(b, "temporal: ok\n") || !strings.Contains(b, "kafka: ") {
			t.Fatalf("answers differ or are wrong: %q and %q", bodies[0], b)
		}
	}
	ask(5)
	if n := tc.calls.Load(); n != 1 {
		t.Fatalf("calls within seconds of the answer checked again: %d checks", n)
	}
	time.Sleep(readyFor + 100*time.Millisecond)
	ask(3)
	if n := tc.calls.Load(); n != 2 {
		t.Fatalf("after 5 s, 3 calls made %d checks in all, want 2", n)
	}
}
