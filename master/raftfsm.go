package master

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairnfs/cairn/master/internal/fsm"
)

// raftFSM adapts fsm.FSM to hashicorp/raft (see fsm's package doc). It
// implements raft.BatchingFSM so that it sees configuration entries as well
// as commands: together those are every entry after the leader's first one
// of its term, which is what lets a linearizable read wait for "applied up
// to the read index" (see readindex.go).
//
// Raft calls ApplyBatch, Snapshot and Restore from its one FSM goroutine;
// waitApplied and lastIndex may be called from anywhere.
type raftFSM struct {
	f *fsm.FSM
	// observe records how long each entry took to apply.
	observe func(time.Duration)
	// fatal is called when Apply fails for a reason that is not
	// deterministic (storage, corruption): the replica must stop.
	fatal func(error)

	mu struct {
		sync.Mutex
		// last is the highest log index processed (applied, or skipped as
		// already applied, or a configuration entry).
		last uint64
		// progress is closed and replaced whenever last moves.
		progress chan struct{}
	}
}

func newRaftFSM(f *fsm.FSM, observe func(time.Duration), fatal func(error)) *raftFSM {
	a := &raftFSM{f: f, observe: observe, fatal: fatal}
	a.mu.last = f.AppliedIndex()
	a.mu.progress = make(chan struct{})
	return a
}

var _ raft.BatchingFSM = (*raftFSM)(nil)

// Apply applies one entry; raft uses ApplyBatch, this is for completeness.
func (a *raftFSM) Apply(l *raft.Log) any { return a.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies command entries to the state machine. Each command
// entry's response is its []fsm.Result, or the error that stopped the
// replica; configuration entries answer nil.
func (a *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		start := time.Now()
		res, err := a.f.Apply(l.Index, l.Data)
		if err != nil {
			a.fatal(err)
			out[i] = err
			continue
		}
		a.observe(time.Since(start))
		out[i] = res
	}
	if len(logs) > 0 {
		a.advance(logs[len(logs)-1].Index)
	}
	return out
}

func (a *raftFSM) advance(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if index > a.mu.last {
		a.mu.last = index
		close(a.mu.progress)
		a.mu.progress = make(chan struct{})
	}
}

// lastIndex returns the highest log index processed.
func (a *raftFSM) lastIndex() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.last
}

// waitApplied returns once entries up to index are processed, or ctx's
// error.
func (a *raftFSM) waitApplied(ctx context.Context, index uint64) error {
	for {
		a.mu.Lock()
		last, ch := a.mu.last, a.mu.progress
		a.mu.Unlock()
		if last >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Snapshot captures the state; the stream is written by Persist, which
// raft runs concurrently with later applies.
func (a *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := a.f.Snapshot()
	if err != nil {
		return nil, err
	}
	return fsmSnapshot{s}, nil
}

// Restore replaces the state with a snapshot streamed from the leader (or
// opened at start-up, see stores.reconcile).
func (a *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := a.f.Restore(rc); err != nil {
		return err
	}
	a.advance(a.f.AppliedIndex())
	return nil
}

type fsmSnapshot struct{ s *fsm.Snapshot }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() { _ = s.s.Close() }
