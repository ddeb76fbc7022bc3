package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Defaults for MasterConnConfig fields left zero.
const (
	DefaultRetryTimeout = 30 * time.Second
	DefaultCallTimeout  = 10 * time.Second
	DefaultMinBackoff   = 20 * time.Millisecond
	DefaultMaxBackoff   = time.Second
)

// MasterConnConfig configures a MasterConn.
type MasterConnConfig struct {
	// Masters are the masters' gRPC addresses; at least one.
	Masters []string
	// RetryTimeout bounds the retries of one call (the call's context may
	// bound it more). Default DefaultRetryTimeout.
	RetryTimeout time.Duration
	// CallTimeout bounds one attempt. Default DefaultCallTimeout.
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential pause
	// between attempts when no leader is known.
	MinBackoff, MaxBackoff time.Duration
	// DialOptions are added to the master connections' options.
	DialOptions []grpc.DialOption
}

func (c *MasterConnConfig) validate() error {
	if len(c.Masters) == 0 {
		return errors.New("client: no master addresses")
	}
	if c.RetryTimeout <= 0 {
		c.RetryTimeout = DefaultRetryTimeout
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	return nil
}

// MasterConn is a connection to a master group that finds the leader: a
// call goes to the master believed to lead; a NotLeader answer redirects
// it to the leader it names; an Unavailable answer (no leader known, a
// master down) is retried on the next master after a jittered exponential
// backoff, within RetryTimeout and the call's context. A retried request is
// sent unchanged, so a mutation keeps its request ID and the master applies
// it once.
//
// It implements Metadata (with retries), and Do runs any other call the
// same way. It is safe for concurrent use; Close closes the connections.
type MasterConn struct {
	cfg MasterConnConfig

	mu struct {
		sync.Mutex
		leader string
		next   int
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

// NewMasterConn returns a MasterConn; it dials lazily.
func NewMasterConn(cfg MasterConnConfig) (*MasterConn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &MasterConn{cfg: cfg}
	c.mu.leader = cfg.Masters[0]
	c.mu.conns = map[string]*grpc.ClientConn{}
	return c, nil
}

// Close closes every master connection; later calls fail.
func (c *MasterConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.closed = true
	var errs []error
	for _, cc := range c.mu.conns {
		errs = append(errs, cc.Close())
	}
	c.mu.conns = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}

// target returns the address to try and its connection.
func (c *MasterConn) target() (string, *grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return "", nil, ErrClosed
	}
	addr := c.mu.leader
	cc, err := c.connLocked(addr)
	return addr, cc, err
}

// maxMasterReply bounds one master answer. A layout lists every ref of
// the file's chunks, and a chunk rewritten in small pieces holds tens of
// thousands until it is compacted (about 200 bytes each): gRPC's default
// 4 MiB refused such files' layouts, which made them unreadable and
// uncompactable.
const maxMasterReply = 256 << 20

// connLocked returns the connection to the master at addr, dialling
// (lazily) if there is none yet.
func (c *MasterConn) connLocked(addr string) (*grpc.ClientConn, error) {
	if cc, ok := c.mu.conns[addr]; ok {
		return cc, nil
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMasterReply)),
	}, c.cfg.DialOptions...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial master %s: %w", addr, err)
	}
	c.mu.conns[addr] = cc
	return cc, nil
}

// At runs fn once against the master at addr, whether or not it leads,
// within CallTimeout: for questions only that master can answer, such as
// its own Raft state. There is no retry and no redirection.
func (c *MasterConn) At(ctx context.Context, addr string, fn func(ctx context.Context, mc masterpb.MasterClient) error) error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	cc, err := c.connLocked(addr)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	return fn(ctx, masterpb.NewMasterClient(cc))
}

// moveOn records that addr could not serve: leader (if not empty) is where
// to go next, else the next master in the list.
func (c *MasterConn) moveOn(addr, leader string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.leader != addr {
		return // another call moved on already
	}
	if leader != "" {
		c.mu.leader = leader
		return
	}
	c.mu.next = (c.mu.next + 1) % len(c.cfg.Masters)
	c.mu.leader = c.cfg.Masters[c.mu.next]
}

