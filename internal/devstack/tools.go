package devstack

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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

	for _, cc := range []string{"clang", "clang++"} {
		if _, err := exec.LookPath(cc); err != nil {
			return "", errors.New("the BigQuery emulator's cgo part (ZetaSQL) compiles only with clang, which is not installed: " +
				"run `apt-get install -y clang` (Debian/Ubuntu) and try again")
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not on PATH; it is needed to build the pinned tool servers")
	}
	fmt.Fprintf(log, "devstack: building %s into %s from tools/go.mod\n", strings.Join(toolBinaries, ", "), binDir)
	fmt.Fprintln(log, "devstack: the first build compiles ZetaSQL with clang: about 8-12 minutes and up to 7 GB of RAM; later builds come from the Go build cache")
	began := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", binDir+string(filepath.Separator), "tool", "./cmd/...")
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
	var tail []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		tail = append(tail, sc.Text())
		if len(tail) > 20 {
			tail = tail[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("build tool servers (cd tools && CC=clang CXX=clang++ go build -o ../bin/ tool ./cmd/...): %w\n%s", err, strings.Join(tail, "\n"))
	}
	if err := os.WriteFile(filepath.Join(binDir, ".tools-stamp"), []byte(stamp), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "devstack: tool servers built in %s\n", time.Since(began).Round(time.Second))
	return binDir, nil
}

// toolsStamp identifies what bin/ must be built from: a hash of
// tools/go.mod, go.sum and the wrapper's source. A change rebuilds bin/.
func toolsStamp(toolsDir string) (string, error) {
	files := []string{"go.mod", "go.sum"}
	wrappers, err := filepath.Glob(filepath.Join(toolsDir, "cmd", "*", "*.go"))
	if err != nil {
		return "", err
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
