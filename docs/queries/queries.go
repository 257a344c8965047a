// Package queries holds the monitoring queries, embedded in the starter
// so that `starter query NAME` runs them where no checkout is (a pod).
package queries

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Names lists the queries by name (the file name without .sql), sorted.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".sql"))
	}
	slices.Sort(names)
	return names
}

// SQL is the query of that name ("freshness" or "freshness.sql"); ok is
// false when there is none.
func SQL(name string) (sql string, ok bool) {
	if strings.Contains(name, "/") {
		return "", false
	}
	b, err := files.ReadFile(strings.TrimSuffix(name, ".sql") + ".sql")
	return string(b), err == nil
}

// Summary is the first sentence of the query's leading comment: what it
// shows, for `starter query --list`.
func Summary(sql string) string {
	var comment []string
	for _, line := range strings.Split(sql, "\n") {
		text, ok := strings.CutPrefix(strings.TrimSpace(line), "--")
		if !ok {
			break
		}
		comment = append(comment, strings.TrimSpace(text))
	}
	s := strings.Join(comment, " ")
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	return s
}
