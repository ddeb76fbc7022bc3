package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Defaults for the order and corruption settings of Config.
const (
	DefaultMaxOrders    = 4
	DefaultOrderTimeout = 10 * time.Minute
	// MaxQueuedCorrupt bounds the corrupt shards a CorruptQueue holds while
	// the master cannot be reached; more are dropped (the next scrub pass
	// finds them again).
	MaxQueuedCorrupt = 1 << 16
)

// Executor carries out the master's orders on the chunkserver. The default
// calls the chunkserver's own Chunk service at Node.Addr(); tests inject
// their own. Its methods are called from several goroutines at once.
type Executor interface {
	Reconstruct(ctx context.Context, req *chunkpb.ReconstructShardRequest) error
	Delete(ctx context.Context, req *chunkpb.DeleteShardRequest) error
}

// grpcExecutor is the default Executor: the node's own Chunk service.
type grpcExecutor struct{ cc *grpc.ClientConn }

func (g grpcExecutor) Reconstruct(ctx context.Context, req *chunkpb.ReconstructShardRequest) error {
	_, err := chunkpb.NewChunkClient(g.cc).ReconstructShard(ctx, req)
	return err
}

func (g grpcExecutor) Delete(ctx context.Context, req *chunkpb.DeleteShardRequest) error {
	_, err := chunkpb.NewChunkClient(g.cc).DeleteShard(ctx, req)
	return err
}

// CorruptQueue carries the scrubber's findings to the heartbeat loop, which
// reports them to the master with ReportCorrupt. Wire its Add to
// chunk.Config.OnCorrupt. It is safe for concurrent use; Add never blocks.
type CorruptQueue struct {
	kick chan struct{}
	mu   struct {
		sync.Mutex
		ids []*chunkpb.ShardID
	}
}

// NewCorruptQueue returns an empty queue.
func NewCorruptQueue() *CorruptQueue {
	return &CorruptQueue{kick: make(chan struct{}, 1)}
}

// Add queues shards for reporting. Beyond MaxQueuedCorrupt queued shards
// the rest are dropped.
func (q *CorruptQueue) Add(ids []*chunkpb.ShardID) {
	q.mu.Lock()
	room := MaxQueuedCorrupt - len(q.mu.ids)
	q.mu.ids = append(q.mu.ids, ids[:min(len(ids), max(room, 0))]...)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (q *CorruptQueue) take() []*chunkpb.ShardID {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.mu.ids
	q.mu.ids = nil
	return ids
}

// putBack requeues shards whose report failed.
func (q *CorruptQueue) putBack(ids []*chunkpb.ShardID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	room := MaxQueuedCorrupt - len(q.mu.ids)
	q.mu.ids = append(ids[:min(len(ids), max(room, 0))], q.mu.ids...)
}

// orderResult is a finished order, for OrderDone.
type orderResult struct {
	id  uint64
	err error
}

// executor runs orders with bounded concurrency. Its goroutines belong to
// the Run that created it, which stops them with stop.
type executor struct {
	exec    Executor
	timeout time.Duration
	sem     chan struct{}
	done    chan orderResult
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	running map[uint64]bool // touched by the loop goroutine only
}

func newExecutor(exec Executor, maxOrders int, timeout time.Duration) *executor {
	ctx, cancel := context.WithCancel(context.Background())
	return &executor{
		exec: exec, timeout: timeout, sem: make(chan struct{}, maxOrders),
		// Room for every order that can be queued, so workers never block
		// on reporting while the loop waits on them.
		done: make(chan orderResult, 1024),
		ctx:  ctx, cancel: cancel, running: map[uint64]bool{},
	}
}

// start runs the orders not already running. Called by the loop goroutine.
func (e *executor) start(orders []*masterpb.Order) {
	for _, o := range orders {
		if o == nil || e.running[o.Id] || len(e.running) >= cap(e.done) {
			continue
		}
		e.running[o.Id] = true
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			select {
			case e.sem <- struct{}{}:
			case <-e.ctx.Done():
				return
			}
			err := e.run(o)
			<-e.sem
			e.done <- orderResult{id: o.Id, err: err}
		}()
	}
}

func (e *executor) run(o *masterpb.Order) error {
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	switch w := o.Work.(type) {
	case *masterpb.Order_Reconstruct:
		return e.exec.Reconstruct(ctx, w.Reconstruct)
	case *masterpb.Order_Delete:
		return e.exec.Delete(ctx, w.Delete)
	}
	return errors.New("unknown order")
}

// finished marks an order no longer running.
func (e *executor) finished(id uint64) { delete(e.running, id) }

// stop cancels the running orders and waits for their goroutines.
func (e *executor) stop() {
	e.cancel()
	e.wg.Wait()
}

// reportDone tells the master how an order ended. The master treats an
// order it never hears about as lost after its own timeout, so a failed
// report is only logged.
func (l *loop) reportDone(ctx context.Context, r orderResult) {
	msg := ""
	if r.err != nil {
		msg = r.err.Error()
	}
	err := l.call(ctx, func(ctx context.Context, rc masterpb.RegistryClient) error {
		_, err := rc.OrderDone(ctx, &masterpb.OrderDoneRequest{Id: l.cfg.Node.ID(), OrderId: r.id, Error: msg})
		return err
	})
	if err != nil {
		l.cfg.Logger.Warn("order done report failed", "chunkserver", l.cfg.Node.ID(), "order", r.id, "err", err)
	}
}

// reportCorrupt sends the queued corrupt shards; they are requeued if the
// master cannot be told.
func (l *loop) reportCorrupt(ctx context.Context) {
	q := l.cfg.Corrupt
	ids := q.take()
	if len(ids) == 0 {
		return
	}
	err := l.call(ctx, func(ctx context.Context, rc masterpb.RegistryClient) error {
		_, err := rc.ReportCorrupt(ctx, &masterpb.ReportCorruptRequest{Id: l.cfg.Node.ID(), Shards: ids})
		return err
	})
	if err != nil {
		q.putBack(ids)
		l.cfg.Logger.Warn("corrupt shard report failed; will retry", "chunkserver", l.cfg.Node.ID(), "shards", len(ids), "err", err)
		return
	}
	l.cfg.Logger.Warn("reported corrupt shards", "chunkserver", l.cfg.Node.ID(), "shards", len(ids))
}

// defaultExecutor dials the node's own Chunk service.
func (l *loop) defaultExecutor() (Executor, error) {
	cc, err := l.conn(l.cfg.Node.Addr())
	if err != nil {
		return nil, fmt.Errorf("heartbeat: dial own chunkserver: %w", err)
	}
	return grpcExecutor{cc}, nil
}
