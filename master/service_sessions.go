package master

import (
	"context"
	"errors"
	"math"
	"sync"
	"syscall"
	"time"

	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Client sessions: open handles and locks belong to a client ID and live
// as long as its lease. A client renews its lease with KeepAlive (and with
// every Open and Lock); when the lease lapses the leader proposes
// ExpireClient, which releases the client's handles and locks in every
// replica. Lease deadlines are leader memory, not state: a new leader gives
// every client that holds something one full lease from its takeover, so a
// leader change never expires a live client (it may keep a dead client's
// locks up to one lease longer).

// leases tracks client lease deadlines on the leader.
type leases struct {
	mu       sync.Mutex
	epoch    uint64 // leadership epoch the deadlines belong to
	deadline map[string]time.Time
}

// renew extends client's lease to now+d for leadership epoch.
func (l *leases) renew(epoch uint64, client string, now time.Time, d time.Duration) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resetLocked(epoch)
	exp := now.Add(d)
	l.deadline[client] = exp
	return exp
}

func (l *leases) resetLocked(epoch uint64) {
	if l.deadline == nil || l.epoch != epoch {
		l.deadline = make(map[string]time.Time)
		l.epoch = epoch
	}
}

// expired returns the clients among holders whose lease lapsed, starting a
// lease for holders not seen yet in this epoch and forgetting clients that
// hold nothing any more.
func (l *leases) expired(epoch uint64, holders []string, now time.Time, d time.Duration) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resetLocked(epoch)
	held := make(map[string]bool, len(holders))
	var out []string
	for _, c := range holders {
		held[c] = true
		exp, ok := l.deadline[c]
		if !ok {
			l.deadline[c] = now.Add(d)
			continue
		}
		if now.After(exp) {
			out = append(out, c)
		}
	}
	for c, exp := range l.deadline {
		if !held[c] && now.After(exp) {
			delete(l.deadline, c)
		}
	}
	return out
}

// forget drops client's deadline after its state was expired.
func (l *leases) forget(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.deadline, client)
}

// expireLeases proposes ExpireClient for every client whose lease lapsed,
// while this master leads, until ctx ends.
func (s *Server) expireLeases(ctx context.Context) {
	period := max(s.cfg.ClientLease/4, 50*time.Millisecond)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		lead := s.leadership()
		if !lead.leader {
			continue
		}
		select {
		case <-lead.ready:
		default:
			continue
		}
		holders, err := s.fsm.ClientsWithState()
		if err != nil {
			s.log.Warn("list client sessions", "err", err)
			continue
		}
		for _, c := range s.leases.expired(lead.epoch, holders, s.now(), s.cfg.ClientLease) {
			cmd := &fsmpb.Command{
				NowUnixNano: s.now().UnixNano(),
				Op:          &fsmpb.Command_ExpireClient{ExpireClient: &fsmpb.ExpireClient{ClientId: c}},
			}
			res, err := s.batch.propose(ctx, s.stopping, cmd)
			if err == nil {
				err = res.Err
			}
			if err != nil {
				s.log.Warn("expire client session", "client", c, "err", err)
				continue
			}
			s.leases.forget(c)
			s.log.Info("client lease lapsed: handles and locks released", "client", c)
		}
	}
}

// session checks that a request names its client and renews its lease.
func (s *Server) session(ctx context.Context, op string, h *masterpb.RequestHeader) (leadership, error) {
	lead, err := s.awaitLeader(ctx)
	if err != nil {
		return lead, s.toStatus(err)
	}
	if h.GetClientId() == "" || len(h.GetClientId()) > fsm.MaxClientIDLen {
		return lead, masterpb.ErrnoError(syscall.EINVAL, op+": the request header needs a client ID")
	}
	s.leases.renew(lead.epoch, h.GetClientId(), s.now(), s.cfg.ClientLease)
	return lead, nil
}

func (m *masterService) KeepAlive(ctx context.Context, req *masterpb.KeepAliveRequest) (*masterpb.KeepAliveResponse, error) {
	s := m.s
	lead, err := s.session(ctx, "keepalive", &masterpb.RequestHeader{ClientId: req.ClientId})
	if err != nil {
		return nil, err
	}
	exp := s.leases.renew(lead.epoch, req.ClientId, s.now(), s.cfg.ClientLease)
	return &masterpb.KeepAliveResponse{LeaseUnixNano: exp.UnixNano()}, nil
}

