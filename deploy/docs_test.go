package deploy_test

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docFiles are the documents a user reads: every Markdown file of the
// repository (the README, CHANGELOG, docs/, tools/), outside build output
// and hidden directories, which hold copies of other projects' files.
func docFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"../README.md", "../docs/design.md", "../docs/limits.md", "../CHANGELOG.md"} {
		if !slices.Contains(files, want) {
			t.Fatalf("docFiles found %v, without %s", files, want)
		}
	}
	return files
}

// docCommand is one command line a document shows.
type docCommand struct {
	where string // file:line
	line  string
}

var (
	fence      = regexp.MustCompile("^```(\\w*)")
	inlineCode = regexp.MustCompile("`([^`]+)`")
	ourCommand = regexp.MustCompile(`^(?:go run \./)?(worker|starter|simulator|devstack|bench)(?:\s|$)|^make\s`)
	flagSpan   = regexp.MustCompile(`^--([a-z][a-z0-9-]*)(?:[ =]|$)`)
)

// docCommands finds the paystream command lines in a document: every line
// of a sh or bash block, a "$ " line of any block, and every inline code
// span that starts with a binary's name or `make`.
func docCommands(t *testing.T, path string) (cmds []docCommand, flags []docCommand) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inBlock, lang, n := false, "", 0
	for sc.Scan() {
		n++
		line := sc.Text()
		where := filepath.Base(path) + ":" + strconv.Itoa(n)
		if m := fence.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			inBlock, lang = !inBlock, m[1]
			continue
		}
		if inBlock {
			l := strings.TrimSpace(line)
			if rest, ok := strings.CutPrefix(l, "$ "); ok {
				l = rest
			} else if lang != "sh" && lang != "bash" {
				continue
			}
			if ourCommand.MatchString(l) {
				cmds = append(cmds, docCommand{where, l})
			}
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
			switch {
			case ourCommand.MatchString(m[1]):
				cmds = append(cmds, docCommand{where, m[1]})
			case flagSpan.MatchString(m[1]):
				flags = append(flags, docCommand{where, m[1]})
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cmds, flags
}

// words splits a command line as a shell would, for the simple lines docs
// show: up to a comment or a pipe, quotes kept together.
func words(line string) []string {
	var out []string
	var cur strings.Builder
	quote := rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote = r
		case r == '#' && cur.Len() == 0, r == '|' || r == ';' || r == '&':
			return append(out, nonEmpty(cur.String())...)
		case r == ' ' || r == '\t':
			out = append(out, nonEmpty(cur.String())...)
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, nonEmpty(cur.String())...)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// TestDocsShowOnlyCommandsThatExist: every paystream command a document
// shows names a binary, subcommand, make target and flags that exist, so a
// renamed flag cannot leave a document behind; and every --flag mentioned
// alone is some command's.
func TestDocsShowOnlyCommandsThatExist(t *testing.T) {
	build(t)
	known := map[string]map[string]string{} // "starter status" → flags
	all := map[string]bool{}
	for _, c := range commands {
		flags := flagsOf(t, c)
		known[strings.Join(c, " ")] = flags
		for f := range flags {
			all[f] = true
		}
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, path := range docFiles(t) {
		cmds, flags := docCommands(t, path)
		for _, c := range cmds {
			checked++
			if err := checkCommand(words(c.line), known, string(makefile)); err != "" {
				t.Errorf("%s: `%s`: %s", c.where, c.line, err)
			}
		}
		for _, f := range flags {
			if name := flagSpan.FindStringSubmatch(f.line)[1]; !all[name] && name != "help" && name != "version" {
				t.Errorf("%s: `%s`: no command has --%s", f.where, f.line, name)
			}
		}
	}
	if checked < 30 {
		t.Errorf("found only %d commands in the documents: is the parser blind?", checked)
	}
}

// checkCommand returns what is wrong with one command line ("" when it
// exists as shown).
func checkCommand(w []string, known map[string]map[string]string, makefile string) string {
	if len(w) >= 3 && w[0] == "go" && w[1] == "run" {
		w = append([]string{strings.TrimPrefix(w[2], "./")}, w[3:]...)
	}
	if w[0] == "make" {
		for _, arg := range w[1:] {
			if name, value, ok := strings.Cut(arg, "="); ok {
				if name == "BENCH_FLAGS" {
					if err := checkCommand(append([]string{"bench"}, words(value)...), known, makefile); err != "" {
						return "BENCH_FLAGS: " + err
					}
				}
				continue
			}
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(arg) + `:`).MatchString(makefile) {
				return "the Makefile has no target " + arg
			}
		}
		return ""
	}
	command, args := w[0], w[1:]
	switch command {
	case "starter", "devstack":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[0], "<") {
			return "" // the binary alone, its -h, or a placeholder
		}
		if command == "starter" && args[0] == "help" && len(args) > 1 {
			args = args[1:] // help <command>: the command must exist
			if strings.HasPrefix(args[0], "<") {
				return ""
			}
		}
		command += " " + args[0]
		args = args[1:]
		if command == "starter schema" && len(args) > 0 {
			command += " " + args[0]
			args = args[1:]
		}
		if command == "starter completion" || command == "devstack build-tools" {
			return ""
		}
	}
	flags, ok := known[command]
	if !ok {
		return "no command " + command
	}
	for _, a := range args {
		a = strings.Trim(a, "[]")
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if _, ok := flags[name]; !ok && !slices.Contains([]string{"h", "help", "version"}, name) {
			return command + " has no flag --" + name
		}
	}
	return ""
}

