// Package heartbeat keeps a chunkserver known to the master leader: it
// registers, sends a full shard report, then heartbeats at the interval the
// master asks for, re-registering whenever a heartbeat is answered NotFound
// (the leader changed or forgot the server) and following NotLeader answers
// to the leader's address.
//
// The master answers heartbeats with orders (rebuild a shard here, delete
// one); the loop runs them, at most Config.MaxOrders at once, and reports
// each outcome with OrderDone. An order repeated by the master while it
// runs is not started twice. Shards the scrubber finds corrupt (queued in
// a CorruptQueue) are reported with ReportCorrupt.
//
// It lives outside package chunk so that the chunkserver library stays
// free of any master client; it depends only on the wire protocol
// (proto/masterpb, proto/chunkpb). cmd/chunkserver and internal/cluster run
// one loop per chunkserver with Run.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Node is the chunkserver being kept registered; *chunk.Server satisfies
// it. Its methods must be safe for concurrent use.
type Node interface {
	ID() string
	Addr() string
	Usage() (capacity, free, shards uint64)
}

// ChangeReporter is a Node that can say which shards it stored and deleted
// since it was last asked (*chunk.Server can); heartbeats then carry them,
// so the master's inventory follows without waiting for a full report.
type ChangeReporter interface {
	// ShardChanges returns and forgets the changes since the last call;
	// overflow means some were dropped and a full report is needed.
	ShardChanges() (added, removed []*chunkpb.ShardID, overflow bool)
	// ReturnShardChanges hands back changes that could not be delivered.
	ReturnShardChanges(added, removed []*chunkpb.ShardID)
}

// Defaults for Config fields left zero.
const (
	DefaultInterval    = 3 * time.Second
	DefaultCallTimeout = 5 * time.Second
	DefaultMaxBackoff  = 2 * time.Second
)

// Config configures a heartbeat loop.
type Config struct {
	// Masters are the masters' gRPC addresses; at least one.
	Masters []string
	// Node is the chunkserver reported on. Required.
	Node Node
	// Rack is sent at registration.
	Rack string
	// Interval is the heartbeat period used until the master names one at
	// registration. Default DefaultInterval.
	Interval time.Duration
	// CallTimeout bounds one RPC. Default DefaultCallTimeout.
	CallTimeout time.Duration
	// MaxBackoff caps the pause between failed attempts.
	MaxBackoff time.Duration
	// FullReportInterval, if positive, sends a full shard report that
	// often, besides at registration and when the master asks. Heartbeats
	// carry no shard deltas yet (the chunkserver does not expose them), so
	// this is what keeps the master's shard counts current; zero sends
	// reports only at registration and on request.
	FullReportInterval time.Duration
	// ListShards, if set, lists the node's shards for full reports; nil
	// lists them with the chunkserver's own ListShards RPC at Node.Addr().
	ListShards func(ctx context.Context, fn func([]*chunkpb.ShardInfo) error) error
	// MaxOrders bounds the master's orders (repairs, deletions) run at
	// once. Default DefaultMaxOrders.
	MaxOrders int
	// OrderTimeout bounds one order. Default DefaultOrderTimeout.
	OrderTimeout time.Duration
	// Executor carries orders out; nil calls the node's own Chunk service.
	Executor Executor
	// Corrupt, if set, queues the scrubber's findings for ReportCorrupt.
	Corrupt *CorruptQueue
	// Logger receives the loop's logs; nil discards them.
	Logger *slog.Logger
	// Dial, if set, opens the loop's connections (to the masters, and to
	// the node's own Chunk service for the default ListShards and
	// Executor); nil dials TCP. In-process clusters (internal/cluster) set
	// it to route heartbeats through fault-injecting connections that can
	// be paused and partitioned.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if len(c.Masters) == 0 {
		return errors.New("heartbeat: config: no master addresses")
	}
	if c.Node == nil {
		return errors.New("heartbeat: config: no Node")
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxOrders <= 0 {
		c.MaxOrders = DefaultMaxOrders
	}
	if c.OrderTimeout <= 0 {
		c.OrderTimeout = DefaultOrderTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// loop is the state of one Run.
type loop struct {
	cfg   Config
	conns map[string]*grpc.ClientConn
	addr  string // the master believed to lead
	next  int    // index into Masters of the next master to try
	ex    *executor
}

// Run keeps cfg.Node registered until ctx is cancelled, then returns nil.
// It returns an error only for a bad Config. The caller owns the goroutine
// Run runs on; every connection it opens is closed before it returns.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	l := &loop{cfg: cfg, conns: map[string]*grpc.ClientConn{}, addr: cfg.Masters[0]}
	defer l.close()
	exec := cfg.Executor
	if exec == nil {
		var err error
		if exec, err = l.defaultExecutor(); err != nil {
			return err
		}
	}
	l.ex = newExecutor(exec, cfg.MaxOrders, cfg.OrderTimeout)
	defer l.ex.stop()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		interval, err := l.register(ctx)
		if err == nil {
			backoff = 50 * time.Millisecond
			err = l.beat(ctx, interval)
		}
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			cfg.Logger.Debug("heartbeat: master unreachable or refused; retrying", "chunkserver", cfg.Node.ID(), "master", l.addr, "err", err)
		}
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
	return nil
}

func (l *loop) close() {
	for _, cc := range l.conns {
		_ = cc.Close()
	}
}

func (l *loop) conn(addr string) (*grpc.ClientConn, error) {
	if cc, ok := l.conns[addr]; ok {
		return cc, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if l.cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(l.cfg.Dial))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: dial master %s: %w", addr, err)
	}
	l.conns[addr] = cc
	return cc, nil
}

