package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress draws a one-line transfer bar on a terminal while bytes flow
// through it, and nothing when the output is piped or redirected (scripts
// and logs must not fill with carriage returns).
type progress struct {
	out   io.Writer
	label string
	total int64 // -1 when unknown (stdin)
	start time.Time

	mu    sync.Mutex
	done  int64
	drawn time.Time
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newProgress returns a bar drawn on stderr, or nil when stderr is not a
// terminal; a nil *progress ignores every call.
func newProgress(stderr io.Writer, label string, total int64) *progress {
	if !isTerminal(stderr) {
		return nil
	}
	return &progress{out: stderr, label: label, total: total, start: time.Now()}
}

// add counts n more bytes and redraws at most ten times a second.
func (p *progress) add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.drawn) >= 100*time.Millisecond {
		p.drawn = now
		p.drawLocked(false)
	}
}

// finish draws the final state and ends the line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drawLocked(true)
}

func (p *progress) drawLocked(final bool) {
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el
	}
	line := fmt.Sprintf("%s  %s", p.label, human(uint64(p.done)))
	if p.total >= 0 {
		pct := 100.0
		if p.total > 0 {
			pct = 100 * float64(p.done) / float64(p.total)
		}
		const width = 30
		fill := min(width, int(pct*width/100))
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < fill {
				bar[i] = '#'
			}
		}
		line = fmt.Sprintf("%s [%s] %5.1f%% %s / %s", p.label, bar, pct, human(uint64(p.done)), human(uint64(p.total)))
	}
	line += fmt.Sprintf("  %s/s", human(uint64(rate)))
	end := "\r"
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.out, "\r%s\x1b[K%s", line, end)
}

// progressWriter counts what passes through it into a progress bar.
type progressWriter struct {
	w io.Writer
	p *progress
}

func (pw progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.add(n)
	return n, err
}
