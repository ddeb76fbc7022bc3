package master

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/proto/fsmpb"
)

// Group commit.
//
// Every mutation is a proposal: one fsmpb.Command. The batcher packs the
// proposals that arrive together into one Raft entry (fsm applies the
// commands of an entry in order, each with its own Result), so that the
// costs paid per entry — the log's fsync on the leader and on a quorum of
// followers, a replication round trip, a Pebble batch commit — are shared.
//
// At most maxInFlight entries are proposed and not yet applied; while all
// slots are busy, arriving proposals queue and become the next entry, up
// to maxBatch commands. When a slot frees, the batcher may linger (up to
// linger, 500 µs by default) for the proposers it expects back: the clients just answered by the previous entry typically
// send their next request within a few hundred microseconds, and without
// the wait they would miss this entry and wait a whole commit for the
// next, splitting the clients into alternating half-size batches. The
// expected number is the recent peak of outstanding proposals minus those
// still in flight, so a lone sequential client never waits: its peak is 1
// and its proposal alone completes the batch.

// errShuttingDown answers proposals and reads cut short by shutdown.
var errShuttingDown = errors.New("master: shutting down")

// proposal is one command waiting for its result.
type proposal struct {
	cmd *fsmpb.Command
	// done receives exactly one outcome; buffered so the batcher never
	// blocks on a proposer that gave up.
	done chan proposalResult
}

type proposalResult struct {
	res fsm.Result
	// err is a Raft-level failure (not leader, leadership lost, shut
	// down): the command may or may not have been applied.
	err error
}

type batcher struct {
	raft        *raft.Raft
	in          chan *proposal
	maxBatch    int
	maxInFlight int
	linger      time.Duration
	timeout     time.Duration
	// observe is told each entry's size and commit latency.
	observe func(commands int, latency time.Duration)
	// done is closed when run returns.
	done chan struct{}
	// waiters counts the goroutines waiting for proposed entries; idle
	// is closed while there are none.
	waiters struct {
		sync.Mutex
		n    int
		idle chan struct{}
	}

	// outstanding counts proposals enqueued and not yet answered;
	// inFlight the commands of proposed entries not yet answered.
	outstanding atomic.Int64
	inFlight    atomic.Int64
	// peak is the recent peak of outstanding, raised by propose and reset
	// by run every peakWindow (peakAt, owned by run).
	peak   atomic.Int64
	peakAt time.Time
	// futile counts the lingers in a row that waited out linger and
	// gained nothing (owned by run). See collect.
	futile int
}

// maxFutile is how many fruitless lingers in a row stop lingering until
// the next peak window.
const maxFutile = 2

// peakWindow is how long a peak of outstanding proposals is remembered.
const peakWindow = 100 * time.Millisecond

func newBatcher(r *raft.Raft, maxBatch, maxInFlight int, linger, timeout time.Duration, observe func(int, time.Duration)) *batcher {
	b := &batcher{
		raft:        r,
		in:          make(chan *proposal, 4*maxBatch),
		maxBatch:    maxBatch,
		maxInFlight: maxInFlight,
		linger:      linger,
		timeout:     timeout,
		observe:     observe,
	}
	b.done = make(chan struct{})
	b.waiters.idle = make(chan struct{})
	close(b.waiters.idle)
	return b
}

func (b *batcher) waiterStarted() {
	b.waiters.Lock()
	defer b.waiters.Unlock()
	if b.waiters.n == 0 {
		b.waiters.idle = make(chan struct{})
	}
	b.waiters.n++
}

func (b *batcher) waiterDone() {
	b.waiters.Lock()
	defer b.waiters.Unlock()
	b.waiters.n--
	if b.waiters.n == 0 {
		close(b.waiters.idle)
	}
}

