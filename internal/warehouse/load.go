package warehouse

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
	// Emulator loads through a staging table and an INSERT query job
	// carrying the derived ID. The emulator records a load job before it
	// has read the upload, so a client killed mid-upload leaves a job that
	// looks done and wrote nothing; its query jobs commit the job record
	// and the rows in one transaction, as BigQuery's load jobs do.
	Emulator bool
	// Heartbeat, when set, is called while jobs run, so the activity's
	// heartbeat timeout catches a stalled load.
	Heartbeat func()
}

// Load makes rows be in table exactly once. jobID(n) names the n-th job
// to try. It walks the IDs in order: an existing job is looked up and waited
// for, never re-created; the next ID is tried only after a job definitively
// failed, and a failed load job wrote nothing, so at most one job can ever
// succeed.
func (l *Loader) Load(ctx context.Context, table string, jobID func(attempt int) string, rows []byte) error {
	var lastErr error
	for attempt := range MaxLoadAttempts {
		id := jobID(attempt)
		job, err := l.Client.JobFromID(ctx, id)
		switch {
		case err == nil:
		case hasCode(err, http.StatusNotFound):
			job, err = l.create(ctx, table, id, rows)
			if err != nil {
				// Maybe created by a concurrent attempt, or by this
				// one before a lost answer: the ID decides.
				var lookErr error
				if job, lookErr = l.Client.JobFromID(ctx, id); lookErr != nil {
					return fmt.Errorf("create load job %s: %w", id, err)
				}
			}
		default:
			return fmt.Errorf("look up load job %s: %w", id, err)
		}
		jobErr, err := l.wait(ctx, job)
		if err != nil {
			return fmt.Errorf("wait for load job %s: %w", id, err)
		}
		if jobErr == nil {
			return nil
		}
		lastErr = jobErr
	}
	return fmt.Errorf("%w: table %s, %d jobs: %v", ErrLoadFailed, table, MaxLoadAttempts, lastErr)
}

func (l *Loader) create(ctx context.Context, table, id string, rows []byte) (*bigquery.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	if l.Emulator {
		return l.createViaStage(ctx, table, id, rows)
	}
	src := bigquery.NewReaderSource(bytes.NewReader(rows))
	src.SourceFormat = bigquery.JSON
	loader := l.Client.Dataset(l.Dataset).Table(table).LoaderFrom(src)
	loader.JobID = id
	loader.WriteDisposition = bigquery.WriteAppend
	loader.CreateDisposition = bigquery.CreateNever
	return loader.Run(ctx)
}

// createViaStage loads rows into a staging table of this attempt's own,
// then copies them into table with a query job whose ID is id.
func (l *Loader) createViaStage(ctx context.Context, table, id string, rows []byte) (*bigquery.Job, error) {
	ds := l.Client.Dataset(l.Dataset)
	md, err := ds.Table(table).Metadata(ctx)
	if err != nil {
		return nil, fmt.Errorf("read schema of %s: %w", table, err)
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	stageName := fmt.Sprintf("_stage_%s_%x", id, nonce)
	stage := ds.Table(stageName)
	if err := stage.Create(ctx, &bigquery.TableMetadata{Schema: md.Schema}); err != nil {
		return nil, fmt.Errorf("create staging table %s: %w", stageName, err)
	}
	defer stage.Delete(context.WithoutCancel(ctx)) //nolint:errcheck // a leftover stage holds no one's rows
	src := bigquery.NewReaderSource(bytes.NewReader(rows))
	src.SourceFormat = bigquery.JSON
	loader := stage.LoaderFrom(src)
	loader.WriteDisposition = bigquery.WriteAppend
	job, err := loader.Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("stage rows for %s: %w", table, err)
	}
	if jobErr, err := l.wait(ctx, job); err != nil || jobErr != nil {
		return nil, fmt.Errorf("stage rows for %s: %w", table, errors.Join(err, jobErr))
	}
	cols := make([]string, len(md.Schema))
	for i, f := range md.Schema {
		cols[i] = "`" + f.Name + "`"
	}
	list := strings.Join(cols, ", ")
	q := l.Client.Query(fmt.Sprintf("INSERT INTO `%s.%s.%s` (%s) SELECT %s FROM `%s.%s.%s`",
		l.Client.Project(), l.Dataset, table, list, list, l.Client.Project(), l.Dataset, stageName))
	q.JobID = id
	return q.Run(ctx)
}

// wait waits until job is done and returns the job's own error (it failed
// and wrote nothing) apart from an error waiting (try again later).
func (l *Loader) wait(ctx context.Context, job *bigquery.Job) (jobErr, err error) {
	if l.Emulator && job.LastStatus() != nil && job.LastStatus().Statistics != nil {
		if _, isQuery := job.LastStatus().Statistics.Details.(*bigquery.QueryStatistics); isQuery {
			return l.waitQuery(ctx, job)
		}
	}
	for {
		status, err := job.Status(ctx)
		if err != nil {
			return nil, err
		}
		if status.Done() {
			return status.Err(), nil
		}
		if l.Heartbeat != nil {
			l.Heartbeat()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitQuery waits for an emulator query job through its results: the
// emulator's jobs.get says DONE with no error even for a failed job, and
// only the results call tells. A 4xx answer there is the job's own failure.
func (l *Loader) waitQuery(ctx context.Context, job *bigquery.Job) (jobErr, err error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Second):
				if l.Heartbeat != nil {
					l.Heartbeat()
				}
			}
		}
	}()
	status, err := job.Wait(ctx)
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code >= 400 && gerr.Code < 500 {
		return err, nil
	}
	if err != nil {
		return nil, err
	}
	return status.Err(), nil
}

func hasCode(err error, code int) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == code
}
