package server

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-json"

	"github.com/goccy/bigquery-emulator/internal/connection"
)

// alterColumnType matches BigQuery's DDL that widens a column's type in
// place: ALTER TABLE `p.d.t` ALTER COLUMN c SET DATA TYPE T (paystream
// patch). ZetaSQLite parses ALTER TABLE and then does nothing, so the
// statement succeeded and the table kept its old type.
var alterColumnType = regexp.MustCompile("(?is)^\\s*ALTER\\s+TABLE\\s+`?(?:([\\w-]+)\\.)?(\\w+)\\.(\\w+)`?\\s+ALTER\\s+COLUMN\\s+(?:IF\\s+EXISTS\\s+)?`?(\\w+)`?\\s+SET\\s+DATA\\s+TYPE\\s+(\\w+)\\s*;?\\s*$")

// coercible are the type changes ALTER COLUMN SET DATA TYPE allows: to
// a type that holds every value of the old one.
var coercible = map[string][]string{
	"INTEGER": {"NUMERIC", "BIGNUMERIC", "FLOAT"},
	"NUMERIC": {"BIGNUMERIC", "FLOAT"},
}

// canonType is a type as the emulator's metadata names it.
func canonType(t string) string {
	switch t = strings.ToUpper(t); t {
	case "INT64":
		return "INTEGER"
	case "FLOAT64":
		return "FLOAT"
	case "BOOL":
		return "BOOLEAN"
	case "BIGDECIMAL":
		return "BIGNUMERIC"
	case "DECIMAL":
		return "NUMERIC"
	}
	return t
}

// sqlType is a metadata type as GoogleSQL names it in a CAST.
func sqlType(t string) string {
	switch t {
	case "INTEGER":
		return "INT64"
	case "FLOAT":
		return "FLOAT64"
	}
	return t
}

// alterColumn runs an ALTER COLUMN SET DATA TYPE statement as BigQuery
// does: the column takes the new type, keeping its values, when the
// change is coercible, and the statement fails otherwise.
func (h *jobsInsertHandler) alterColumn(ctx context.Context, tx *connection.Tx, r *jobsInsertRequest, m []string) error {
	projectID, datasetID, tableID, column, typ := m[1], m[2], m[3], m[4], canonType(m[5])
	if projectID == "" {
		projectID = r.project.ID
	}
	project := r.project
	if projectID != r.project.ID {
		var err error
		if project, err = r.server.metaRepo.FindProjectWithConn(ctx, tx.Tx(), projectID); err != nil || project == nil {
			return fmt.Errorf("Not found: Project %s", projectID)
		}
	}
	dataset := project.Dataset(datasetID)
	if dataset == nil {
		return fmt.Errorf("Not found: Dataset %s:%s", projectID, datasetID)
	}
	table := dataset.Table(tableID)
	if table == nil {
		return fmt.Errorf("Not found: Table %s:%s.%s", projectID, datasetID, tableID)
	}
	content, err := table.Content()
	if err != nil {
		return err
	}
	var kept []string
	casts := map[string]string{}
	found := false
	for _, f := range content.Schema.Fields {
		kept = append(kept, f.Name)
		if !strings.EqualFold(f.Name, column) {
			continue
		}
		found = true
		from := canonType(f.Type)
		if from == typ {
			continue
		}
		ok := false
		for _, to := range coercible[from] {
			ok = ok || to == typ
		}
		if !ok || f.Mode == "REPEATED" {
			return fmt.Errorf("ALTER TABLE ALTER COLUMN SET DATA TYPE requires that the existing column type (%s) is assignable to the new type (%s)", from, typ)
		}
		f.Type = typ
		f.Precision, f.Scale = 0, 0
		casts[f.Name] = sqlType(typ)
	}
	if !found {
		return fmt.Errorf("Column %s not found in table %s", column, tableID)
	}
	if err := r.server.contentRepo.ChangeColumns(ctx, tx, content, kept, casts); err != nil {
		return err
	}
	encoded, err := json.Marshal(content)
	if err != nil {
		return err
	}
	var merged map[string]interface{}
	if err := json.Unmarshal(encoded, &merged); err != nil {
		return err
	}
	merged["lastModifiedTime"] = strconv.FormatInt(time.Now().UnixMilli(), 10)
	merged["etag"] = strconv.FormatInt(time.Now().UnixNano(), 36)
	return table.Replace(ctx, tx.Tx(), merged)
}
