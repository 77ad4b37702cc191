package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress is a bar on stderr for long work (dump-namesrv of a million topics), drawn only when stderr is a
// terminal: a redirected or piped stderr gets nothing. It redraws in place ("\r") at most every redrawEvery, and
// ends its line when the work is done. Its methods are safe for concurrent use and do nothing on a nil progress.
type progress struct {
	w     io.Writer
	label string // what is counted, before the bar
	unit  string // after the count: "routes"
	total int
	width int // of the bar, in characters

	mu    sync.Mutex
	done  int
	drawn time.Time
	now   func() time.Time
}

// redrawEvery is how often the bar is redrawn at most.
const redrawEvery = 100 * time.Millisecond

// newProgress returns a bar over w for total units, or nil when w is not a terminal (isTerminal says).
func newProgress(w io.Writer, isTerminal func(io.Writer) bool, label, unit string, total int) *progress {
	if total <= 0 || !isTerminal(w) {
		return nil
	}
	return &progress{w: w, label: label, unit: unit, total: total, width: 30, now: time.Now}
}

// stderrIsTerminal reports whether w is a terminal: a character device, as a terminal is (a pipe or a file is not).
func stderrIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// add counts n more units done and redraws the bar when it is time.
func (p *progress) add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if now := p.now(); p.done >= p.total || now.Sub(p.drawn) >= redrawEvery {
		p.drawn = now
		fmt.Fprint(p.w, "\r"+renderProgress(p.label, p.unit, p.done, p.total, p.width))
	}
}

// finish draws the bar as it ends and ends its line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r"+renderProgress(p.label, p.unit, p.done, p.total, p.width)+"\n")
}

// renderProgress is one line of a bar: "LABEL [=========>          ] 51/100 UNIT  51%".
func renderProgress(label, unit string, done, total, width int) string {
	done = min(max(done, 0), total)
	filled := width * done / total
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	return fmt.Sprintf("%s [%s] %d/%d %s %3d%%", label, bar, done, total, unit, 100*done/total)
}
