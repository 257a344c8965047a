//go:build !linux

package e2e

import "os/exec"

// dieWithParent does nothing where the kernel cannot kill a child with its
// parent; the test's cleanup still kills the workers it started.
func dieWithParent(*exec.Cmd) {}
