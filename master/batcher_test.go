package master

import (
	"context"
	"testing"
	"time"
)

// TestBatcherStopsFutileLingering: with a peak of two proposers and only
// one ever coming, the batcher lingers maxFutile times, then proposes at
// once until the next peak window; it still lingers for several
// proposers, and a linger that gains a proposal keeps it lingering.
func TestBatcherStopsFutileLingering(t *testing.T) {
	b := newBatcher(nil, 64, 4, time.Millisecond, time.Second, nil)
	ctx := context.Background()
	lone := func() []*proposal { return []*proposal{{}} }
	b.peakAt = time.Now().Add(time.Hour) // keep this window
	b.peak.Store(2)
	for i := range maxFutile {
		if got := len(b.collect(ctx, lone())); got != 1 || b.futile != i+1 {
			t.Fatalf("linger %d: batch of %d, futile %d", i, got, b.futile)
		}
	}
	if got := len(b.collect(ctx, lone())); got != 1 || b.futile != maxFutile {
		t.Fatalf("after %d futile lingers: batch of %d, futile %d; want no linger", maxFutile, got, b.futile)
	}

	// Waiting for several proposers still lingers.
	b.peak.Store(3)
	b.linger = time.Minute // the linger ends when both have come
	arrive := func(n int) {
		go func() {
			time.Sleep(100 * time.Microsecond)
			for range n {
				b.in <- &proposal{}
			}
		}()
	}
	arrive(2)
	if got := len(b.collect(ctx, lone())); got != 3 || b.futile != 0 {
		t.Fatalf("expecting two more: batch of %d, futile %d; want 3 and 0", got, b.futile)
	}

	// A new window tries again, and a proposal arriving during the
	// linger resets the count.
	b.futile = maxFutile
	b.peakAt = time.Time{}
	b.outstanding.Store(2)
	arrive(1)
	if got := len(b.collect(ctx, lone())); got != 2 || b.futile != 0 {
		t.Fatalf("new window: batch of %d, futile %d; want 2 and 0", got, b.futile)
	}
}
