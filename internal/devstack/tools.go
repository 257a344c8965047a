package devstack

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Tool binaries built from tools/go.mod into bin/: the two pinned servers,
// and EmulatorBinary, the emulator wrapped so that it keeps its datasets
// across restarts (see tools/cmd/paystream-bigquery-emulator).
const (
	TemporalBinary         = "temporal"
	UpstreamEmulatorBinary = "bigquery-emulator"
	EmulatorBinary         = "paystream-bigquery-emulator"
)

var toolBinaries = []string{TemporalBinary, UpstreamEmulatorBinary, EmulatorBinary}

const modulePath = "github.com/paystream/paystream"

// FindRoot returns the paystream checkout that holds dir (or a parent of
// it): the folder whose go.mod declares the paystream module.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module "+modulePath+"\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no paystream checkout at or above %s: run devstack from the repository", dir)
		}
	}
}

// EnsureTools builds the Temporal CLI and the BigQuery emulator into
// root/bin unless they are there and were built from the current
// tools/go.mod and go.sum. Concurrent callers (parallel test packages)
// wait for one build instead of running two 7 GB compiles at once.
func EnsureTools(ctx context.Context, root string, log io.Writer) (binDir string, err error) {
	binDir = filepath.Join(root, "bin")
	toolsDir := filepath.Join(root, "tools")
	stamp, err := toolsStamp(toolsDir)
	if err != nil {
		return "", err
	}
	if toolsCurrent(binDir, stamp) {
		return binDir, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(binDir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if toolsCurrent(binDir, stamp) { // built while we waited
		return binDir, nil
	}

	if err := ensureClang(ctx, log, hostSystem()); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not on PATH; it is needed to build the pinned tool servers")
	}
	fmt.Fprintf(log, "devstack: building %s into %s from tools/go.mod\n", strings.Join(toolBinaries, ", "), binDir)
	fmt.Fprintln(log, "devstack: the first build compiles ZetaSQL with clang: 10 to 25 minutes on 2 cores and up to 7 GB of RAM; later builds come from the Go build cache")
	began := time.Now()
	modfile, err := patchedToolsModfile(ctx, goBin, toolsDir, binDir)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-modfile", modfile, "-o", binDir+string(filepath.Separator), "tool", "./cmd/...")
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(), "CC=clang", "CXX=clang++", "CGO_ENABLED=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start tool build: %w", err)
	}
	// The first build is long and silent: say it is alive.
	stopTicking := make(chan struct{})
	defer close(stopTicking)
	go func() {
		t := time.NewTicker(buildProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stopTicking:
				return
			case <-t.C:
				fmt.Fprintf(log, "devstack: still building the tool servers, %s so far\n", time.Since(began).Round(time.Second))
			}
		}
	}()
	var tail []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		tail = append(tail, sc.Text())
		if len(tail) > 20 {
			tail = tail[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("build tool servers (cd tools && CC=clang CXX=clang++ go build -modfile %s -o ../bin/ tool ./cmd/...): %w\n%s", modfile, err, strings.Join(tail, "\n"))
	}
	if err := os.WriteFile(filepath.Join(binDir, ".tools-stamp"), []byte(stamp), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "devstack: tool servers built in %s\n", time.Since(began).Round(time.Second))
	return binDir, nil
}

// emulatorPatchDir holds diffs of the pinned BigQuery emulator's source
// (path.go.diff changes path.go) and files that join it at the same paths
// (see tools/README.md).
const emulatorPatchDir = "_bigquery-emulator-patch"

