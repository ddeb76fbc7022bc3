package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws one live progress bar at a time on a terminal. When off
// (stdout is not a terminal, or in tests) its bars only count, and a
// plain line per step goes to the log writer instead, so redirected output
// holds no carriage-return noise.
type progress struct {
	on  bool
	out io.Writer // the terminal
	log io.Writer // plain step lines when not on
}

// isTerminal reports whether f is a character device (a terminal, not a
// file or pipe).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// bar is one step's progress. Its owner calls done exactly once; the
// drawing goroutine, if any, stops then.
type bar struct {
	name  string
	total int64
	unit  string // "B" counts bytes, "ms" elapsed time, anything else operations
	n     atomic.Int64
	start time.Time
	p     *progress
	stop  chan struct{}
	wg    sync.WaitGroup
}

// start begins a step of total units (bytes when unit is "B").
func (p *progress) start(name string, total int64, unit string) *bar {
	b := &bar{name: name, total: total, unit: unit, start: time.Now(), p: p, stop: make(chan struct{})}
	if !p.on {
		if p.log != nil {
			fmt.Fprintf(p.log, "bench: %s\n", name)
		}
		return b
	}
	b.wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			b.draw()
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
	})
	return b
}

// add counts n more units done. A nil bar ignores it.
func (b *bar) add(n int64) {
	if b != nil {
		b.n.Add(n)
	}
}

// done ends the step and clears its line.
func (b *bar) done() {
	if b == nil {
		return
	}
	close(b.stop)
	b.wg.Wait()
	if b.p.on {
		fmt.Fprintf(b.p.out, "\r%s\r", strings.Repeat(" ", 79))
	}
}

func (b *bar) draw() {
	const width = 30
	n := b.n.Load()
	frac := 0.0
	if b.total > 0 {
		frac = min(1, float64(n)/float64(b.total))
	}
	filled := int(frac * width)
	secs := time.Since(b.start).Seconds()
	rate := ""
	if secs > 0 {
		switch b.unit {
		case "ms":
			// A timed step: its count is elapsed milliseconds.
			rate = fmt.Sprintf("%.0f s", secs)
		case "B":
			rate = fmt.Sprintf("%.0f MB/s", float64(n)/1e6/secs)
		default:
			rate = fmt.Sprintf("%.0f %s/s", float64(n)/secs, b.unit)
		}
	}
	name := b.name
	if len(name) > 24 {
		name = name[:24]
	}
	fmt.Fprintf(b.p.out, "\r%-24s [%s%s] %3.0f%% %-14s", name, strings.Repeat("#", filled), strings.Repeat(" ", width-filled), frac*100, rate)
}
