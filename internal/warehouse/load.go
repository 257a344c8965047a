package warehouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
)

// MaxLoadAttempts bounds the job IDs tried for one (batch, table): a load
// that fails this often fails for a reason retrying will not fix (a schema
// mismatch, say) and needs an operator.
const MaxLoadAttempts = 8

// ErrLoadFailed wraps a load job's own error after MaxLoadAttempts jobs.
var ErrLoadFailed = errors.New("load job failed")

// createTimeout bounds one job insert. The Go client retries HTTP 5xx, and
// the emulator answers a duplicate job ID with 500 "already created"; after
// the timeout we look the job up instead.
const createTimeout = 2 * time.Minute

// Loader appends newline-delimited JSON rows to tables with load jobs whose
// IDs the caller derives from the batch, so that no retry, concurrent
// attempt or zombie can append the same rows twice (DESIGN §3, invariant 4).
type Loader struct {
	Client  *bigquery.Client
	Dataset string
	// FoundJobWrote, when set, is asked about a job this attempt found
	// rather than created and that says it succeeded: did it write its
	// rows? The emulator records a load job before it has read the upload,
	// so a client killed mid-upload leaves a job that says DONE and wrote
	// nothing; BigQuery creates a load job only once its upload is whole.
	FoundJobWrote func(ctx context.Context, table string) (bool, error)
	// Retried, when set, is told each time a job failed and the next job
	// ID is tried (the retries metric).
	Retried func()
}

// Load makes rows be in table exactly once. jobID(n) names the n-th job
// to try. It walks the IDs in order. Each is created first: BigQuery (and
// the emulator) refuse a job ID that exists before reading any of its
// upload, so a create can never append twice; a refused or unanswered
// create is looked up and waited for instead. The next ID is tried only
// after a job definitively failed, and a failed load job wrote nothing, so
// at most one job can ever succeed.
//
// Creating before looking up saves two requests per table in the common
// case (the emulator answers a load synchronously, so the job comes back
// done); a retry pays one refused create per job that exists.
func (l *Loader) Load(ctx context.Context, table string, jobID func(attempt int) string, rows []byte) error {
	var lastErr error
	for attempt := range MaxLoadAttempts {
		id := jobID(attempt)
		job, err := l.create(ctx, table, id, rows)
		found := false
		if err != nil {
			// Created by an earlier or concurrent attempt, or by this
			// one before a lost answer: the ID decides.
			var lookErr error
			if job, lookErr = l.Client.JobFromID(ctx, id); lookErr != nil {
				if HasCode(lookErr, http.StatusNotFound) {
					return fmt.Errorf("create load job %s: %w", id, err)
				}
				return fmt.Errorf("create load job %s: %w (and looking it up: %v)", id, err, lookErr)
			}
			found = true
		}
		jobErr, err := l.wait(ctx, job)
		if err != nil {
			return fmt.Errorf("wait for load job %s: %w", id, err)
		}
		if jobErr == nil && found && l.FoundJobWrote != nil {
			wrote, err := l.FoundJobWrote(ctx, table)
			if err != nil {
				return fmt.Errorf("check rows of load job %s: %w", id, err)
			}
			if !wrote {
				jobErr = fmt.Errorf("load job %s is done but wrote no rows (its upload was cut off)", id)
			}
		}
		if jobErr == nil {
			return nil
		}
		lastErr = jobErr
		if l.Retried != nil && attempt+1 < MaxLoadAttempts {
			l.Retried()
		}
	}
	return fmt.Errorf("%w: table %s, %d jobs: %v", ErrLoadFailed, table, MaxLoadAttempts, lastErr)
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
// and wrote nothing) apart from an error waiting (try again later).
func (l *Loader) wait(ctx context.Context, job *bigquery.Job) (jobErr, err error) {
	if st := job.LastStatus(); st != nil && st.Done() {
		return st.Err(), nil // the create's or lookup's answer says so already
	}
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
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// HasCode reports whether err is a BigQuery API answer with that HTTP code.
func HasCode(err error, code int) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == code
}
