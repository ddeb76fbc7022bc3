package master

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairnfs/cairn/master/internal/registry"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// leadership is what this master knows of its own role. A new value is
// installed (under Server.mu) at every change; epoch tells them apart.
type leadership struct {
	epoch  uint64
	leader bool
	// ready is closed once this term's first entry is applied: from then
	// on the leader's state covers everything committed before it led,
	// and it serves reads and writes.
	ready chan struct{}
	// ended is closed when the next leadership replaces this one.
	ended chan struct{}
}

// watchLeadership follows Raft's leadership notifications until stop is
// closed. It must keep reading until Raft has shut down: Raft blocks on
// its notify channel. It also notices Raft shutting itself down, which it
// does when this master is removed from the group, and closes removedCh.
func (s *Server) watchLeadership(ctx context.Context, notify <-chan bool, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	removed := false
	for {
		select {
		case isLeader := <-notify:
			s.setLeadership(ctx, isLeader)
		case <-tick.C:
			if !removed && ctx.Err() == nil && s.raft.State() == raft.Shutdown {
				removed = true
				close(s.removedCh)
			}
		case <-stop:
			return
		}
	}
}

// setLeadership installs a new leadership epoch. Chunkserver soft state
// starts afresh at every change: while another master led, heartbeats went
// there, so whatever this one remembers is stale (chunkservers re-register
// when their next heartbeat is refused).
func (s *Server) setLeadership(ctx context.Context, isLeader bool) {
	reg, err := registry.New(s.regCfg)
	if err != nil { // validated in New; cannot happen
		s.fail(err)
		return
	}
	s.reg.Store(reg)
	s.mu.Lock()
	close(s.mu.lead.ended)
	s.mu.lead = leadership{epoch: s.mu.lead.epoch + 1, leader: isLeader, ready: make(chan struct{}), ended: make(chan struct{})}
	lead := s.mu.lead
	s.mu.Unlock()
	s.log.Info("leadership changed", "leader", isLeader, "term", s.raft.CurrentTerm())
	if !isLeader {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.becomeReady(ctx, lead)
	}()
}

// becomeReady commits this term's first entry — the master's directory
// record, so that followers can send clients here — and marks the
// leadership ready once it is applied. It retries until it succeeds or the
// leadership ends.
func (s *Server) becomeReady(ctx context.Context, lead leadership) {
	for attempt := 0; ; attempt++ {
		if !s.stillLeading(lead) || ctx.Err() != nil {
			return
		}
		cmd := &fsmpb.Command{
			NowUnixNano: s.now().UnixNano(),
			Op: &fsmpb.Command_SetMaster{SetMaster: &fsmpb.SetMaster{
				Id: s.cfg.ID, GrpcAddress: s.grpcAdvertise, HttpAddress: s.HTTPAddr(),
			}},
		}
		res, err := s.batch.propose(ctx, s.stopping, cmd)
		if err == nil && res.Err == nil {
			close(lead.ready)
			s.log.Info("leader ready", "term", s.raft.CurrentTerm(), "applied", s.rfsm.lastIndex())
			return
		}
		if err == nil {
			err = res.Err
		}
		s.log.Warn("leader start entry failed", "attempt", attempt, "err", err)
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) leadership() leadership {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.lead
}

// stillLeading reports whether lead is still the current leadership.
func (s *Server) stillLeading(lead leadership) bool {
	cur := s.leadership()
	return cur.epoch == lead.epoch && cur.leader
}

// awaitLeader returns the current leadership once it is ready, or a
// NotLeader error if this master does not lead.
func (s *Server) awaitLeader(ctx context.Context) (leadership, error) {
	lead := s.leadership()
	if !lead.leader {
		return lead, s.notLeader()
	}
	select {
	case <-lead.ready:
		return lead, nil
	case <-lead.ended:
		return lead, s.notLeader()
	case <-ctx.Done():
		return lead, ctx.Err()
	case <-s.stopping:
		return lead, errShuttingDown
	}
}

// errNotLeader marks NotLeader answers built by notLeader.
var errNotLeader = errors.New("master: not the leader")

// notLeader returns the NotLeader status: Unavailable with the leader's
// gRPC address (from the master directory) when one is known.
func (s *Server) notLeader() error {
	return masterpb.NotLeaderError(s.leaderGRPCAddr(), errNotLeader.Error()+" ("+s.cfg.ID+")")
}

// leaderGRPCAddr returns the current leader's gRPC address, or "".
func (s *Server) leaderGRPCAddr() string {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	if id == raft.ServerID(s.cfg.ID) {
		return s.grpcAdvertise
	}
	ms, err := s.fsm.Masters()
	if err != nil {
		return ""
	}
	for _, m := range ms {
		if m.Id == string(id) {
			return m.GrpcAddress
		}
	}
	return ""
}
