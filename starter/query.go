package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"cloud.google.com/go/bigquery"

	"github.com/paystream/paystream/docs/queries"
	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/warehouse"
	"github.com/paystream/paystream/schema"
)

// querySource finds what `starter query ARG` runs: a file on disk, else
// the monitoring query of that name built into the binary (by bare name,
// or as the docs write it, docs/queries/NAME.sql), so the docs' commands
// work in a pod without a checkout.
func querySource(arg string) (sql string, err error) {
	b, err := os.ReadFile(arg)
	if err == nil {
		return string(b), nil
	}
	name := arg
	if rest, ok := strings.CutPrefix(arg, "docs/queries/"); ok {
		name = rest
	}
	if s, ok := queries.SQL(name); ok {
		return s, nil
	}
	if !strings.Contains(arg, "/") && !strings.HasSuffix(arg, ".sql") {
		return "", config.Usage(fmt.Errorf("no query named %q (starter query --list names them)", arg))
	}
	return "", fmt.Errorf("query %s: %w", arg, err)
}

// listQueries prints the built-in queries with what each shows.
func listQueries(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, name := range queries.Names() {
		sql, _ := queries.SQL(name)
		fmt.Fprintf(tw, "%s\t%s\n", name, queries.Summary(sql))
	}
	return tw.Flush()
}

// deniedWords are keywords that only a statement that changes something,
// or a script, contains; a query with one is refused even where the first
// word is SELECT or WITH.
var deniedWords = map[string]bool{
	"INSERT": true, "UPDATE": true, "DELETE": true, "MERGE": true, "TRUNCATE": true,
	"CREATE": true, "DROP": true, "UNDROP": true, "ALTER": true, "GRANT": true, "REVOKE": true,
	"CALL": true, "EXECUTE": true, "EXPORT": true, "LOAD": true, "DECLARE": true, "SET": true,
	"BEGIN": true, "COMMIT": true, "ROLLBACK": true, "ASSERT": true, "RAISE": true,
}

// selectOnly accepts a single SELECT statement (optionally WITH ... SELECT)
// and refuses anything else, reading the text itself: comments, string
// literals and quoted identifiers are skipped, one trailing semicolon is
// allowed. It is conservative on purpose (a SELECT with a column named
// like a keyword above must quote it); BigQuery's dry run checks the
// statement type too, but the emulator's dry run calls every statement a
// SELECT, so this is the check that holds everywhere.
func selectOnly(sql string) error {
	var words []string
	statements, tail := 1, false // tail: a semicolon was seen; only space may follow
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case strings.HasPrefix(sql[i:], "--") || c == '#':
			if j := strings.IndexByte(sql[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(sql)
			}
		case strings.HasPrefix(sql[i:], "/*"):
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				return errors.New("a /* comment is not closed")
			}
			i += 2 + j + 2
		case c == '\'' || c == '"' || c == '`':
			end, err := quoteEnd(sql, i)
			if err != nil {
				return err
			}
			if tail {
				statements++
			}
			i = end
		case c == ';':
			if tail {
				statements++
			}
			tail = true
			i++
		default:
			if tail {
				statements++
				tail = false
			}
			j := i
			for j < len(sql) && (sql[j] == '_' || sql[j] >= 0x80 || unicode.IsLetter(rune(sql[j])) || unicode.IsDigit(rune(sql[j]))) {
				j++
			}
			if j == i {
				i++ // an operator or punctuation
				continue
			}
			words = append(words, strings.ToUpper(sql[i:j]))
			i = j
		}
	}
	switch {
	case len(words) == 0:
		return errors.New("the query is empty")
	case statements > 1:
		return errors.New("only one statement may be run; this has more (a ';' inside)")
	case words[0] != "SELECT" && words[0] != "WITH":
		return fmt.Errorf("only a SELECT may be run, not %s", words[0])
	}
	for _, w := range words {
		if deniedWords[w] {
			return fmt.Errorf("only a SELECT may be run; this one says %s", w)
		}
	}
	return nil
}