// Do runs fn against the leader, following NotLeader answers and retrying
// unavailability as described on MasterConn. fn must send the same request
// each time. The error is fn's (a gRPC status error): when the retries run
// out of time mid-attempt, the previous attempt's, which says why the
// retries were needed.
func (c *MasterConn) Do(ctx context.Context, fn func(ctx context.Context, mc masterpb.MasterClient) error) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RetryTimeout)
	defer cancel()
	backoff := c.cfg.MinBackoff
	redirects := 0
	var last error
	for {
		addr, cc, err := c.target()
		if err != nil {
			return err
		}
		actx, acancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		err = fn(actx, masterpb.NewMasterClient(cc))
		acancel()
		if err == nil {
			return nil
		}
		if expired(ctx) {
			if last != nil && !expired(parent) {
				return last
			}
			return err
		}
		last = err
		if !Unanswered(err) {
			return err
		}
		leader, notLeader := masterpb.LeaderAddressOf(err)
		if notLeader && leader != "" && leader != addr && redirects < 3 {
			// Straight to the named leader, without a pause.
			redirects++
			c.moveOn(addr, leader)
			continue
		}
		redirects = 0
		c.moveOn(addr, "")
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// Unanswered reports whether err means that no master answered (none
// reachable, not the leader, out of time), as opposed to a master's
// answer: what MasterConn retries, and what is worth trying again later
// once its retries run out. A mutation that failed so may or may not have
// been applied.
func Unanswered(err error) bool {
	if _, notLeader := masterpb.LeaderAddressOf(err); notLeader {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// expired reports whether ctx is done or past its deadline. A call can
// fail with DeadlineExceeded a moment before ctx's own timer marks it
// done (gRPC checks the deadline itself), and such a failure is the retry
// bound running out, not the master's answer.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// call is Do for one unary method.
func call[Req, Resp any](ctx context.Context, c *MasterConn, req *Req,
	m func(masterpb.MasterClient, context.Context, *Req, ...grpc.CallOption) (*Resp, error), opts ...grpc.CallOption) (*Resp, error) {
	var resp *Resp
	err := c.Do(ctx, func(ctx context.Context, mc masterpb.MasterClient) error {
		var err error
		resp, err = m(mc, ctx, req, opts...)
		return err
	})
	return resp, err
}

// AllocateSlice implements Metadata.
func (c *MasterConn) AllocateSlice(ctx context.Context, in *masterpb.AllocateSliceRequest, opts ...grpc.CallOption) (*masterpb.AllocateSliceResponse, error) {
	return call(ctx, c, in, masterpb.MasterClient.AllocateSlice, opts...)
}

// ReplaceShard implements Metadata.
func (c *MasterConn) ReplaceShard(ctx context.Context, in *masterpb.ReplaceShardRequest, opts ...grpc.CallOption) (*masterpb.ReplaceShardResponse, error) {
	return call(ctx, c, in, masterpb.MasterClient.ReplaceShard, opts...)
}

// CommitSlice implements Metadata.
func (c *MasterConn) CommitSlice(ctx context.Context, in *masterpb.CommitSliceRequest, opts ...grpc.CallOption) (*masterpb.CommitSliceResponse, error) {
	return call(ctx, c, in, masterpb.MasterClient.CommitSlice, opts...)
}

// WriteInline implements Metadata.
func (c *MasterConn) WriteInline(ctx context.Context, in *masterpb.WriteInlineRequest, opts ...grpc.CallOption) (*masterpb.WriteInlineResponse, error) {
	return call(ctx, c, in, masterpb.MasterClient.WriteInline, opts...)
}

// GetLayout implements Metadata.
func (c *MasterConn) GetLayout(ctx context.Context, in *masterpb.GetLayoutRequest, opts ...grpc.CallOption) (*masterpb.GetLayoutResponse, error) {
	return call(ctx, c, in, masterpb.MasterClient.GetLayout, opts...)
}

// ReportBadShard implements Metadata.
func (c *MasterConn) ReportBadShard(ctx context.Context, in *masterpb.ReportBadShardRequest, opts ...grpc.CallOption) (*masterpb.ReportBadShardResponse, error) {
	return call(ctx, c, in, masterpb.MasterClient.ReportBadShard, opts...)
}

// CompactChunk implements Metadata.
func (c *MasterConn) CompactChunk(ctx context.Context, in *masterpb.CompactChunkRequest, opts ...grpc.CallOption) (*masterpb.CompactChunkResponse, error) {
	return call(ctx, c, in, masterpb.MasterClient.CompactChunk, opts...)
}

var _ Metadata = (*MasterConn)(nil)