// waitIdle waits up to timeout for every proposed entry's outcome to be
// handed out, and reports whether that happened.
//
// It must be called while Raft still runs: hashicorp/raft never answers
// the futures of entries that were committed but still queued for the
// state machine when it shuts down, so a waiter for one of those would
// wait forever. Run therefore stops proposing, lets the entries in flight
// finish (commit and apply, or fail when leadership is lost), and only
// then shuts Raft down.
func (b *batcher) waitIdle(timeout time.Duration) bool {
	b.waiters.Lock()
	idle := b.waiters.idle
	b.waiters.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// propose submits cmd and waits for its outcome, for ctx, or for stop.
func (b *batcher) propose(ctx context.Context, stop <-chan struct{}, cmd *fsmpb.Command) (fsm.Result, error) {
	p := &proposal{cmd: cmd, done: make(chan proposalResult, 1)}
	n := b.outstanding.Add(1)
	defer b.outstanding.Add(-1)
	for peak := b.peak.Load(); n > peak && !b.peak.CompareAndSwap(peak, n); peak = b.peak.Load() {
	}
	select {
	case b.in <- p:
	case <-ctx.Done():
		return fsm.Result{}, ctx.Err()
	case <-stop:
		return fsm.Result{}, errShuttingDown
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		return fsm.Result{}, ctx.Err()
	case <-stop:
		return fsm.Result{}, errShuttingDown
	}
}

// run forms and proposes entries until ctx ends; then it fails what is
// queued. The goroutines waiting for proposed entries finish when Raft
// answers them; wait for them with waitIdle before shutting Raft down.
func (b *batcher) run(ctx context.Context) {
	defer close(b.done)
	slots := make(chan struct{}, b.maxInFlight)
	for {
		var batch []*proposal
		select {
		case p := <-b.in:
			batch = append(batch, p)
		case <-ctx.Done():
			b.failQueued()
			return
		}
		// Wait for a slot, collecting meanwhile.
		got := false
		for !got {
			if len(batch) == b.maxBatch {
				select {
				case slots <- struct{}{}:
					got = true
				case <-ctx.Done():
					fail(batch, errShuttingDown)
					b.failQueued()
					return
				}
				continue
			}
			select {
			case slots <- struct{}{}:
				got = true
			case p := <-b.in:
				batch = append(batch, p)
			case <-ctx.Done():
				fail(batch, errShuttingDown)
				b.failQueued()
				return
			}
		}
		batch = b.collect(ctx, batch)
		if ctx.Err() != nil {
			<-slots
			fail(batch, errShuttingDown)
			b.failQueued()
			return
		}
		b.submit(batch, slots)
	}
}

// collect adds to batch what is queued and, if more proposers are
// expected back, waits up to linger for them. It runs once a slot is free.
//
// The peak can mislead: a lone sequential client (tar on a mount) plus
// an occasional background proposal (a batch of handle releases) makes a
// peak of two, and every one of the client's proposals would wait the
// whole linger for a second proposer that never comes, doubling its
// latency. So lingers for a single more proposer that gain nothing are
// counted, and after maxFutile in a row the batcher stops lingering for
// a single proposer until the next peak window, when it tries again.
// Lingers for several (many clients answered by the same entry) go on:
// those gain more often than not.
func (b *batcher) collect(ctx context.Context, batch []*proposal) []*proposal {
	start := time.Now()
	if now := time.Now(); now.Sub(b.peakAt) > peakWindow {
		b.peak.Store(b.outstanding.Load())
		b.peakAt = now
		b.futile = 0
	}
	want := min(int(b.peak.Load()-b.inFlight.Load()), b.maxBatch)
	var timer *time.Timer
	// waited: lingered at all; single: for a single more proposer;
	// gained: a proposer came while lingering.
	waited, single, gained := false, false, false
	defer func() {
		if waited && single && !gained {
			b.futile++
		}
	}()
	for len(batch) < b.maxBatch {
		select {
		case p := <-b.in:
			batch = append(batch, p)
			continue
		default:
		}
		single = want-len(batch) == 1
		if len(batch) >= want || b.linger <= 0 || (single && b.futile >= maxFutile) {
			break
		}
		wait := b.linger - time.Since(start)
		if wait <= 0 {
			break
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		waited = true
		select {
		case p := <-b.in:
			batch = append(batch, p)
			gained = true
			b.futile = 0
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		break
	}
	return batch
}

// submit proposes batch as one entry and starts a goroutine that hands
// out the results and frees the slot.
func (b *batcher) submit(batch []*proposal, slots chan struct{}) {
	cmds := make([]*fsmpb.Command, len(batch))
	for i, p := range batch {
		cmds[i] = p.cmd
	}
	data, err := fsm.EncodeEntry(cmds...)
	if err != nil {
		<-slots
		fail(batch, fmt.Errorf("master: encode entry: %w", err))
		return
	}
	start := time.Now()
	b.waiterStarted()
	f := b.raft.Apply(data, b.timeout)
	b.inFlight.Add(int64(len(batch)))
	go func() {
		defer b.waiterDone()
		defer func() {
			b.inFlight.Add(-int64(len(batch)))
			<-slots
		}()
		if err := f.Error(); err != nil {
			fail(batch, err)
			return
		}
		b.observe(len(batch), time.Since(start))
		switch resp := f.Response().(type) {
		case []fsm.Result:
			if len(resp) != len(batch) {
				fail(batch, fmt.Errorf("master: %d results for %d commands", len(resp), len(batch)))
				return
			}
			for i, p := range batch {
				p.done <- proposalResult{res: resp[i]}
			}
		case error:
			fail(batch, resp)
		default:
			fail(batch, fmt.Errorf("master: unexpected apply response %T", resp))
		}
	}()
}

func (b *batcher) failQueued() {
	for {
		select {
		case p := <-b.in:
			p.done <- proposalResult{err: errShuttingDown}
		default:
			return
		}
	}
}

func fail(batch []*proposal, err error) {
	for _, p := range batch {
		p.done <- proposalResult{err: err}
	}
}
