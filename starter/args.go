package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/paystream/paystream/internal/config"
)

// command is a command line read: the settings, the command's arguments
// and its positional arguments.
type command struct {
	cfg        *config.Config
	args       *commandArgs
	positional []string
}

// parseCommand reads the flags and positional arguments of command name,
// in any order (`starter query f.sql --json`, as kubectl and rpk take
// them; after "--" everything is positional), then fills what the command
// line left out from the environment. -h prints the command's help to out
// and returns flag.ErrHelp.
func parseCommand(name string, argv []string, out io.Writer) (command, error) {
	fs, cfg, args, ok := commandFlags(name)
	if !ok {
		return command{}, config.Usage(unknownCommand(name))
	}
	fs.SetOutput(io.Discard)
	var positional []string
	for in := argv; ; {
		if err := fs.Parse(in); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				writeCommandHelp(out, name)
				return command{}, err
			}
			return command{}, config.Usage(fmt.Errorf("%w (see 'starter %s -h')", err, name))
		}
		left := fs.Args()
		if len(left) == 0 {
			break
		}
		// flag stops at the first positional argument, or after "--",
		// past which everything is positional.
		if used := len(in) - len(left); used > 0 && in[used-1] == "--" {
			positional = append(positional, left...)
			break
		}
		positional, in = append(positional, left[0]), left[1:]
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var firstErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || firstErr != nil {
			return
		}
		v, from, ok := config.LookupEnv(f.Name, envName(name, f.Name, args.own[f.Name]))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			firstErr = config.Usage(fmt.Errorf("$%s: %w", from, err))
		}
	})
	if firstErr != nil {
		return command{}, firstErr
	}
	args.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { args.given[f.Name] = true })
	return command{cfg: cfg, args: args, positional: positional}, nil
}

// envName is the variable that sets flag of command: PAYSTREAM_<FLAG> for
// a setting every command shares, PAYSTREAM_<COMMAND>_<FLAG> for the
// command's own.
func envName(command, flagName string, own bool) string {
	if !own {
		return config.EnvName(flagName)
	}
	return config.EnvName(strings.ReplaceAll(command, " ", "-") + "-" + flagName)
}

// commandHelp prints the help of command name (`starter help status`,
// `starter help schema apply`).
func commandHelp(out io.Writer, name string) error {
	if name == "schema" {
		fmt.Fprintln(out, "usage: starter schema apply|print [flags]")
		for _, c := range commands {
			if strings.HasPrefix(c.name, "schema ") {
				fmt.Fprintf(out, "  %-14s %s\n", c.name, c.help)
			}
		}
		return nil
	}
	if _, _, _, ok := commandFlags(name); !ok {
		return config.Usage(unknownCommand(name))
	}
	writeCommandHelp(out, name)
	return nil
}

// writeCommandHelp prints what command name does, then its own flags and
// the shared settings, each with the variable that sets it.
func writeCommandHelp(out io.Writer, name string) {
	fs, _, args, _ := commandFlags(name)
	fmt.Fprintf(out, "usage: starter %s [flags]\n\n", name)
	for _, c := range commands {
		if c.name == name {
			fmt.Fprintf(out, "%s\n\n", c.help)
		}
	}
	for _, own := range []bool{true, false} {
		title := "flags of " + name
		if !own {
			title = "settings every command shares"
		}
		var b strings.Builder
		fs.VisitAll(func(f *flag.Flag) {
			if args.own[f.Name] != own {
				return
			}
			// The flag package's own layout, which scripts and tests read.
			kind, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(&b, "  -%s", f.Name)
			if kind != "" {
				fmt.Fprintf(&b, " %s", kind)
			}
			fmt.Fprintf(&b, "\n    \t%s [$%s]", usage, envName(name, f.Name, own))
			switch {
			case f.DefValue == "" || f.DefValue == "0" || f.DefValue == "0s" || f.DefValue == "false":
			case fmt.Sprintf("%T", f.Value) == "*flag.stringValue":
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			default:
				fmt.Fprintf(&b, " (default %v)", f.DefValue)
			}
			b.WriteString("\n")
		})
		if b.Len() > 0 {
			fmt.Fprintf(out, "%s:\n%s\n", title, b.String())
		}
	}
}

// unknownCommand is the error for a command that is none, suggesting the
// nearest one when a typo is likely.
func unknownCommand(name string) error {
	if s := suggest(name); s != "" {
		return fmt.Errorf("unknown command %q; did you mean %q? (starter help lists them)", name, s)
	}
	return fmt.Errorf("unknown command %q (starter help lists them)", name)
}

// suggest is the command name nearest to typed: one it begins, or one
// within two edits; "" when none is near.
func suggest(typed string) string {
	best, bestDist := "", 3
	for _, c := range commands {
		if len(typed) >= 3 && strings.HasPrefix(c.name, typed) {
			return c.name
		}
		if d := editDistance(typed, c.name); d < bestDist {
			best, bestDist = c.name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, counting a
// swap of two neighbours as one edit (the commonest typo).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
