package metadata

import (
	"context"
	"database/sql"
)

// Replace stores the table's new metadata. Update, upstream, stores the
// old one whatever it is given. (paystream patch)
func (t *Table) Replace(ctx context.Context, tx *sql.Tx, metadata map[string]interface{}) error {
	t.metadata = metadata
	return t.repo.UpdateTable(ctx, tx, t)
}
