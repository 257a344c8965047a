package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// envNames lists the PAYSTREAM_* variables a command reads, from its own
// -h output: every flag's variable, and the secrets it names.
func envNames(t *testing.T, binary string, args ...string) map[string]bool {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "paystream-deploy-test")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir+"/", "../worker", "../starter", "../simulator").CombinedOutput()
		if err != nil {
			buildErr = &buildError{string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	out, _ := exec.Command(filepath.Join(binDir, binary), append(args, "-h")...).CombinedOutput()
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$(PAYSTREAM_[A-Z0-9_]+)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) < 3 {
		t.Fatalf("%s %s -h names %d variables:\n%s", binary, strings.Join(args, " "), len(names), out)
	}
	return names
}

type buildError struct{ out string }

func (e *buildError) Error() string { return "go build: " + e.out }

// commandOf tells which binary and subcommand a container runs, from its
// command (entrypoint) and args, the worker being the image's default.
func commandOf(command, args []string) (binary string, sub []string) {
	binary = "worker"
	if len(command) > 0 {
		binary = filepath.Base(command[0])
		args = append(command[1:], args...)
	}
	if binary == "starter" && len(args) > 0 {
		sub = []string{args[0]}
		if args[0] == "schema" && len(args) > 1 {
			sub = append(sub, args[1])
		}
	}
	return binary, sub
}
