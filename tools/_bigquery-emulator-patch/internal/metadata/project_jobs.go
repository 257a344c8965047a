// This file is added to internal/metadata of
// github.com/goccy/bigquery-emulator v0.6.6 when devstack builds the tool
// servers; see project.go beside it.

package metadata

import (
	"context"
	"database/sql"
)

// findAllJobs reads every job of a project from the jobs table.
func (r *Repository) findAllJobs(ctx context.Context, projectID string) ([]*Job, error) {
	conn, err := r.getConnection(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Commit()
	rows, err := tx.QueryContext(ctx, "SELECT id FROM jobs WHERE projectID = @projectID", sql.Named("projectID", projectID))
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return r.findJobs(ctx, tx, projectID, ids)
}
