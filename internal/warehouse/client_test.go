package warehouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAWriteWaitsForARefusingServer: a write's request to an address
// nothing listens on yet (the emulator stopped) is not failed but sent
// once the server listens there, as a refused dial sent nothing; the
// client's own retries would back off to 32 s instead. A request not
// marked to wait (a readiness check) fails at once.
func TestAWriteWaitsForARefusingServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	served := make(chan error, 1)
	go func() {
		time.Sleep(3 * RetryWait(1))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			served <- err
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "answered") })}
		t.Cleanup(func() { srv.Close() })
		served <- srv.Serve(l)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	probe, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if resp, err := (&http.Client{Transport: redialing()}).Do(probe); err == nil {
		resp.Body.Close()
		t.Fatal("a request not marked to wait reached a server not yet listening")
	}
	req, _ := http.NewRequestWithContext(WaitForServer(ctx), http.MethodGet, "http://"+addr+"/", nil)
	resp, err := (&http.Client{Transport: redialing()}).Do(req)
	if err != nil {
		select {
		case serr := <-served:
			t.Fatalf("the server could not listen again: %v", serr)
		default:
		}
		t.Fatalf("a request while the server refused connections: %v; want it sent once the server listens", err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); string(body) != "answered" {
		t.Errorf("answer %q, want the server's", body)
	}
}

// TestUnreachableIsNoAnswerAtAll: errors that say BigQuery did not answer
// are written again at once; an answer, even an error, and a caller that
// gave up are not.
func TestUnreachableIsNoAnswerAtAll(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("write b into t: %w", &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}), true},
		{fmt.Errorf("write b into t: %w", &url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "bigqeury.googleapis.com", IsNotFound: true}}}), false},
		{fmt.Errorf("wait: %w", &url.Error{Op: "Get", URL: "http://x", Err: io.EOF}), true},
		{&googleapi.Error{Code: http.StatusServiceUnavailable}, true},
		{fmt.Errorf("append: %w", status.Error(codes.Unavailable, "connection refused")), true},
		{&googleapi.Error{Code: http.StatusBadRequest, Message: "invalid"}, false},
		{fmt.Errorf("append: %w", status.Error(codes.InvalidArgument, "schema")), false},
		{fmt.Errorf("write: %w", context.Canceled), false},
		{errors.New("load job failed"), false},
		{nil, false},
	} {
		if got := Unreachable(c.err); got != c.want {
			t.Errorf("Unreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