var (
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#+ (.+)$`)
)

// slug is GitHub's anchor for a heading: lower case, punctuation dropped,
// spaces as '-'.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// linkProblem says why a link target (without its anchor) cannot be
// followed in a clone of the repository, or "" when it can: an address
// on the web is fine, a local file only inside the repository.
func linkProblem(root, doc, target string) string {
	switch {
	case strings.HasPrefix(target, "http://"), strings.HasPrefix(target, "https://"), strings.HasPrefix(target, "mailto:"):
		return ""
	case strings.Contains(target, ":"):
		return "a link to a local file by URL, which no clone has"
	case strings.HasPrefix(target, "/"), strings.HasPrefix(target, "~"), filepath.IsAbs(target):
		return "an absolute path, which no clone has"
	}
	abs, err := filepath.Abs(filepath.Join(filepath.Dir(doc), target))
	if err != nil {
		return err.Error()
	}
	if abs != root && !strings.HasPrefix(abs, root+string(filepath.Separator)) {
		return "it leaves the repository, so a clone does not have it"
	}
	return ""
}

// TestLinkProblem: the links a clone cannot follow are the ones refused.
func TestLinkProblem(t *testing.T) {
	root := filepath.Join(string(filepath.Separator), "repo")
	for _, c := range []struct {
		doc, target string
		refused     bool
	}{
		{"/repo/README.md", "docs/design.md", false},
		{"/repo/docs/guarantees.md", "../tools/README.md", false},
		{"/repo/docs/guarantees.md", "design.md", false},
		{"/repo/README.md", "https://temporal.io/", false},
		{"/repo/README.md", "../shared/NOTES.md", true},
		{"/repo/docs/guarantees.md", "../../shared/NOTES.md", true},
		{"/repo/docs/design-changes.md", "../../repo-other/x.md", true},
		{"/repo/README.md", "/work/shared/NOTES.md", true},
		{"/repo/README.md", "file:///work/shared/NOTES.md", true},
		{"/repo/README.md", "~/notes.md", true},
	} {
		if got := linkProblem(root, c.doc, c.target); (got != "") != c.refused {
			t.Errorf("%s → %s: %q, want refused %v", c.doc, c.target, got, c.refused)
		}
	}
}

// TestDocsLinksResolve: every link of the documents that is not on the
// web reaches a file of the repository (none outside it, no absolute
// path, no file:// address), a document links to its own sections by
// anchor alone, and a heading exists where a link names one, so moving a
// section cannot strand a link to it.
func TestDocsLinksResolve(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range docFiles(t) {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := filepath.Rel("..", path)
		for _, m := range mdLink.FindAllStringSubmatch(string(text), -1) {
			target, anchor, _ := strings.Cut(m[1], "#")
			if problem := linkProblem(root, path, target); problem != "" {
				t.Errorf("%s: link %s: %s", name, m[1], problem)
				continue
			}
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file := path
			if target != "" {
				file = filepath.Join(filepath.Dir(path), target)
				if filepath.Clean(file) == filepath.Clean(path) {
					t.Errorf("%s: link %s: the document links to itself; link a section by its anchor alone", name, m[1])
				}
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: link %s: %v", name, m[1], err)
				continue
			}
			if anchor == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			body, _ := os.ReadFile(file)
			found := false
			for _, h := range heading.FindAllStringSubmatch(string(body), -1) {
				found = found || slug(h[1]) == anchor
			}
			if !found {
				t.Errorf("%s: link %s: %s has no heading #%s", name, m[1], filepath.Base(file), anchor)
			}
		}
	}
}

// TestHowItWorksFollowsABatchThroughFewFiles: the README's "How it works"
// names the files a batch passes through, each one there, and no more than
// fifteen, so a newcomer can read them in an afternoon.
func TestHowItWorksFollowsABatchThroughFewFiles(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## How it works\n")
	if !ok {
		t.Fatal("README has no How it works section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	files := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z/_]+\\.go)`").FindAllStringSubmatch(section, -1) {
		files[m[1]] = true
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("How it works names %s: %v", m[1], err)
		}
	}
	if len(files) < 5 || len(files) > 15 {
		t.Errorf("How it works names %d files, want at most 15 (and enough to follow a batch): %v", len(files), files)
	}
}

// TestDesignIsCitedInTheRepository: documents, code comments and DDL cite
// docs/design.md, never the founding design document kept outside the
// repository, which a clone does not have.
func TestDesignIsCitedInTheRepository(t *testing.T) {
	outside := regexp.MustCompile(`DESIGN(\.md|\s*§)`)
	checked := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !slices.Contains([]string{".md", ".go", ".sql"}, filepath.Ext(path)) {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for i, line := range strings.Split(string(text), "\n") {
			if outside.MatchString(line) {
				name, _ := filepath.Rel("..", path)
				t.Errorf("%s:%d cites the design outside the repository; cite docs/design.md: %s", name, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Errorf("read only %d files: is the walk blind?", checked)
	}
}
