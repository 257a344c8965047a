package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills cmd when the test binary dies: a test binary killed
// by its timeout must not leave workers behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