// call runs fn against the master believed to lead, once. On a NotLeader
// answer naming a leader it switches to it and tries again at once; on
// other unavailability it moves on to the next master for the next call.
func (l *loop) call(ctx context.Context, fn func(ctx context.Context, rc masterpb.RegistryClient) error) error {
	for range len(l.cfg.Masters) + 2 {
		cc, err := l.conn(l.addr)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, l.cfg.CallTimeout)
		err = fn(cctx, masterpb.NewRegistryClient(cc))
		cancel()
		if err == nil {
			return nil
		}
		leader, notLeader := masterpb.LeaderAddressOf(err)
		if notLeader && leader != "" && leader != l.addr {
			l.addr = leader
			continue
		}
		if status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded {
			l.next = (l.next + 1) % len(l.cfg.Masters)
			l.addr = l.cfg.Masters[l.next]
		}
		return err
	}
	return fmt.Errorf("heartbeat: no leader after following redirects")
}

// register registers the node and sends a full report; it returns the
// heartbeat interval the master asked for.
func (l *loop) register(ctx context.Context) (time.Duration, error) {
	n := l.cfg.Node
	capacity, free, _ := n.Usage()
	var resp *masterpb.RegisterResponse
	err := l.call(ctx, func(ctx context.Context, rc masterpb.RegistryClient) error {
		var err error
		resp, err = rc.Register(ctx, &masterpb.RegisterRequest{Id: n.ID(), Address: n.Addr(), Rack: l.cfg.Rack, CapacityBytes: capacity, FreeBytes: free})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("heartbeat: register %s: %w", n.ID(), err)
	}
	l.cfg.Logger.Info("registered with master", "chunkserver", n.ID(), "master", l.addr)
	if err := l.fullReport(ctx); err != nil {
		// The master asks again with full_report_wanted; keep beating.
		l.cfg.Logger.Warn("full report failed", "chunkserver", n.ID(), "err", err)
	}
	interval := l.cfg.Interval
	if ms := resp.GetHeartbeatIntervalMs(); ms > 0 {
		interval = time.Duration(ms) * time.Millisecond
	}
	return interval, nil
}

// beat heartbeats every interval until ctx ends (nil) or the master
// forgets the node or cannot be reached (the error; the caller registers
// again).
func (l *loop) beat(ctx context.Context, interval time.Duration) error {
	n := l.cfg.Node
	t := time.NewTicker(interval)
	defer t.Stop()
	lastReport := time.Now()
	var corrupt <-chan struct{}
	if l.cfg.Corrupt != nil {
		corrupt = l.cfg.Corrupt.kick
		l.reportCorrupt(ctx) // what queued while unregistered
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case r := <-l.ex.done:
			// Report every finished order, then heartbeat at once to
			// pick up more work rather than idle until the tick.
			for more := true; more; {
				l.ex.finished(r.id)
				l.reportDone(ctx, r)
				select {
				case r = <-l.ex.done:
				default:
					more = false
				}
			}
		case <-corrupt:
			l.reportCorrupt(ctx)
			continue
		}
		capacity, free, _ := n.Usage()
		var added, removed []*chunkpb.ShardID
		overflow := false
		cr, deltas := n.(ChangeReporter)
		if deltas {
			added, removed, overflow = cr.ShardChanges()
		}
		var resp *masterpb.HeartbeatResponse
		err := l.call(ctx, func(ctx context.Context, rc masterpb.RegistryClient) error {
			var err error
			resp, err = rc.Heartbeat(ctx, &masterpb.HeartbeatRequest{Id: n.ID(), CapacityBytes: capacity, FreeBytes: free, Added: added, Removed: removed})
			return err
		})
		if err != nil && deltas {
			// A registration's full report covers them if it comes to
			// that; handing them back keeps them for the next beat too.
			cr.ReturnShardChanges(added, removed)
		}
		if err != nil {
			if status.Code(err) == codes.NotFound {
				return nil // register again, at once
			}
			return fmt.Errorf("heartbeat: %s: %w", n.ID(), err)
		}
		l.ex.start(resp.GetOrders())
		due := l.cfg.FullReportInterval > 0 && time.Since(lastReport) >= l.cfg.FullReportInterval
		if resp.GetFullReportWanted() || due || overflow {
			lastReport = time.Now()
			if err := l.fullReport(ctx); err != nil {
				l.cfg.Logger.Warn("full report failed", "chunkserver", n.ID(), "err", err)
			}
		}
	}
}

// fullReport streams the node's shard inventory to the leader.
func (l *loop) fullReport(ctx context.Context) error {
	n := l.cfg.Node
	return l.call(ctx, func(ctx context.Context, rc masterpb.RegistryClient) error {
		stream, err := rc.FullReport(ctx)
		if err != nil {
			return err
		}
		err = l.list(ctx, func(shards []*chunkpb.ShardInfo) error {
			return stream.Send(&masterpb.FullReportRequest{Id: n.ID(), Shards: shards})
		})
		if err != nil {
			return fmt.Errorf("list shards of %s: %w", n.ID(), err)
		}
		if err := stream.Send(&masterpb.FullReportRequest{Id: n.ID(), Last: true}); err != nil && err != io.EOF {
			return err
		}
		_, err = stream.CloseAndRecv()
		return err
	})
}

func (l *loop) list(ctx context.Context, fn func([]*chunkpb.ShardInfo) error) error {
	if l.cfg.ListShards != nil {
		return l.cfg.ListShards(ctx, fn)
	}
	cc, err := l.conn(l.cfg.Node.Addr())
	if err != nil {
		return err
	}
	stream, err := chunkpb.NewChunkClient(cc).ListShards(ctx, &chunkpb.ListShardsRequest{})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(resp.Shards); err != nil {
			return err
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
