package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// The wait between attempts to reach Temporal: from connectFirstWait,
// doubling to connectMaxWait, each within 20 % either way so that a pool
// of workers restarted together does not ask in step.
const (
	connectFirstWait = 200 * time.Millisecond
	connectMaxWait   = 5 * time.Second
	// connectAttemptTimeout bounds one attempt: a frozen server answers
	// nothing, and the wait goes on.
	connectAttemptTimeout = 5 * time.Second
)

// connectWait is the wait after the nth failed attempt (from 1).
func connectWait(n int) time.Duration {
	d := min(connectFirstWait<<min(n-1, 10), connectMaxWait)
	return d - d/5 + rand.N(2*d/5+1)
}

// WaitForTemporal returns once Temporal answers, asking with backoff and
// logging each failed attempt at WARN; meanwhile /readyz says what it
// waits for. It returns ctx's error when ctx ends first, and at once an
// error that waiting cannot mend: credentials refused, a TLS handshake
// that fails.
func (w *Worker) WaitForTemporal(ctx context.Context) error {
	addr := w.cfg.TemporalAddress
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, connectAttemptTimeout)
		_, err := w.tc.CheckHealth(actx, &client.CheckHealthRequest{})
		cancel()
		if err == nil {
			if n > 1 {
				w.log.Info("Temporal reachable", zap.String("temporal", addr), zap.Int("attempts", n))
			}
			w.setWaiting("reachable, starting the workers")
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if refused(err) {
			return fmt.Errorf("connect to Temporal at %s: %w", addr, err)
		}
		wait := connectWait(n)
		msg, _, _ := strings.Cut(err.Error(), "\n")
		w.setWaiting(fmt.Sprintf("waiting to connect to %s (attempt %d): %s", addr, n, msg))
		w.log.Warn("Temporal not reachable; retrying", zap.String("temporal", addr), zap.Int("attempt", n),
			zap.Duration("retry_in", wait), zap.String("error", msg))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// StartWhenReachable waits for Temporal, then starts the worker (Start);
// a start that fails because Temporal went away again waits again.
func (w *Worker) StartWhenReachable(ctx context.Context) error {
	for {
		if err := w.WaitForTemporal(ctx); err != nil {
			return err
		}
		err := w.Start()
		if err == nil || !unreachable(err) {
			return err
		}
		w.log.Warn("Temporal went away as the worker started; waiting for it again", zap.String("temporal", w.cfg.TemporalAddress), zap.Error(err))
	}
}

// refused reports whether err, from a call to Temporal, is a mistake of
// configuration, which no wait mends: credentials refused, a certificate
// refused, a namespace that does not exist. Anything else from a health
// check (the server down, frozen, starting, overloaded) is waited out.
func refused(err error) bool {
	switch serviceerror.ToStatus(err).Code() {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.NotFound:
		return true
	}
	// gRPC reports a refused certificate as Unavailable; its text tells.
	// (A handshake cut short, as by a server restarting, is waited out.)
	msg := err.Error()
	return strings.Contains(msg, "x509: ") || strings.Contains(msg, "tls: ")
}

// unreachable reports whether err says Temporal did not answer: Start
// failed for that alone, and is tried again once Temporal answers.
func unreachable(err error) bool {
	switch serviceerror.ToStatus(err).Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return !refused(err)
	}
	return false
}

// setWaiting sets why the worker does not use Temporal yet; "" once it
// does.
func (w *Worker) setWaiting(why string) {
	w.waitMu.Lock()
	w.waiting = why
	w.waitMu.Unlock()
}

func (w *Worker) waitingFor() string {
	w.waitMu.Lock()
	defer w.waitMu.Unlock()
	return w.waiting
}
