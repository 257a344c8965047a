// Package warehouse is paystream's side of BigQuery: opening a client for
// real BigQuery or the emulator.
package warehouse

import (
	"context"
	"fmt"
	"net/http"

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
			option.WithHTTPClient(&http.Client{Transport: emulatorTransport{http.DefaultTransport}}))
	}
	c, err := bigquery.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("open BigQuery project %s: %w", project, err)
	}
	c.Location = location
	return c, nil
}
