package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// latencies collects single operations' durations; it is safe for
// concurrent use by a workload's workers.
type latencies struct {
	mu struct {
		sync.Mutex
		d []time.Duration
	}
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.mu.d = append(l.mu.d, d)
	l.mu.Unlock()
}

// summary returns the percentiles (nearest rank) of what was added, or nil
// when nothing was.
func (l *latencies) summary() *Latency {
	l.mu.Lock()
	d := slices.Clone(l.mu.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return nil
	}
	slices.Sort(d)
	return &Latency{P50: ms(percentile(d, 50)), P95: ms(percentile(d, 95)), P99: ms(percentile(d, 99)), Max: ms(d[len(d)-1])}
}

// percentile returns the p-th percentile of sorted d by the nearest-rank
// method: the smallest value with at least p% of values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mbps is bytes per second in MB/s (10^6 bytes, as disk and network
// figures are usually quoted).
func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / 1e6 / d.Seconds()
}

// span is the wall time of a phase and the CPU time this process used
// meanwhile (user and system, every goroutine). With --local the whole
// cluster runs in this process, so cpu/wall tells how many cores the
// figure cost and whether it was CPU-bound.
//
// disk is the bytes the process sent to storage meanwhile (-1 where the
// kernel does not say), which with --local is what the cluster wrote.
type span struct {
	wall, cpu time.Duration
	disk      int64
}

// spanStart marks the beginning of a span.
type spanStart struct {
	wall time.Time
	cpu  time.Duration
	disk int64
}

func startSpan() spanStart {
	return spanStart{wall: time.Now(), cpu: processCPU(), disk: processDiskWritten()}
}

func (s spanStart) end() span {
	disk := int64(-1)
	if now := processDiskWritten(); now >= 0 && s.disk >= 0 {
		disk = now - s.disk
	}
	return span{wall: time.Since(s.wall), cpu: processCPU() - s.cpu, disk: disk}
}

func (s span) plus(o span) span {
	disk := int64(-1)
	if s.disk >= 0 && o.disk >= 0 {
		disk = s.disk + o.disk
	}
	return span{wall: s.wall + o.wall, cpu: s.cpu + o.cpu, disk: disk}
}

// processDiskWritten returns the bytes the process has caused to be
// written to storage (write_bytes of /proc/self/io: counted when pages
// are dirtied, so deferred writeback is included), or -1.
func processDiskWritten() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// processCPU returns the CPU time the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// opsResult builds the result of n timed operations done in sp.
func opsResult(workload, op string, n int64, sp span, lat *latencies, baseline string) Result {
	wall := sp.wall
	r := Result{Workload: workload, Op: op, Status: statusOK, Unit: "ops/s", Count: n, Seconds: wall.Seconds(), CPUSeconds: sp.cpu.Seconds(), Baseline: baseline}
	if wall > 0 {
		r.Value = float64(n) / wall.Seconds()
	}
	if lat != nil {
		r.Latency = lat.summary()
	}
	return r
}

// bytesResult builds the result of moving bytes in sp.
func bytesResult(workload, op string, bytes int64, sp span, baseline string) Result {
	return Result{Workload: workload, Op: op, Status: statusOK, Unit: "MB/s", Value: mbps(bytes, sp.wall), Bytes: bytes,
		Seconds: sp.wall.Seconds(), CPUSeconds: sp.cpu.Seconds(), Baseline: baseline}
}

// parallel runs n operations over workers goroutines: op(ctx, worker, i)
// for i in [0, n), each timed into lat (when not nil) and counted by
// bar. It stops at the first error and returns it with the span.
func parallel(ctx context.Context, workers, n int, lat *latencies, bar *bar, op func(ctx context.Context, worker, i int) error) (span, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	next := make(chan int)
	start := startSpan()
	for w := range workers {
		wg.Go(func() {
			for i := range next {
				t := time.Now()
				if err := op(ctx, w, i); err != nil {
					cancel(err)
					return
				}
				if lat != nil {
					lat.add(time.Since(t))
				}
				bar.add(1)
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	sp := start.end()
	// Cause is nil unless a worker failed or the caller's ctx ended.
	return sp, context.Cause(ctx)
}
