package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// buildProgressEvery is how often a tool build says it is still going.
const buildProgressEvery = 30 * time.Second

// system is what ensureClang needs of the machine, so a test can stand in.
type system struct {
	lookPath func(string) (string, error)
	euid     int
	// run runs a command with its output to log.
	run func(ctx context.Context, log io.Writer, env []string, name string, args ...string) error
}

func hostSystem() system {
	return system{lookPath: exec.LookPath, euid: os.Geteuid(), run: func(ctx context.Context, log io.Writer, env []string, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = log, log
		return cmd.Run()
	}}
}

// ensureClang makes sure clang and clang++ are on PATH: the BigQuery
// emulator's cgo part (ZetaSQL) compiles only with clang. On Debian or
// Ubuntu as root it installs them, as .ci/run does; otherwise it says
// exactly what to run.
func ensureClang(ctx context.Context, log io.Writer, sys system) error {
	missing := func() []string {
		var m []string
		for _, cc := range []string{"clang", "clang++"} {
			if _, err := sys.lookPath(cc); err != nil {
				m = append(m, cc)
			}
		}
		return m
	}
	if len(missing()) == 0 {
		return nil
	}
	const why = "the BigQuery emulator's cgo part (ZetaSQL) compiles only with clang, which is not installed"
	if _, err := sys.lookPath("apt-get"); err != nil {
		return errors.New(why + ": install clang with your system's package manager and try again")
	}
	if sys.euid != 0 {
		return errors.New(why + ": run `sudo apt-get install -y clang` and try again")
	}
	fmt.Fprintln(log, "devstack: clang is missing; installing it with apt-get (a minute or two)")
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "clang"}} {
		if err := sys.run(ctx, log, env, "apt-get", args...); err != nil {
			return fmt.Errorf("%s, and `apt-get %s` failed (%v): install it by hand and try again", why, strings.Join(args, " "), err)
		}
	}
	if m := missing(); len(m) > 0 {
		return fmt.Errorf("%s: apt-get installed clang but %s is still not on PATH", why, strings.Join(m, " and "))
	}
	return nil
}