// patchedToolsModfile copies the pinned emulator's source to
// bin/.src/bigquery-emulator with tools/_bigquery-emulator-patch applied
// to it, and returns a copy of tools/go.mod (and go.sum) that builds from
// that copy: the modfile to build with. (go build -overlay would be
// simpler but refuses files in the module cache.)
func patchedToolsModfile(ctx context.Context, goBin, toolsDir, binDir string) (string, error) {
	const module = "github.com/goccy/bigquery-emulator"
	dl := exec.CommandContext(ctx, goBin, "mod", "download", "-json", module)
	dl.Dir = toolsDir
	out, err := dl.Output()
	if err != nil {
		return "", fmt.Errorf("download %s to patch it: %w", module, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("download %s: no source directory in %q", module, out)
	}
	src := filepath.Join(binDir, ".src", "bigquery-emulator")
	if err := os.RemoveAll(src); err != nil {
		return "", err
	}
	if err := copyTree(mod.Dir, src, nil); err != nil {
		return "", fmt.Errorf("copy %s: %w", module, err)
	}
	if err := applyPatch(filepath.Join(toolsDir, emulatorPatchDir), src); err != nil {
		return "", fmt.Errorf("patch %s: %w", module, err)
	}
	gomod, err := os.ReadFile(filepath.Join(toolsDir, "go.mod"))
	if err != nil {
		return "", err
	}
	gomod = fmt.Appendf(gomod, "\nreplace %s => %s\n", module, src)
	gosum, err := os.ReadFile(filepath.Join(toolsDir, "go.sum"))
	if err != nil {
		return "", err
	}
	modfile := filepath.Join(binDir, ".tools.mod")
	if err := os.WriteFile(modfile, gomod, 0o644); err != nil {
		return "", err
	}
	return modfile, os.WriteFile(filepath.Join(binDir, ".tools.sum"), gosum, 0o644)
}

// applyPatch applies each diff under dir to the file of the same path,
// less ".diff", under src, and copies the other files of dir there.
func applyPatch(dir, src string) error {
	return copyTree(dir, src, func(target string, b []byte) (string, []byte, error) {
		name, ok := strings.CutSuffix(target, ".diff")
		if !ok {
			return target, b, nil
		}
		orig, err := os.ReadFile(name)
		if err != nil {
			return "", nil, err
		}
		if b, err = applyDiff(orig, b); err != nil {
			return "", nil, fmt.Errorf("%s: %w", filepath.Base(target), err)
		}
		return name, b, nil
	})
}

// copyTree copies the regular files under from to the same paths under
// to, writable (the module cache's are not); edit, when set, may change
// a file's target path and content on the way.
func copyTree(from, to string, edit func(target string, b []byte) (string, []byte, error)) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		target := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if edit != nil {
			if target, b, err = edit(target, b); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// emulatorPatches lists the patch files, relative to the patch directory.
func emulatorPatches(toolsDir string) ([]string, error) {
	root := filepath.Join(toolsDir, emulatorPatchDir)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".diff") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		files = append(files, rel)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list the emulator's patches: %w", err)
	}
	return files, nil
}

// toolsStamp identifies what bin/ must be built from: a hash of
// tools/go.mod, go.sum, the wrapper's source and the emulator's patches. A
// change rebuilds bin/.
func toolsStamp(toolsDir string) (string, error) {
	files := []string{"go.mod", "go.sum"}
	wrappers, err := filepath.Glob(filepath.Join(toolsDir, "cmd", "*", "*.go"))
	if err != nil {
		return "", err
	}
	patches, err := emulatorPatches(toolsDir)
	if err != nil {
		return "", err
	}
	for _, p := range patches {
		wrappers = append(wrappers, filepath.Join(toolsDir, emulatorPatchDir, p))
	}
	for _, w := range wrappers {
		rel, _ := filepath.Rel(toolsDir, w)
		files = append(files, rel)
	}
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(toolsDir, f))
		if err != nil {
			return "", fmt.Errorf("read pinned tool sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func toolsCurrent(binDir, stamp string) bool {
	for _, name := range toolBinaries {
		if fi, err := os.Stat(filepath.Join(binDir, name)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	b, err := os.ReadFile(filepath.Join(binDir, ".tools-stamp"))
	return err == nil && string(b) == stamp
}