func (m *masterService) Open(ctx context.Context, req *masterpb.OpenRequest) (*masterpb.OpenResponse, error) {
	s := m.s
	if _, err := s.session(ctx, "open", req.Header); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_OpenHandle{OpenHandle: &fsmpb.OpenHandle{
		Inode: req.Inode, ClientId: req.Header.GetClientId(), ReadOnly: req.ReadOnly,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.OpenResponse{Attr: res.Attr, Handle: res.Handle}, nil
}

// maxReleaseBatch bounds the handles one Release closes, and so the work
// of one command.
const maxReleaseBatch = 1024

func (m *masterService) Release(ctx context.Context, req *masterpb.ReleaseRequest) (*masterpb.ReleaseResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if len(req.More) > maxReleaseBatch || len(req.Abandoned) > maxReleaseBatch {
		return nil, invalid("release", "%d handles and %d abandoned requests in one request, at most %d of each", len(req.More), len(req.Abandoned), maxReleaseBatch)
	}
	if _, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_ReleaseHandle{ReleaseHandle: &fsmpb.ReleaseHandle{
		Inode: req.Inode, Handle: req.Handle, More: req.More, ClientId: req.Header.GetClientId(), Abandoned: req.Abandoned,
	}}}); err != nil {
		return nil, err
	}
	return &masterpb.ReleaseResponse{}, nil
}

// Lock sets, tests or releases a POSIX record lock or flock. A lock that
// conflicts is not an error: the answer says not granted and names the
// blocking lock, and a client wanting to wait (F_SETLKW) asks again.
func (m *masterService) Lock(ctx context.Context, req *masterpb.LockRequest) (*masterpb.LockResponse, error) {
	s := m.s
	if _, err := s.session(ctx, "lock", req.Header); err != nil {
		return nil, err
	}
	l := &fsmpb.FileLock{
		ClientId: req.Header.GetClientId(),
		Owner:    req.Owner,
		Flock:    req.Kind == masterpb.LockRequest_KIND_FLOCK,
		Write:    req.Type == masterpb.LockRequest_TYPE_WRITE,
		Start:    req.Start,
		End:      req.End,
		Pid:      req.Pid,
	}
	if l.Flock {
		l.Start, l.End = 0, math.MaxUint64
	}
	if l.Start > l.End {
		return nil, masterpb.ErrnoError(syscall.EINVAL, "lock: range ends before it starts")
	}
	if req.Test {
		if req.Type == masterpb.LockRequest_TYPE_UNLOCK {
			return nil, masterpb.ErrnoError(syscall.EINVAL, "lock: testing an unlock")
		}
		if err := s.linearize(ctx); err != nil {
			return nil, err
		}
		return s.lockAnswer(req.Inode, l)
	}
	_, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_SetLock{SetLock: &fsmpb.SetLock{
		Inode: req.Inode, Lock: l, Unlock: req.Type == masterpb.LockRequest_TYPE_UNLOCK,
	}}})
	if errors.Is(masterpb.ErrnoOf(err), syscall.EAGAIN) {
		return s.lockAnswer(req.Inode, l)
	}
	if err != nil {
		return nil, err
	}
	return &masterpb.LockResponse{Granted: true}, nil
}

// lockAnswer reports whether l could be granted now and, if not, what
// blocks it.
func (s *Server) lockAnswer(ino uint64, l *fsmpb.FileLock) (*masterpb.LockResponse, error) {
	held, err := s.fsm.Locks(ino)
	if err != nil {
		return nil, s.toStatus(err)
	}
	if _, err := s.fsm.GetAttr(ino); err != nil {
		return nil, s.toStatus(err)
	}
	c := fsm.LockConflict(held, l)
	if c == nil {
		return &masterpb.LockResponse{Granted: true}, nil
	}
	kind, typ := masterpb.LockRequest_KIND_POSIX, masterpb.LockRequest_TYPE_READ
	if c.Flock {
		kind = masterpb.LockRequest_KIND_FLOCK
	}
	if c.Write {
		typ = masterpb.LockRequest_TYPE_WRITE
	}
	return &masterpb.LockResponse{Conflict: &masterpb.LockRequest{
		Header: &masterpb.RequestHeader{ClientId: c.ClientId},
		Inode:  ino, Owner: c.Owner, Kind: kind, Type: typ, Start: c.Start, End: c.End, Pid: c.Pid,
	}}, nil
}

func (m *masterService) Concat(ctx context.Context, req *masterpb.ConcatRequest) (*masterpb.ConcatResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	c := credOf(req.Header)
	dir, err := s.checkDirWrite("concat", c, req.Parent)
	if err != nil {
		return nil, err
	}
	if err := s.checkRemove("concat", c, req.Parent, req.Name); err != nil {
		return nil, err
	}
	op := &fsmpb.Concat{Dst: &fsmpb.EntryName{Parent: req.Parent, Name: req.Name}}
	for _, src := range req.Sources {
		if err := s.checkRemove("concat", c, src.GetParent(), src.GetName()); err != nil {
			return nil, err
		}
		op.Srcs = append(op.Srcs, &fsmpb.EntryName{Parent: src.GetParent(), Name: src.GetName()})
	}
	op.Gid, op.Mode = newOwnership(c, dir, req.Mode, false)
	op.Uid = c.uid
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Concat{Concat: op}})
	if err != nil {
		return nil, err
	}
	return &masterpb.ConcatResponse{Attr: res.Attr}, nil
}
