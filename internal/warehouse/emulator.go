package warehouse

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// emulatorTransport makes the emulator's "already created" answers look
// like BigQuery's: HTTP 409 instead of 500. The Go client retries every
// 500 until its context ends, so without this a duplicate job ID — the
// very case idempotent loads are built on — would stall the caller instead
// of sending it to look the job up.
type emulatorTransport struct{ base http.RoundTripper }

func (t emulatorTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusInternalServerError {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(body), "already created") || strings.Contains(string(body), "UNIQUE constraint failed") {
		resp.StatusCode, resp.Status = http.StatusConflict, "409 Conflict"
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
