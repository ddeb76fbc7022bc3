package master

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"
)

// Linearizable reads, read-index style, with no clock-based lease.
//
// A read may be served from the leader's state machine once (1) the
// leader has applied an entry of its own term (its "ready" entry, see
// leader.go), so its commit index covers everything committed before it
// led; (2) it has noted its commit index C after the read arrived; (3) it
// has confirmed it was still the leader after noting C (raft.VerifyLeader:
// a heartbeat round acknowledged by a quorum); and (4) its state machine
// has applied up to C. Every write acknowledged before the read arrived is
// at or below C, and no other leader can have committed anything newer
// without this one losing the quorum round.
//
// Steps 2–4 cost a quorum round trip, so concurrent reads share one:
// readers join the next round; one goroutine runs rounds back to back, each
// covering every reader that joined before it began. Under load a round
// serves hundreds of reads.
type readIndex struct {
	s *Server

	mu struct {
		sync.Mutex
		// next is the round readers join; nil when none is pending.
		next *readRound
	}
	// kick wakes the round goroutine.
	kick chan struct{}
}

type readRound struct {
	done chan struct{}
	err  error
}

func newReadIndex(s *Server) *readIndex {
	return &readIndex{s: s, kick: make(chan struct{}, 1)}
}

// wait returns nil once a read that arrived now may be served from the
// local state machine, or an error (not leader, shutting down, ctx).
func (g *readIndex) wait(ctx context.Context) error {
	g.mu.Lock()
	r := g.mu.next
	if r == nil {
		r = &readRound{done: make(chan struct{})}
		g.mu.next = r
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-g.s.stopping:
		return errShuttingDown
	}
}

// run serves rounds until ctx ends, then fails the pending one.
func (g *readIndex) run(ctx context.Context) {
	for {
		select {
		case <-g.kick:
		case <-ctx.Done():
			g.mu.Lock()
			r := g.mu.next
			g.mu.next = nil
			g.mu.Unlock()
			if r != nil {
				r.err = errShuttingDown
				close(r.done)
			}
			return
		}
		g.mu.Lock()
		r := g.mu.next
		g.mu.next = nil
		g.mu.Unlock()
		if r == nil {
			continue
		}
		r.err = g.confirm(ctx)
		close(r.done)
	}
}

// confirm runs one round: steps 1–4 above.
func (g *readIndex) confirm(ctx context.Context) error {
	s := g.s
	lead, err := s.awaitLeader(ctx)
	if err != nil {
		return err
	}
	index := s.raft.CommitIndex()
	if !g.soleVoter() {
		if err := s.raft.VerifyLeader().Error(); err != nil {
			return s.notLeader()
		}
	}
	if !s.stillLeading(lead) {
		return s.notLeader()
	}
	return s.rfsm.waitApplied(ctx, index)
}

// soleVoter reports whether this master leads and is the only voter of
// the latest Raft configuration, committed or not. No other master can
// then be elected or commit anything, so step 3 holds without a round:
// VerifyLeader would say so too (a quorum of one), but only after waiting
// its turn in Raft's leader loop, which is busy writing the log, and that
// wait was most of a read's latency on a one-master cluster. A voter being
// added shows in the latest configuration at once, before it can vote, so
// from then on reads take the round again.
func (g *readIndex) soleVoter() bool {
	s := g.s
	if s.raft.State() != raft.Leader {
		return false
	}
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, self := 0, false
	for _, sv := range f.Configuration().Servers {
		if sv.Suffrage == raft.Voter {
			voters++
			self = self || sv.ID == raft.ServerID(s.cfg.ID)
		}
	}
	return voters == 1 && self
}