// quoteEnd is the index after the string literal or quoted identifier
// that starts at sql[i]: single, double or triple quotes, or backquotes,
// with backslash escapes.
func quoteEnd(sql string, i int) (int, error) {
	q := sql[i : i+1]
	if q != "`" && strings.HasPrefix(sql[i:], q+q+q) {
		q = q + q + q
	}
	for j := i + len(q); j < len(sql); j++ {
		if sql[j] == '\\' {
			j++
			continue
		}
		if strings.HasPrefix(sql[j:], q) {
			return j + len(q), nil
		}
	}
	return 0, fmt.Errorf("a %s quote is not closed", q)
}

// dryRunSelect asks BigQuery what kind of statement sql is, without
// running it, and refuses anything but a SELECT.
func dryRunSelect(ctx context.Context, bq *bigquery.Client, sql string) error {
	q := bq.Query(sql)
	q.DryRun = true
	job, err := q.Run(ctx)
	if err != nil {
		return fmt.Errorf("dry run: %w", err)
	}
	st := job.LastStatus()
	if st == nil || st.Statistics == nil {
		return errors.New("dry run: BigQuery did not say what kind of statement it is")
	}
	qs, ok := st.Statistics.Details.(*bigquery.QueryStatistics)
	if !ok || qs.StatementType != "SELECT" {
		kind := "unknown"
		if ok {
			kind = qs.StatementType
		}
		return fmt.Errorf("only a SELECT may be run; BigQuery calls this a %s statement", kind)
	}
	return nil
}

// runQuery runs a SELECT written with the {{project}} and {{dataset}}
// placeholders (docs/queries) against the configured dataset.
func runQuery(ctx context.Context, bq *bigquery.Client, cfg config.Config, args commandArgs, out io.Writer) error {
	if err := selectOnly(args.querySQL); err != nil {
		return config.Usage(fmt.Errorf("query %s: %w", args.queryFile, err))
	}
	sql := schema.Fill(args.querySQL, cfg.BigQueryProject, cfg.BigQueryDataset)
	if err := dryRunSelect(ctx, bq, sql); err != nil {
		return fmt.Errorf("query %s: %w", args.queryFile, err)
	}
	t, err := warehouse.Query(ctx, bq, sql)
	if err != nil {
		return fmt.Errorf("query %s: %w", args.queryFile, err)
	}
	if args.jsonOut {
		rows := make([]map[string]string, len(t.Rows))
		for i, r := range t.Rows {
			rows[i] = make(map[string]string, len(r))
			for j, v := range r {
				rows[i][t.Columns[j]] = v
			}
		}
		return writeJSON(out, rows)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, printable(strings.ToUpper(strings.Join(t.Columns, "\t"))))
	for _, r := range t.Rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = printable(v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "(%d rows)\n", len(t.Rows))
	return nil
}

// unsafeRune is a character a terminal may act on rather than show: C0
// and C1 controls (ESC starts the escape sequences a producer could put
// in a record), DEL, line and paragraph separators, and the bidirectional
// overrides that make text read otherwise than it is.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
		(r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') || r == '\u200e' || r == '\u200f'
}

// printable writes every unsafe character of s, and every byte that is
// not UTF-8, as a Go-style escape (\x1b, \u009b), so a cell prints as the
// text it holds and never moves the cursor, recolours or retitles the
// terminal. A tab or newline is escaped too: the table stays a table.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r) && r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// writeJSON prints v as indented JSON with every unsafe character as a
// \u escape: encoding/json escapes C0 controls but leaves DEL, C1 controls
// and bidi overrides raw. Outside its strings JSON is ASCII, so the
// escapes land only in strings, which decode to the same text.
func writeJSON(out io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range buf.String() {
		if unsafeRune(r) && r != '\n' {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	_, err := io.WriteString(out, b.String())
	return err
}
