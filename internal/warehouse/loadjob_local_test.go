package warehouse_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestLocalLoadJobsAreWholeOrNothing: a client killed while uploading a
// load job's rows leaves neither the job nor any of its rows on the local
// stack, as on BigQuery, which creates a load job only once its upload is
// complete; the retry under the same job ID then loads every row once.
// (The unpatched emulator recorded the job, loaded the rows read before
// the cut and called the job done, so the retry found it and took the
// batch as loaded.)
func TestLocalLoadJobsAreWholeOrNothing(t *testing.T) {
	ctx := context.Background()
	cfg, bq := localBigQuery(t)
	const jobID, rows = "paystream_cut_upload_r0", 10
	var ndjson bytes.Buffer
	cut := 0
	for i := range rows {
		fmt.Fprintf(&ndjson, `{"batch_id":"cut","kafka_topic":"payments","kafka_partition":0,"start_offset":%d,"end_offset":%d,"records":1,"loaded":1,`+
			`"duplicates":0,"errors":0,"late":0,"skipped":0,"next_window_start":0,"loaded_at":"2026-12-03T01:02:03Z"}`+"\n", i, i+1)
		if i == rows/2-1 {
			cut = ndjson.Len() // the end of a row: the cut the JSON reader cannot notice
		}
	}
	const boundary = "paystream-cut"
	head := fmt.Sprintf("--%s\r\nContent-Type: application/json\r\n\r\n"+
		`{"jobReference":{"projectId":%q,"jobId":%q},"configuration":{"load":{"destinationTable":{"projectId":%q,"datasetId":%q,"tableId":%q},`+
		`"sourceFormat":"NEWLINE_DELIMITED_JSON","writeDisposition":"WRITE_APPEND","createDisposition":"CREATE_NEVER"}}}`+
		"\r\n--%s\r\nContent-Type: application/octet-stream\r\n\r\n",
		boundary, cfg.BigQueryProject, jobID, cfg.BigQueryProject, cfg.BigQueryDataset, contract.TableBatchLedger, boundary)
	body := head + ndjson.String() + "\r\n--" + boundary + "--\r\n"
	u, err := url.Parse(cfg.BigQueryEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	// The whole request announced, half its rows sent, then the client dies.
	fmt.Fprintf(conn, "POST /upload/bigquery/v2/projects/%s/jobs?uploadType=multipart HTTP/1.1\r\nHost: %s\r\n"+
		"Content-Type: multipart/related; boundary=%s\r\nContent-Length: %d\r\n\r\n%s",
		cfg.BigQueryProject, u.Host, boundary, len(body), body[:len(head)+cut])
	time.Sleep(500 * time.Millisecond)
	conn.Close()
	time.Sleep(2 * time.Second) // the server has read what it will

	count := func() int64 {
		it, err := bq.Query(fmt.Sprintf("SELECT COUNT(*) FROM `%s.%s.%s` WHERE batch_id = 'cut'", bq.Project(), cfg.BigQueryDataset, contract.TableBatchLedger)).Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var row []bigquery.Value
		if err := it.Next(&row); err != nil {
			t.Fatal(err)
		}
		n, _ := row[0].(int64)
		return n
	}
	if _, err := bq.JobFromID(ctx, jobID); !warehouse.HasCode(err, http.StatusNotFound) {
		t.Errorf("after a cut upload, looking its job up gave %v, want 404: the job must not exist", err)
	}
	if n := count(); n != 0 {
		t.Errorf("a cut upload loaded %d of its %d rows, want none", n, rows)
	}

	l := warehouse.Loader{Client: bq, Dataset: cfg.BigQueryDataset}
	if err := l.Load(ctx, contract.TableBatchLedger, func(int) string { return jobID }, ndjson.Bytes()); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != rows {
		t.Errorf("the retry under the same job ID left %d rows, want %d", n, rows)
	}

	// A load that fails leaves its job DONE with the error, not DONE: a
	// retry that finds it must not take it as loaded.
	err = l.Load(ctx, "no_such_table", func(attempt int) string { return fmt.Sprintf("paystream_missing_table_r%d", attempt) }, ndjson.Bytes())
	if !errors.Is(err, warehouse.ErrLoadFailed) {
		t.Fatalf("a load into a missing table: %v, want it refused (ErrLoadFailed)", err)
	}
	job, err := bq.JobFromID(ctx, "paystream_missing_table_r0")
	if err != nil {
		t.Fatal(err)
	}
	st, err := job.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != bigquery.Done || st.Err() == nil {
		t.Errorf("the failed load's job looked up: state %v, error %v; want done with its error", st.State, st.Err())
	}
}
