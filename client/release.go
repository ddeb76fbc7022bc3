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
type releaser struct {
	conn   *MasterConn
	header func() *masterpb.RequestHeader
	delay  time.Duration
	log    *slog.Logger

	mu struct {
		sync.Mutex
		queue []*masterpb.HandleRef
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
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run sends batches until close, then what is left.
func (r *releaser) run(ctx context.Context) {
	defer close(r.done)
	for {
		select {
		case <-r.kick:
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
		r.sendAll(ctx, true)
	}
}

// sendLast sends what is queued at close, within releaseAtCloseTimeout.
func (r *releaser) sendLast() {
	ctx, cancel := context.WithTimeout(context.Background(), releaseAtCloseTimeout)
	defer cancel()
	r.sendAll(ctx, false)
}

// sendAll sends every queued handle, in batches, each within the
// connection's retry timeout and parent. With requeue, a batch cut short by the end of
// parent goes back to the queue.
func (r *releaser) sendAll(parent context.Context, requeue bool) {
	for {
		r.mu.Lock()
		batch := r.mu.queue
		if len(batch) > maxReleaseBatch {
			batch = batch[:maxReleaseBatch]
		}
		r.mu.queue = r.mu.queue[len(batch):]
		if len(r.mu.queue) == 0 {
			r.mu.queue = nil
		}
		r.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		var err error
		if err = parent.Err(); err == nil {
			_, err = call(parent, r.conn, &masterpb.ReleaseRequest{Header: r.header(), More: batch}, masterpb.MasterClient.Release)
		}
		if err != nil && requeue && parent.Err() != nil {
			// Cut short by close: back in the queue for its last send.
			r.mu.Lock()
			r.mu.queue = slices.Concat(batch, r.mu.queue)
			r.mu.Unlock()
			return
		}
		if err != nil {
			// The lease releases them when it runs out.
			r.log.Warn("client: release handles", "handles", len(batch), "err", err)
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
