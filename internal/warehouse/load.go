package warehouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// createTimeout bounds one job insert. The Go client retries HTTP 5xx, and
// the emulator answers a duplicate job ID with 500 "already created"; after
// the timeout we look the job up instead.
const createTimeout = 2 * time.Minute

// Loader appends newline-delimited JSON rows to tables with load jobs whose
// IDs the caller derives from the batch, so that no retry, concurrent
// attempt or zombie can append the same rows twice (docs/design.md §3, invariant 4).
type Loader struct {
	Client  *bigquery.Client
	Dataset string
	// Retried, when set, is told each time a job failed and the next job
	// ID is tried (the retries metric).
	Retried func()
	// Finished, when set, is told of every job this loader created that
	// ended, with its error (nil: done): each one, failed or not, counts
	// against the table's daily load-job quota.
	Finished func(table string, jobErr error)
	// Backoff is the wait before the n-th retry (from 1) after a
	// transient failure; nil: DefaultBackoff.
	Backoff func(n int) time.Duration
}

// ErrLoadFailed wraps the error of a load job that failed for a reason a
// quick retry does not fix (quotaExceeded, invalid rows, a schema
// mismatch): the caller waits, minutes, and calls Load again, which goes
// on with the next job ID. Failed jobs count against the table's quota,
// so they are not tried back to back.
var ErrLoadFailed = errors.New("load job failed")

// maxTransientJobs bounds the jobs one Load call tries after transient
// failures (backendError, rateLimitExceeded, ...) before it returns
// ErrLoadFailed too.
const maxTransientJobs = 8

// DefaultBackoff waits exponentially from a second to half a minute, as
// BigQuery advises for rateLimitExceeded and backend errors.
func DefaultBackoff(n int) time.Duration { return min(time.Second<<min(n-1, 5), 30*time.Second) }

// transient reports whether a job's or a request's error is one that
// BigQuery advises retrying after seconds: a rate limit or its backend.
// quotaExceeded is not: that quota refills over hours.
func transient(err error) bool {
	reasons := map[string]bool{}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		for _, e := range gerr.Errors {
			reasons[e.Reason] = true
		}
		if gerr.Code == http.StatusTooManyRequests {
			return true
		}
	}
	var berr *bigquery.Error
	if errors.As(err, &berr) {
		reasons[berr.Reason] = true
	}
	return reasons["rateLimitExceeded"] || reasons["backendError"] || reasons["internalError"]
}

// refusedForQuota reports whether a create was refused for a rate or a
// quota, before any job existed: the same ID can be tried again.
func refusedForQuota(err error) bool {
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		return false
	}
	for _, e := range gerr.Errors {
		if e.Reason == "rateLimitExceeded" || e.Reason == "quotaExceeded" {
			return true
		}
	}
	return gerr.Code == http.StatusTooManyRequests
}

