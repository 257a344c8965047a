package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/engine"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestConnectWaitGrowsTo5sWithJitter: 200 ms doubling to 5 s, each within
// a fifth either way, and not all alike.
func TestConnectWaitGrowsTo5sWithJitter(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 5: 3200 * time.Millisecond, 6: 5 * time.Second, 60: 5 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := connectWait(n)
			if d < want-want/5 || d > want+want/5 {
				t.Fatalf("wait after attempt %d: %v, want %v give or take a fifth", n, d, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("wait after attempt %d: %d distinct values in 50, want jitter", n, len(seen))
		}
	}
}

// TestWhatIsWaitedOut: a server down, frozen or starting is waited for;
// refused credentials or certificates and a missing namespace are not,
// and Start is tried again only when Temporal did not answer.
func TestWhatIsWaitedOut(t *testing.T) {
	for _, c := range []struct {
		err                error
		refused, unreached bool
	}{
		{fmt.Errorf("failed reaching server: %w", serviceerror.NewUnavailable(`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7233: connect: connection refused"`)), false, true},
		{fmt.Errorf("failed reaching server: %w", context.DeadlineExceeded), false, true},
		{errors.New("health check returned unhealthy status: NOT_SERVING"), false, false},
		{fmt.Errorf("failed reaching server: %w", status.Error(codes.Unauthenticated, "bad API key")), true, false},
		{serviceerror.NewPermissionDenied("no access", ""), true, false},
		{serviceerror.NewNamespaceNotFound("payments"), true, false},
		{serviceerror.NewUnavailable(`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`), true, false},
		{serviceerror.NewUnavailable(`connection error: desc = "error reading server preface: remote error: tls: certificate required"`), true, false},
		{serviceerror.NewUnavailable(`connection error: desc = "transport: authentication handshake failed: EOF"`), false, true},
		{errors.New("failed to get executable checksum: open: permission denied"), false, false},
	} {
		if got := refused(c.err); got != c.refused {
			t.Errorf("refused(%v) = %v", c.err, got)
		}
		if got := unreachable(c.err); got != c.unreached {
			t.Errorf("unreachable(%v) = %v", c.err, got)
		}
	}
}

// scriptedTemporal fails CheckHealth with its errors in turn, then answers.
type scriptedTemporal struct {
	client.Client
	errs  []error
	calls int
}

func (c *scriptedTemporal) CheckHealth(context.Context, *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	c.calls++
	if c.calls <= len(c.errs) {
		return nil, c.errs[c.calls-1]
	}
	return &client.CheckHealthResponse{}, nil
}

// TestWaitForTemporalReportsOnReadyz: while the worker waits, /readyz
// answers 503 with one line saying it waits for Temporal; refused
// credentials end the wait at once; a cancelled wait returns its context's
// error.
func TestWaitForTemporalReportsOnReadyz(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	bq, err := warehouse.OpenIn(ctx, cfg.BigQueryProject, "http://127.0.0.1:1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer bq.Close()
	eng := engine.New(engine.Config{Kafka: kafkalog.Plain([]string{"127.0.0.1:1"})})
	defer eng.Close()
	down := serviceerror.NewUnavailable("connection refused")
	tc := &scriptedTemporal{errs: []error{down, down}}
	w := &Worker{cfg: cfg, bq: bq, Engine: eng, tc: tc, log: zap.NewNop(), waiting: "waiting to connect to " + cfg.TemporalAddress}
	srv := httptest.NewServer(w.HTTPHandler(tc, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + ReadyzPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "temporal: waiting to connect to "+cfg.TemporalAddress+"\n") {
		t.Fatalf("/readyz before the first attempt: %s %q", resp.Status, body)
	}
	if tc.calls != 0 {
		t.Fatalf("/readyz asked Temporal %d times while the worker waits for it", tc.calls)
	}

	began := time.Now()
	if err := w.WaitForTemporal(ctx); err != nil {
		t.Fatal(err)
	}
	if tc.calls != 3 || time.Since(began) < 400*time.Millisecond {
		t.Fatalf("%d attempts in %v, want 3 with about 0.6 s of waits", tc.calls, time.Since(began))
	}
	if why := w.waitingFor(); !strings.Contains(why, "starting") {
		t.Fatalf("after Temporal answered, waiting for %q", why)
	}

	tc.calls, tc.errs = 0, []error{down, serviceerror.NewPermissionDenied("wrong key", "")}
	if err := w.WaitForTemporal(ctx); err == nil || tc.calls != 2 || !strings.Contains(err.Error(), cfg.TemporalAddress) {
		t.Fatalf("refused credentials: %v after %d attempts, want an error naming the address after 2", err, tc.calls)
	}

	tc.calls, tc.errs = 0, []error{down, down, down, down, down, down, down, down}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := w.WaitForTemporal(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a wait whose context ends: %v", err)
	}
	if why := w.waitingFor(); !strings.HasPrefix(why, "waiting to connect to "+cfg.TemporalAddress+" (attempt ") || strings.Contains(why, "\n") {
		t.Fatalf("while waiting, /readyz would say %q", why)
	}
}
