package config

import (
	"errors"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Exit codes every paystream binary uses.
const (
	ExitOK      = 0 // done, or help or the version printed
	ExitFailure = 1 // the work failed (a server unreachable, a mismatch found)
	ExitUsage   = 2 // the command line is wrong
)

// UsageError is a mistake in the command line: ExitUsage.
type UsageError struct{ Err error }

// Usage marks err as a mistake in the command line.
func Usage(err error) error { return UsageError{Err: err} }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// ExitCode is the exit code for what a binary's run returned.
func ExitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, new(UsageError)):
		return ExitUsage
	}
	return ExitFailure
}

// version and commit are stamped by an image build, which has no Git
// metadata to read (the Dockerfile's -ldflags -X); a build from a checkout
// leaves them empty and Go's build info names it.
var version, commit string

// Version names the build: the module version ("(devel)" for a build from
// a checkout), the commit it was built from, "+dirty" when the tree had
// changes, and the Go version.
func Version() string {
	v, rev, dirty := "(devel)", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value[:min(12, len(s.Value))]
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "+dirty"
			}
		}
	}
	if version != "" {
		v = version
	}
	if commit != "" {
		rev, dirty = commit[:min(12, len(commit))], ""
	}
	return fmt.Sprintf("%s %s%s %s", v, rev, dirty, runtime.Version())
}
