package client

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// DefaultReleaseDelay is how long a closed handle may wait to be released
// at the master together with others (ClientConfig.ReleaseDelay).
const DefaultReleaseDelay = 20 * time.Millisecond

// maxReleaseBatch is the most handles one Release request carries (the
// master accepts up to 1024).
const maxReleaseBatch = 512

// releaseRetryMin and releaseRetryMax bound the pause before sending
// again handles whose release failed because no master answered.
const (
	releaseRetryMin = time.Second
	releaseRetryMax = 30 * time.Second
)

// maxReleaseQueue bounds the handles waiting to be released while the
// masters are unreachable; past it the oldest are dropped (their
// records then stay until the client's lease lapses).
const maxReleaseQueue = 1 << 20

// maxAbandoned bounds the unanswered opens waiting to be given up; past
// it the oldest are left to the lease.
const maxAbandoned = 1 << 16

// releaseAtCloseTimeout bounds what Client.Close spends sending the last
// releases: with the masters gone it would otherwise wait out the retry
// timeout, and the lease releases the handles anyway.
const releaseAtCloseTimeout = 5 * time.Second

// releaser tells the master which handles the Client's files closed.
//
// A release is a Raft commit, and nobody waits for it: a close returns
// once the bytes are committed. Sent one by one, releases would still
// take a log fsync each, in line with the commits that programs do wait
// for; a program writing many small files (tar, git checkout, a build)
// spends a third of its time behind them. So closed handles wait up to
// the delay and go together, one request and one commit per batch. The
// only effect of the wait is that a file unlinked while open is removed
// (and its space freed) that much later.
//
// A batch that no master took (an outage, an election that outlasted the
// connection's retry timeout) stays queued and is sent again, after a
// pause that grows to releaseRetryMax, for as long as the Client lives:
// a live client keeps its lease, so the master would otherwise hold the
// handles, and the bytes of files unlinked while open, until the process
// ends. Releasing a handle twice, or one a lapsed lease already took, is
// harmless, and handle numbers are never reused.
//
// An open (or a create that opens) that no master answered may have been
// applied, its reply lost: the master then holds a handle the client never
// learnt. Its request ID goes with the next batch as abandoned: the master
// releases the handle it made, or, if it was not applied, records it as
// given up, so that a copy still on its way is refused. (Sending it again
// to learn the handle would create the file after the caller was told the
// create failed.)
type releaser struct {
	conn   *MasterConn
	header func() *masterpb.RequestHeader
	delay  time.Duration
	log    *slog.Logger

	mu struct {
		sync.Mutex
		queue []*masterpb.HandleRef
		// abandoned are request IDs of opens no master answered.
		abandoned [][]byte
	}
	kick     chan struct{} // a handle was queued
	stop     chan struct{} // closed by close: send what is queued and return
	stopOnce sync.Once
	// cancel ends the context of the sends before close, so that a send
	// stuck on unreachable masters does not hold close up.
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

func newReleaser(conn *MasterConn, header func() *masterpb.RequestHeader, delay time.Duration, log *slog.Logger) *releaser {
	r := &releaser{conn: conn, header: header, delay: delay, log: log,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.run(ctx)
	return r
}

// release queues handle of ino; it never blocks on the master.
func (r *releaser) release(ino, handle uint64) {
	r.mu.Lock()
	r.mu.queue = append(r.mu.queue, &masterpb.HandleRef{Inode: ino, Handle: handle})
	if over := len(r.mu.queue) - maxReleaseQueue; over > 0 {
		// A sixteenth at a time, not one per call.
		over += maxReleaseQueue / 16
		r.mu.queue = slices.Delete(r.mu.queue, 0, over)
		r.log.Warn("client: release queue full; the oldest handles are left to the lease", "dropped", over)
	}
	r.mu.Unlock()
	r.wake()
}

// abandon queues the request ID of an open, or a create that opens, that
// no master answered, to be given up with the next release batch.
func (r *releaser) abandon(id []byte) {
	if len(id) == 0 {
		return
	}
	r.mu.Lock()
	r.mu.abandoned = append(r.mu.abandoned, id)
	if over := len(r.mu.abandoned) - maxAbandoned; over > 0 {
		r.mu.abandoned = slices.Delete(r.mu.abandoned, 0, over)
		r.log.Warn("client: too many unanswered opens; the oldest are left to the lease", "dropped", over)
	}
	r.mu.Unlock()
	r.wake()
}

// wake tells run there is something to send.
func (r *releaser) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run sends batches until close, then what is left.
func (r *releaser) run(ctx context.Context) {
	defer close(r.done)
	var retry *time.Timer // set while failed releases wait to be sent again
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	pause := time.Duration(0)
	for {
		var again <-chan time.Time
		if retry != nil {
			again = retry.C
		}
		select {
		case <-r.kick:
		case <-again:
			retry = nil
		case <-r.stop:
			r.sendLast()
			return
		}
		if r.delay > 0 {
			t := time.NewTimer(r.delay)
			select {
			case <-t.C:
			case <-r.stop:
				t.Stop()
				r.sendLast()
				return
			}
		}
		if r.sendAll(ctx, true) {
			pause = 0
			continue
		}
		pause = min(max(2*pause, releaseRetryMin), releaseRetryMax)
		if retry == nil {
			retry = time.NewTimer(pause)
		}
	}
}

// sendLast sends what is queued at close, within releaseAtCloseTimeout.
func (r *releaser) sendLast() {
	ctx, cancel := context.WithTimeout(context.Background(), releaseAtCloseTimeout)
	defer cancel()
	r.sendAll(ctx, false)
}

// sendAll sends every queued handle, in batches, each within the
// connection's retry timeout and parent. With requeue, a batch cut short
// by the end of parent, or that no master answered, goes back to the
// queue, and sendAll returns false: the rest waits for the next try.
func (r *releaser) sendAll(parent context.Context, requeue bool) bool {
	for {
		r.mu.Lock()
		batch := r.mu.queue[:min(len(r.mu.queue), maxReleaseBatch)]
		r.mu.queue = r.mu.queue[len(batch):]
		if len(r.mu.queue) == 0 {
			r.mu.queue = nil
		}
		abandoned := r.mu.abandoned[:min(len(r.mu.abandoned), maxReleaseBatch)]
		r.mu.abandoned = r.mu.abandoned[len(abandoned):]
		if len(r.mu.abandoned) == 0 {
			r.mu.abandoned = nil
		}
		r.mu.Unlock()
		if len(batch) == 0 && len(abandoned) == 0 {
			return true
		}
		var err error
		if err = parent.Err(); err == nil {
			_, err = call(parent, r.conn, &masterpb.ReleaseRequest{Header: r.header(), More: batch, Abandoned: abandoned}, masterpb.MasterClient.Release)
		}
		if err != nil && requeue && (parent.Err() != nil || Unanswered(err)) {
			// Cut short by close (back in the queue for its last
			// send), or no master answered: sent again later.
			r.mu.Lock()
			r.mu.queue = slices.Concat(batch, r.mu.queue)
			r.mu.abandoned = slices.Concat(abandoned, r.mu.abandoned)
			r.mu.Unlock()
			if parent.Err() == nil {
				r.log.Warn("client: release handles; will retry", "handles", len(batch), "abandoned", len(abandoned), "err", err)
			}
			return false
		}
		if err != nil {
			// A master's refusal, which a retry would not change; the
			// lease releases them when it runs out.
			r.log.Warn("client: release handles", "handles", len(batch), "abandoned", len(abandoned), "err", err)
		}
	}
}

// close sends what is queued and stops the releaser. Later calls only
// wait for that.
func (r *releaser) close() {
	r.stopOnce.Do(func() {
		close(r.stop)
		r.cancel()
	})
	<-r.done
}
