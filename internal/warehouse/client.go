// Package warehouse is paystream's side of BigQuery: opening a client for
// real BigQuery or the emulator.
package warehouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"
)

// Open returns a BigQuery client for project. A non-empty endpoint (the
// emulator, "http://127.0.0.1:9050") is used without credentials; an empty
// one means real BigQuery with Application Default Credentials.
func Open(ctx context.Context, project, endpoint string) (*bigquery.Client, error) {
	return OpenIn(ctx, project, endpoint, "")
}

// OpenIn is Open for a dataset in location: every job the client creates
// runs there and every job it looks up is looked for there, as BigQuery
// requires of a regional dataset ("" lets BigQuery choose).
func OpenIn(ctx context.Context, project, endpoint, location string) (*bigquery.Client, error) {
	var opts []option.ClientOption
	if endpoint != "" {
		opts = append(opts, option.WithEndpoint(endpoint),
			option.WithHTTPClient(&http.Client{Transport: emulatorTransport{redialing()}}))
	}
	c, err := bigquery.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("open BigQuery project %s: %w", project, err)
	}
	c.Location = location
	return c, nil
}

// redialing is an HTTP transport that, for a request whose context says
// so (WaitForServer), waits out a server refusing connections (the
// emulator stopped or restarting) by dialing again every RetryWait, for
// up to redialFor, rather than failing the request. A refused dial sent
// nothing, so no request is doubled. Without it the client's retries back
// off to 32 s, and a batch waits on for half a minute after the server is
// back. Other requests (a readiness check, a query) fail at once, as
// before. (The transport dials apart from the request's cancellation, so
// that a connection made late serves the next request: redialFor, not the
// request, ends the dialing.)
func redialing() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		until := time.Now().Add(redialFor)
		for n := 1; ; n++ {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || ctx.Value(waitKey{}) == nil || time.Now().After(until) {
				return c, err
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(RetryWait(n)):
			}
		}
	}
	return t
}

type waitKey struct{}

// WaitForServer marks requests made with ctx as ones that wait for a
// server that refuses connections to listen again (see redialing): a
// batch's writes, which cannot go on without it.
func WaitForServer(ctx context.Context) context.Context {
	return context.WithValue(ctx, waitKey{}, true)
}

// redialFor bounds how long one dial waits for a server that refuses.
const redialFor = 2 * time.Minute

// RetryWait is the n-th wait (from 1) before trying a server that did not
// answer again: a quarter second, doubling to two, so that work goes on
// within two seconds of an outage's end while a long outage costs one
// attempt every two seconds. Dials (redialing) and a batch's writes
// (engine) both wait by it.
func RetryWait(n int) time.Duration {
	return min(250*time.Millisecond<<min(n-1, 3), 2*time.Second)
}
