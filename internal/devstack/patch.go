package devstack

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// applyDiff applies a unified diff of one file, as `diff -u` writes it,
// to orig. Every hunk must match where it says, context and removed lines
// alike: the emulator is pinned, so a diff that does not fit exactly
// means the pin moved, and building from a guess would hide that.
func applyDiff(orig, diff []byte) ([]byte, error) {
	lines := strings.Split(string(orig), "\n")
	trailing := len(lines) > 0 && lines[len(lines)-1] == ""
	if trailing {
		lines = lines[:len(lines)-1]
	}
	var out []string
	pos, hunk := 0, 0 // pos: the next line of orig, from 0
	var oldLeft, newLeft int
	sc := bufio.NewScanner(bytes.NewReader(diff))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "@@"):
			if oldLeft != 0 || newLeft != 0 {
				return nil, fmt.Errorf("diff line %d: hunk %d ends %d old and %d new lines short", n, hunk, oldLeft, newLeft)
			}
			hunk++
			f := strings.Fields(l)
			if len(f) < 4 || f[3] != "@@" || !strings.HasPrefix(f[1], "-") || !strings.HasPrefix(f[2], "+") {
				return nil, fmt.Errorf("diff line %d: bad hunk header %q", n, l)
			}
			oldStart, count, err := hunkRange(f[1])
			if err == nil {
				oldLeft = count
				_, newLeft, err = hunkRange(f[2])
			}
			if err != nil {
				return nil, fmt.Errorf("diff line %d: bad hunk header %q: %w", n, l, err)
			}
			start := oldStart - 1
			if oldLeft == 0 {
				start = oldStart // an insertion after line oldStart
			}
			if start < pos || start > len(lines) {
				return nil, fmt.Errorf("diff line %d: hunk %d starts at line %d, outside the file's %d lines or before the last hunk's end", n, hunk, oldStart, len(lines))
			}
			out = append(out, lines[pos:start]...)
			pos = start
		case hunk == 0:
			continue // the header: --- and +++
		case strings.HasPrefix(l, "\\"):
			return nil, fmt.Errorf("diff line %d: %q is not supported: the files end with a newline", n, l)
		case strings.HasPrefix(l, "+"):
			out = append(out, l[1:])
			newLeft--
		case l == "" || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "-"):
			text := ""
			if l != "" {
				text = l[1:]
			}
			if pos >= len(lines) || lines[pos] != text {
				got := "the end of the file"
				if pos < len(lines) {
					got = fmt.Sprintf("%q", lines[pos])
				}
				return nil, fmt.Errorf("diff line %d: hunk %d expects line %d to be %q, and it is %s", n, hunk, pos+1, text, got)
			}
			pos++
			oldLeft--
			if !strings.HasPrefix(l, "-") {
				out = append(out, text)
				newLeft--
			}
		default:
			return nil, fmt.Errorf("diff line %d: %q is not a line of a unified diff", n, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if hunk == 0 {
		return nil, fmt.Errorf("the diff has no hunk")
	}
	if oldLeft != 0 || newLeft != 0 {
		return nil, fmt.Errorf("the last hunk ends %d old and %d new lines short", oldLeft, newLeft)
	}
	out = append(out, lines[pos:]...)
	s := strings.Join(out, "\n")
	if trailing {
		s += "\n"
	}
	return []byte(s), nil
}

// hunkRange parses a hunk header's "start,count" ("start" alone: count 1).
func hunkRange(r string) (start, count int, err error) {
	r = r[1:] // the - or +
	count = 1
	if s, c, ok := strings.Cut(r, ","); ok {
		if _, err := fmt.Sscan(c, &count); err != nil {
			return 0, 0, err
		}
		r = s
	}
	_, err = fmt.Sscan(r, &start)
	return start, count, err
}
