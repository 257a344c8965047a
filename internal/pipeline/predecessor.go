package pipeline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Workers that share a state directory (a pod's emptyDir, which outlives
// a container killed and restarted in place) each hold a lock on a file
// of their own under it. The kernel releases a lock when its process
// dies, however it dies, so a worker starting that takes the lock of an
// earlier worker of its host knows that worker is dead: its pool need
// not wait for the dead worker's lease to time out (contract.GoneSignal).

// workersDir holds the lock files, one directory per host: only a lock of
// this host's kernel says anything about its holder.
const workersDir = "workers"

// workerLock is this worker's lock file, held while the process lives.
type workerLock struct {
	f    *os.File
	path string
}

// lockWorker takes this worker's lock under dir and returns the queues of
// task queue taskQueue's earlier workers on host whose lock was free.
// Files of other task queues are left for their own workers to find.
func lockWorker(dir, host, taskQueue, queue string) (*workerLock, []string, error) {
	hostDir := filepath.Join(dir, workersDir, safeFileName(host))
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("worker lock: %w", err)
	}
	own := filepath.Join(hostDir, safeFileName(strings.TrimPrefix(queue, taskQueue+"/"))+".lock")
	f, err := os.OpenFile(own, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("worker lock: %w", err)
	}
	l := &workerLock{f: f, path: own}
	if err := tryLock(f); err != nil {
		l.release()
		return nil, nil, fmt.Errorf("worker lock %s: %w", own, err)
	}
	if _, err := f.WriteString(queue); err != nil {
		l.release()
		return nil, nil, fmt.Errorf("worker lock %s: %w", own, err)
	}
	entries, err := os.ReadDir(hostDir)
	if err != nil {
		return l, nil, fmt.Errorf("worker locks: %w", err)
	}
	var dead []string
	for _, e := range entries {
		path := filepath.Join(hostDir, e.Name())
		if path == own || !strings.HasSuffix(e.Name(), ".lock") {
			continue
		}
		q, err := claimDead(path, taskQueue)
		if err != nil {
			return l, dead, err
		}
		if q != "" {
			dead = append(dead, q)
		}
	}
	return l, dead, nil
}

// claimDead returns the queue in the lock file at path when its lock is
// free and it names a worker of taskQueue, and removes the file; "" when
// its worker lives (or the file is another task queue's, or gone).
func claimDead(path, taskQueue string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil // another worker starting claimed it
	}
	if err != nil {
		return "", fmt.Errorf("worker lock %s: %w", path, err)
	}
	defer f.Close()
	if err := tryLock(f); err != nil {
		return "", nil // held: its worker lives
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("worker lock %s: %w", path, err)
	}
	q := string(b)
	// Only a worker queue of this task queue (not of "<taskQueue>/eu").
	if identity, ok := strings.CutPrefix(q, taskQueue+"/"); !ok || identity == "" || strings.Contains(identity, "/") {
		return "", nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("worker lock %s: %w", path, err)
	}
	return q, nil
}

// release ends the lock; a worker that stops gracefully leaves no file.
func (l *workerLock) release() {
	if l == nil {
		return
	}
	_ = os.Remove(l.path)
	_ = l.f.Close()
}

// safeFileName keeps a host name or worker identity to one path element.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r == 0 {
			return '_'
		}
		return r
	}, s)
}
