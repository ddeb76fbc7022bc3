package client

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Lookups and getattrs of one process travel together.
//
// A busy mount asks the master many small questions at once: the kernel
// sends its GETATTRs and LOOKUPs in parallel, and each is a round trip whose
// cost is mostly the RPC itself, not the read. So a call made while
// statMaxRunning others are already on the wire waits, and every call that
// waited goes in one BatchStat when a slot frees: under load a round trip
// answers dozens, and a lone call is sent at once, as a plain Lookup or
// GetAttr, with nothing added to its latency.
//
// Each answer is exactly what the single call would have given: the master
// serves a batch after one linearizable read barrier taken after the batch
// arrived, which is after every query in it was asked.
const (
	// statMaxRunning is how many stat calls (single or batched) may be on
	// the wire at once before new ones queue.
	statMaxRunning = 2
	// statMaxBatch caps one BatchStat; the master accepts up to
	// 1024 (master.MaxBatchStat).
	statMaxBatch = 256
)

// statBatcher coalesces concurrent stat calls (see above). Its batch
// goroutine runs only while calls are queued and stops at close.
type statBatcher struct {
	conn *MasterConn
	// ctx bounds the batches sent for waiting callers (each caller still
	// waits only as long as its own ctx allows); close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// unbatched is set when the master does not know BatchStat (an older
	// master during an upgrade): every call then goes alone.
	unbatched atomic.Bool

	mu struct {
		sync.Mutex
		running int
		queue   []*statWait
	}
}

// statWait is one queued call and, once done is closed, its answer.
type statWait struct {
	q    *masterpb.StatQuery
	done chan struct{}
	attr *masterpb.Attr
	err  error
}

func newStatBatcher(conn *MasterConn) *statBatcher {
	b := &statBatcher{conn: conn}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// close stops the batch goroutine; calls still waiting fail with
// context.Canceled (or their own ctx's error).
func (b *statBatcher) close() {
	b.cancel()
	b.wg.Wait()
}

// stat answers q: a GetAttr of q.Inode if q.Name is empty, else a Lookup.
// The error is what the single call would return.
func (b *statBatcher) stat(ctx context.Context, q *masterpb.StatQuery) (*masterpb.Attr, error) {
	if b.unbatched.Load() {
		return b.single(ctx, q)
	}
	b.mu.Lock()
	if b.mu.running < statMaxRunning {
		// Nothing is queued (a free slot drains the queue at once), so
		// this call goes alone.
		b.mu.running++
		b.mu.Unlock()
		a, err := b.single(ctx, q)
		b.finished()
		return a, err
	}
	w := &statWait{q: q, done: make(chan struct{})}
	b.mu.queue = append(b.mu.queue, w)
	b.mu.Unlock()
	select {
	case <-w.done:
		return w.attr, w.err
	case <-ctx.Done():
		// The query may still be sent; its answer is dropped.
		return nil, ctx.Err()
	}
}

// finished frees a running slot, starting the batch goroutine if calls
// are waiting for it.
func (b *statBatcher) finished() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.mu.queue) == 0 {
		b.mu.running--
		return
	}
	if b.ctx.Err() != nil {
		b.mu.running--
		for _, w := range b.mu.queue {
			w.err = context.Canceled
			close(w.done)
		}
		b.mu.queue = nil
		return
	}
	// The slot passes to a batch goroutine, which sends queued calls until
	// none are left.
	b.wg.Add(1)
	go b.drain()
}

// drain sends the queued calls in batches until the queue is empty, then
// frees its slot.
func (b *statBatcher) drain() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		n := min(len(b.mu.queue), statMaxBatch)
		if n == 0 || b.ctx.Err() != nil {
			ws := b.mu.queue
			b.mu.queue = nil
			b.mu.running--
			b.mu.Unlock()
			for _, w := range ws {
				w.err = context.Canceled
				close(w.done)
			}
			return
		}
		batch := b.mu.queue[:n:n]
		b.mu.queue = b.mu.queue[n:]
		b.mu.Unlock()
		b.send(batch)
	}
}

// send answers every call in batch with one BatchStat.
func (b *statBatcher) send(batch []*statWait) {
	defer func() {
		for _, w := range batch {
			close(w.done)
		}
	}()
	if len(batch) == 1 {
		batch[0].attr, batch[0].err = b.single(b.ctx, batch[0].q)
		return
	}
	req := &masterpb.BatchStatRequest{Queries: make([]*masterpb.StatQuery, len(batch))}
	for i, w := range batch {
		req.Queries[i] = w.q
	}
	resp, err := call(b.ctx, b.conn, req, masterpb.MasterClient.BatchStat)
	if status.Code(err) == codes.Unimplemented {
		b.unbatched.Store(true)
		for _, w := range batch {
			w.attr, w.err = b.single(b.ctx, w.q)
		}
		return
	}
	if err == nil && len(resp.Results) != len(batch) {
		err = status.Errorf(codes.Internal, "master answered %d of %d stat queries", len(resp.Results), len(batch))
	}
	for i, w := range batch {
		if err != nil {
			w.err = err
			continue
		}
		r := resp.Results[i]
		if r.GetErrno() != 0 {
			w.err = masterpb.ErrnoError(syscall.Errno(r.GetErrno()), r.GetError())
			continue
		}
		w.attr = r.GetAttr()
	}
}

// single sends q alone, as the plain RPC.
func (b *statBatcher) single(ctx context.Context, q *masterpb.StatQuery) (*masterpb.Attr, error) {
	if q.Name == "" {
		resp, err := call(ctx, b.conn, &masterpb.GetAttrRequest{Inode: q.Inode}, masterpb.MasterClient.GetAttr)
		if err != nil {
			return nil, err
		}
		return resp.Attr, nil
	}
	resp, err := call(ctx, b.conn, &masterpb.LookupRequest{Parent: q.Inode, Name: q.Name}, masterpb.MasterClient.Lookup)
	if err != nil {
		return nil, err
	}
	return resp.Attr, nil
}
