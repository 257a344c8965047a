package devstack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyDiff: a unified diff applies where its hunks say, and one whose
// context or removed lines do not match the file is refused, naming the
// line, rather than applied near by.
func TestApplyDiff(t *testing.T) {
	orig := "a\nb\nc\nd\ne\nf\ng\nh\n"
	diff := `--- a/x.go
+++ b/x.go
@@ -1,3 +1,3 @@
 a
-b
+B
 c
@@ -6,2 +6,4 @@
 f
+f2
+f3
 g
`
	got, err := applyDiff([]byte(orig), []byte(diff))
	if want := "a\nB\nc\nd\ne\nf\nf2\nf3\ng\nh\n"; err != nil || string(got) != want {
		t.Fatalf("applied: %q, %v; want %q", got, err, want)
	}
	// Applied again, to the file it made: its removed line is gone.
	if _, err := applyDiff(got, []byte(diff)); err == nil || !strings.Contains(err.Error(), `line 2 to be "b", and it is "B"`) {
		t.Errorf("a diff applied twice: %v; want it refused at line 2", err)
	}
	// A file whose lines moved: the hunk does not match where it says.
	if _, err := applyDiff([]byte("z\n"+orig), []byte(diff)); err == nil {
		t.Error("a diff whose lines moved by one was applied")
	}
	if _, err := applyDiff([]byte(orig), []byte("--- a/x.go\n+++ b/x.go\n")); err == nil {
		t.Error("a diff without a hunk was applied")
	}
}

// TestEmulatorPatchesAreDiffs: the emulator's changes are kept as diffs a
// reviewer can read, and every .go file in the patch directory is one
// that upstream lacks (a diff of it would be the way to change it).
func TestEmulatorPatchesAreDiffs(t *testing.T) {
	root := filepath.Join("..", "..", "tools", emulatorPatchDir)
	diffs, err := filepath.Glob(filepath.Join(root, "*", "*.diff"))
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob(filepath.Join(root, "*", "*", "*.diff"))
	if diffs = append(diffs, more...); len(diffs) == 0 {
		t.Fatal("no diffs in the emulator patch")
	}
	for _, d := range diffs {
		whole := strings.TrimSuffix(d, ".diff")
		if _, err := os.Stat(whole); err == nil {
			t.Errorf("%s is both a diff and a whole file", whole)
		}
	}
}

// TestApplyPatch: a patch directory's diffs change the source's files of
// the same paths, and its other files join the source.
func TestApplyPatch(t *testing.T) {
	src, dir := t.TempDir(), t.TempDir()
	write := func(path, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(src, "server", "x.go"), "a\nb\n")
	write(filepath.Join(dir, "server", "x.go.diff"), "--- a/server/x.go\n+++ b/server/x.go\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n")
	write(filepath.Join(dir, "server", "new.go"), "new\n")
	if err := applyPatch(dir, src); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"server/x.go": "a\nc\n", "server/new.go": "new\n"} {
		if got, err := os.ReadFile(filepath.Join(src, path)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(src, "server", "x.go.diff")); err == nil {
		t.Error("the diff itself was copied into the source")
	}
}
