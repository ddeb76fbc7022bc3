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

// maxUnsettled bounds the opens whose outcome is unknown kept to be asked
// again; past it the oldest are left to the lease.
const maxUnsettled = 1 << 16

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
// An open (or a create that opens) that no master answered may still have
// been applied, its reply lost: the master then holds a handle the client
// never learnt. Such a request is settled here: sent again, with the same
// request ID, until a master answers; the master's request record returns
// the handle the first attempt made, if any, and it is released like a
// closed one.
type releaser struct {
	conn   *MasterConn
	header func() *masterpb.RequestHeader
	delay  time.Duration
	log    *slog.Logger

	mu struct {
		sync.Mutex
		queue []*masterpb.HandleRef
		// unsettled are opens no master answered, oldest first.
		unsettled []unsettledOpen
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
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// unsettledOpen is an open whose reply never came. resend sends its
// request again, unchanged, and returns the handle (0 if none) of the
// inode ino.
type unsettledOpen struct {
	resend func(ctx context.Context) (ino, handle uint64, err error)
}

// settle queues an open that no master answered, to be sent again until
// one does and its handle, if it made one, released.
func (r *releaser) settle(resend func(ctx context.Context) (ino, handle uint64, err error)) {
	r.mu.Lock()
	r.mu.unsettled = append(r.mu.unsettled, unsettledOpen{resend: resend})
	if over := len(r.mu.unsettled) - maxUnsettled; over > 0 {
		r.mu.unsettled = slices.Delete(r.mu.unsettled, 0, over)
		r.log.Warn("client: too many unanswered opens; the oldest are left to the lease", "dropped", over)
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// settleAll sends every unsettled open again and queues the handles they
// return for release. It returns false if any is still unanswered (it
// stays queued when requeue is set).
func (r *releaser) settleAll(ctx context.Context, requeue bool) bool {
	r.mu.Lock()
	todo := r.mu.unsettled
	r.mu.unsettled = nil
	r.mu.Unlock()
	for i, u := range todo {
		var err error
		var ino, handle uint64
		if err = ctx.Err(); err == nil {
			ino, handle, err = u.resend(ctx)
		}
		if err != nil && (ctx.Err() != nil || Unanswered(err)) {
			if requeue {
				r.mu.Lock()
				r.mu.unsettled = slices.Concat(todo[i:], r.mu.unsettled)
				r.mu.Unlock()
			}
			return false
		}
		if err != nil {
			// The master answered with an error: the first attempt
			// opened nothing that it still records.
			continue
		}
		if handle != 0 {
			r.mu.Lock()
			r.mu.queue = append(r.mu.queue, &masterpb.HandleRef{Inode: ino, Handle: handle})
			r.mu.Unlock()
		}
	}
	return true
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
		settled := r.settleAll(ctx, true)
		if r.sendAll(ctx, true) && settled {
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
	r.settleAll(ctx, false)
	r.sendAll(ctx, false)
}

// sendAll sends every queued handle, in batches, each within the
// connection's retry timeout and parent. With requeue, a batch cut short
// by the end of parent, or that no master answered, goes back to the
// queue, and sendAll returns false: the rest waits for the next try.
func (r *releaser) sendAll(parent context.Context, requeue bool) bool {
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
			return true
		}
		var err error
		if err = parent.Err(); err == nil {
			_, err = call(parent, r.conn, &masterpb.ReleaseRequest{Header: r.header(), More: batch}, masterpb.MasterClient.Release)
		}
		if err != nil && requeue && (parent.Err() != nil || Unanswered(err)) {
			// Cut short by close (back in the queue for its last
			// send), or no master answered: sent again later.
			r.mu.Lock()
			r.mu.queue = slices.Concat(batch, r.mu.queue)
			r.mu.Unlock()
			if parent.Err() == nil {
				r.log.Warn("client: release handles; will retry", "handles", len(batch), "err", err)
			}
			return false
		}
		if err != nil {
			// A master's refusal, which a retry would not change; the
			// lease releases them when it runs out.
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
