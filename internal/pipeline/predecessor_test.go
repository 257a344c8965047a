package pipeline

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLockHelper holds a worker lock in a process of its own until it is
// killed: the way a worker's lock outlives nothing but its process.
func TestLockHelper(t *testing.T) {
	dir := os.Getenv("PAYSTREAM_LOCK_HELPER_DIR")
	if dir == "" {
		t.Skip("run by TestAWorkerRestartedInPlaceFindsItsPredecessorDead")
	}
	if _, _, err := lockWorker(dir, "pod-1", "tq", os.Getenv("PAYSTREAM_LOCK_HELPER_QUEUE")); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Hour)
}

// TestAWorkerRestartedInPlaceFindsItsPredecessorDead: a worker killed
// with SIGKILL leaves its lock file, free; the next worker of its host
// names it dead. A worker alive (another process, or another worker in
// this process), one of another host and one of another task queue are
// not named, and a worker stopped gracefully leaves no file.
func TestAWorkerRestartedInPlaceFindsItsPredecessorDead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	start := func(queue string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
		cmd.Env = append(os.Environ(), "PAYSTREAM_LOCK_HELPER_DIR="+dir, "PAYSTREAM_LOCK_HELPER_QUEUE="+queue)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := out.Read(buf)
		if !strings.Contains(string(buf[:n]), "locked") {
			t.Fatalf("helper for %s: %q", queue, buf[:n])
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	killed := start("tq/pod-1-7-aaaa")
	start("tq/pod-1-8-bbbb") // lives on
	if err := killed.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = killed.Wait()
	// Another task queue's dead worker, and another host's.
	for path, queue := range map[string]string{
		filepath.Join(dir, workersDir, "pod-1", "x.lock"): "other/pod-1-9-cccc",
		filepath.Join(dir, workersDir, "pod-1", "z.lock"): "tq/eu/pod-1-9-gggg", // task queue "tq/eu"
		filepath.Join(dir, workersDir, "pod-2", "y.lock"): "tq/pod-2-9-dddd",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(queue), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inProcess, dead, err := lockWorker(dir, "pod-1", "tq", "tq/pod-1-10-eeee")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(dead) != "[tq/pod-1-7-aaaa]" {
		t.Fatalf("dead workers found: %v; want [tq/pod-1-7-aaaa] only", dead)
	}
	// The next one finds none dead: the first is claimed, the others live.
	next, dead, err := lockWorker(dir, "pod-1", "tq", "tq/pod-1-11-ffff")
	if err != nil || len(dead) != 0 {
		t.Fatalf("a second worker found dead %v (%v); want none", dead, err)
	}
	next.release()
	inProcess.release()
	files, _ := filepath.Glob(filepath.Join(dir, workersDir, "pod-1", "*.lock"))
	for i := range files {
		files[i] = filepath.Base(files[i])
	}
	slices.Sort(files)
	if fmt.Sprint(files) != "[pod-1-8-bbbb.lock x.lock z.lock]" {
		t.Errorf("lock files left: %v; want the live worker's and the other task queues'", files)
	}
}