func (l *Loader) backoff(ctx context.Context, n int) error {
	wait := DefaultBackoff(n)
	if l.Backoff != nil {
		wait = l.Backoff(n)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

// Load makes rows be in table exactly once. jobID(n) names the n-th job
// to try. It walks the IDs in order. Each is created first: BigQuery (and
// the emulator) refuse a job ID that exists before reading any of its
// upload, so a create can never append twice; a refused or unanswered
// create is looked up and waited for instead. The next ID is tried only
// after a job definitively failed, and a failed load job wrote nothing, so
// at most one job can ever succeed. The sequence has no end: a call that
// returns ErrLoadFailed is followed, later, by one that walks past the
// failed jobs to the next ID.
//
// Creating before looking up saves two requests per table in the common
// case (the emulator answers a load synchronously, so the job comes back
// done); a retry pays one refused create per job that exists.
func (l *Loader) Load(ctx context.Context, table string, jobID func(attempt int) string, rows []byte) error {
	waits := 0
	created := 0 // jobs this call created that failed
	for attempt := 0; ; {
		id := jobID(attempt)
		job, err := l.create(ctx, table, id, rows)
		found := false
		if err != nil {
			// Created by an earlier or concurrent attempt, or by this
			// one before a lost answer: the ID decides.
			var lookErr error
			if job, lookErr = l.Client.JobFromID(ctx, id); lookErr != nil {
				if !HasCode(lookErr, http.StatusNotFound) {
					return fmt.Errorf("create load job %s: %w (and looking it up: %v)", id, err, lookErr)
				}
				if refusedForQuota(err) {
					// Refused before it existed: the same ID is tried
					// again once the limit allows.
					waits++
					if err := l.backoff(ctx, waits); err != nil {
						return fmt.Errorf("create load job %s: refused for a limit; waiting to retry: %w", id, err)
					}
					continue
				}
				return fmt.Errorf("create load job %s: %w", id, err)
			}
			found = true
		}
		jobErr, err := l.wait(ctx, job)
		if err != nil {
			return fmt.Errorf("wait for load job %s: %w", id, err)
		}
		if l.Finished != nil && !found {
			l.Finished(table, jobErr)
		}
		if jobErr == nil {
			return nil
		}
		attempt++
		if l.Retried != nil {
			l.Retried()
		}
		if found {
			continue // failed before this call: its wait was served then
		}
		created++
		if !transient(jobErr) || created >= maxTransientJobs {
			return fmt.Errorf("%w: table %s, job %s: %v", ErrLoadFailed, table, id, jobErr)
		}
		waits++
		if err := l.backoff(ctx, waits); err != nil {
			return fmt.Errorf("load job %s failed (%v); waiting to try %s: %w", id, jobErr, jobID(attempt), err)
		}
	}
}

func (l *Loader) create(ctx context.Context, table, id string, rows []byte) (*bigquery.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	src := bigquery.NewReaderSource(bytes.NewReader(rows))
	src.SourceFormat = bigquery.JSON
	loader := l.Client.Dataset(l.Dataset).Table(table).LoaderFrom(src)
	loader.JobID = id
	loader.WriteDisposition = bigquery.WriteAppend
	loader.CreateDisposition = bigquery.CreateNever
	// One request from the bytes in hand: the client's default chunking
	// buffers 16 MiB per upload, and a batch uploads five tables at once.
	loader.MediaOptions = []googleapi.MediaOption{googleapi.ChunkSize(0)}
	return loader.Run(ctx)
}

// wait waits until job is done and returns the job's own error (it failed
// and wrote nothing) apart from an error waiting (try again later). It
// polls at growing intervals, up to pollMax, so that many partitions'
// loads stay within BigQuery's per-method request rate.
func (l *Loader) wait(ctx context.Context, job *bigquery.Job) (jobErr, err error) {
	if st := job.LastStatus(); st != nil && st.Done() {
		return st.Err(), nil // the create's or lookup's answer says so already
	}
	poll := pollMin
	for {
		status, err := job.Status(ctx)
		if err != nil {
			return nil, err
		}
		if status.Done() {
			return status.Err(), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(poll):
		}
		poll = min(2*poll, pollMax)
	}
}

const (
	pollMin = 200 * time.Millisecond
	pollMax = 5 * time.Second
)

// HasCode reports whether err is a BigQuery API answer with that HTTP code.
func HasCode(err error, code int) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == code
}

// Unreachable reports whether err says BigQuery did not answer at all: a
// connection refused or cut, a gateway's 502/503/504, a stream's
// Unavailable. Writing again as soon as BigQuery answers is right, and the
// caller does so at once rather than after a growing backoff, so that a
// batch goes on within a second or two of an outage's end. An address
// that does not resolve, or a request that ran out of time, is not: those
// are errors to report.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && errors.Is(err, io.EOF) {
		return true
	}
	for _, code := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		if HasCode(err, code) {
			return true
		}
	}
	return status.Code(err) == codes.Unavailable
}
