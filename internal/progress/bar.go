// Package progress draws the progress bar of the starter's and devstack's
// long operations: done of total with a rate and an estimate. On a
// terminal it redraws one line; elsewhere (CI logs, pipes) it writes a
// line every few seconds, so logs stay readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Bar reports one operation's progress to w. A nil *Bar does nothing, so
// callers without a place to report pass nil.
type Bar struct {
	w     io.Writer
	what  string // "records ingested", "batches", "checks"
	total int64
	// underWay is work begun but not done: records in batches still
	// running, drawn apart from done so the bar moves before a batch ends.
	underWay int64
	terminal bool
	began    time.Time
	// start is the count when the bar began: the rate counts this run's
	// work only (a wait that starts half done is not instantly fast).
	start     int64
	started   bool
	lastDraw  time.Time
	lastDone  int64
	drawn     bool
	lastWidth int
}

// every is how often a bar writes a line when w is not a terminal.
const every = 2 * time.Second

// New returns a bar for total units of what on w; nil when w is nil.
func New(w io.Writer, what string, total int64) *Bar {
	if w == nil {
		return nil
	}
	f, ok := w.(*os.File)
	terminal := false
	if ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			terminal = true
		}
	}
	return &Bar{w: w, what: what, total: total, terminal: terminal, began: time.Now()}
}

// SetTotal changes the total (a log still growing while it is ingested).
func (b *Bar) SetTotal(total int64) {
	if b != nil {
		b.total = total
	}
}

// SetUnderWay reports n units begun but not yet done.
func (b *Bar) SetUnderWay(n int64) {
	if b != nil {
		b.underWay = n
	}
}

// Set reports that done units are done, drawing when it is time.
func (b *Bar) Set(done int64) {
	if b == nil {
		return
	}
	if !b.started {
		b.start, b.started = done, true
	}
	interval := every
	if b.terminal {
		interval = 200 * time.Millisecond
	}
	if time.Since(b.lastDraw) < interval && done < b.total {
		return
	}
	if done >= b.total {
		b.underWay = 0
	}
	b.draw(done)
}

// Done draws the final state and ends the line.
func (b *Bar) Done(done int64) {
	if b == nil {
		return
	}
	if !b.started {
		b.start, b.started = done, true
	}
	if !b.drawn || b.lastDone != done || b.underWay != 0 {
		b.underWay = 0
		b.draw(done)
	}
	if b.terminal {
		fmt.Fprintln(b.w)
	}
}

func (b *Bar) draw(done int64) {
	b.lastDraw, b.lastDone, b.drawn = time.Now(), done, true
	line := Line(done, b.underWay, b.total, b.start, time.Since(b.began), b.what)
	if !b.terminal {
		fmt.Fprintln(b.w, line)
		return
	}
	pad := ""
	if n := b.lastWidth - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	b.lastWidth = len(line)
	fmt.Fprintf(b.w, "\r%s%s", line, pad)
}

// Line renders one state of a bar, with '#' for done and '=' for under
// way:
//
//	[######====----------] 3,000/10,000 records ingested  30%, 2,000 in batches  1,234/s  6s left  2s elapsed
func Line(done, underWay, total, start int64, elapsed time.Duration, what string) string {
	const width = 20
	frac, begun := 0.0, 0.0
	if total > 0 {
		frac = min(max(float64(done)/float64(total), 0), 1)
		begun = min(max(float64(done+underWay)/float64(total), frac), 1)
	}
	filled, started := int(frac*width), int(begun*width)
	bar := "[" + strings.Repeat("#", filled) + strings.Repeat("=", started-filled) + strings.Repeat("-", width-started) + "]"
	s := fmt.Sprintf("%s %s/%s %s %3.0f%%", bar, Count(done), Count(total), what, 100*frac)
	if underWay > 0 {
		s += fmt.Sprintf(", %s in batches", Count(underWay))
	}
	if secs := elapsed.Seconds(); secs >= 0.5 {
		rate := float64(done-start) / secs
		if rate < 10 {
			s += fmt.Sprintf("  %.1f/s", rate)
		} else {
			s += fmt.Sprintf("  %s/s", Count(int64(rate+0.5)))
		}
		if rate > 0 && done < total {
			left := time.Duration(float64(total-done) / rate * float64(time.Second))
			s += fmt.Sprintf("  %s left", left.Round(time.Second))
		}
	}
	return s + fmt.Sprintf("  %s elapsed", elapsed.Round(time.Second))
}

// Count spells n with thousands separators: 1234567 → 1,234,567.
func Count(n int64) string {
	if n < 0 {
		return "-" + Count(-n)
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
