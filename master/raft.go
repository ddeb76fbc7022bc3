package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/cairnfs/cairn/master/internal/fsm"
)

// On-disk layout under Config.Dir.
const (
	fsmDir      = "fsm"      // Pebble: the state machine
	walDir      = "raft-wal" // raft-wal: the Raft log and stable store
	snapshotDir = "raft-snapshots"
)

// stores is what a master keeps on disk.
type stores struct {
	fsm   *fsm.FSM
	wal   *raftwal.WAL
	meta  *metadb.BoltMetaDB
	snaps *raft.FileSnapshotStore
}

func (st *stores) close() error {
	var errs []error
	if st.wal != nil {
		errs = append(errs, st.wal.Close())
	}
	if st.meta != nil {
		errs = append(errs, st.meta.Close())
	}
	if st.fsm != nil {
		errs = append(errs, st.fsm.Close())
	}
	return errors.Join(errs...)
}

// openStores opens the state machine, the Raft log and the snapshot store
// and makes the state machine consistent with the snapshots: if a Restore
// was cut short by a crash (the state machine refuses to run), or the
// state machine is somehow behind the newest snapshot, it is restored
// from that snapshot here, because Raft is told not to restore at start
// (the state machine's own state on disk is normally newer; see fsm's
// package doc).
func openStores(cfg *Config) (*stores, error) {
	for _, d := range []string{fsmDir, walDir, snapshotDir} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("master: %w", err)
		}
	}
	st := &stores{}
	var err error
	st.fsm, err = fsm.Open(filepath.Join(cfg.Dir, fsmDir), vfs.Default, fsm.WithLogger(cfg.Logger.With("component", "pebble")))
	if err != nil {
		return nil, err
	}
	segment := cfg.WALSegmentSize
	if segment == 0 {
		segment = raftwal.DefaultSegmentSize
	}
	// raft-wal's Close leaves its metadata database open (and locked), so
	// the master owns it and closes it after the log.
	st.meta = &metadb.BoltMetaDB{}
	st.wal, err = raftwal.Open(filepath.Join(cfg.Dir, walDir), raftwal.WithMetaStore(st.meta),
		raftwal.WithLogger(newHCLog(cfg.Logger, "raft-wal")), raftwal.WithSegmentSize(segment))
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("master: open raft log: %w", err)
	}
	st.snaps, err = raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, snapshotDir), cfg.SnapshotRetain, newHCLog(cfg.Logger, "raft-snapshots"))
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("master: open snapshot store: %w", err)
	}
	if err := st.reconcile(cfg); err != nil {
		_ = st.close()
		return nil, err
	}
	return st, nil
}

// reconcile restores the newest snapshot into the state machine if the
// state machine needs it.
func (st *stores) reconcile(cfg *Config) error {
	_, err := st.fsm.StatFS()
	incomplete := errors.Is(err, fsm.ErrNeedsRestore)
	if err != nil && !incomplete {
		return err
	}
	metas, err := st.snaps.List()
	if err != nil {
		return fmt.Errorf("master: list snapshots: %w", err)
	}
	if len(metas) == 0 {
		if incomplete {
			return errors.New("master: the state machine holds an incomplete restore and no snapshot is left to finish it; wipe Dir and rejoin the cluster")
		}
		return nil
	}
	if !incomplete && !st.fsmBehind(metas[0].Index) {
		return nil
	}
	meta, rc, err := st.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("master: open snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	cfg.Logger.Warn("restoring the state machine from the newest snapshot", "snapshot", meta.ID, "index", meta.Index,
		"incomplete", incomplete, "applied", st.fsm.AppliedIndex())
	if err := st.fsm.Restore(rc); err != nil {
		return fmt.Errorf("master: restore snapshot %s: %w", meta.ID, err)
	}
	return nil
}

// fsmBehind reports whether the state machine lacks a command at or below
// snapshot index snap. Raft, told not to restore at start, replays only
// the entries after snap, so such a command would be lost. Normally the
// state machine is at or past every snapshot (fsm.Snapshot syncs before
// Raft records one); it can be behind after a crash between Raft saving a
// snapshot received from the leader and the state machine's Restore
// starting. An applied index below snap is fine when everything between
// is a no-op or configuration entry, which the state machine never sees.
func (st *stores) fsmBehind(snap uint64) bool {
	applied := st.fsm.AppliedIndex()
	if applied >= snap {
		return false
	}
	if snap-applied > 1024 {
		return true
	}
	var l raft.Log
	for i := applied + 1; i <= snap; i++ {
		if err := st.wal.GetLog(i, &l); err != nil || l.Type == raft.LogCommand {
			return true
		}
	}
	return false
}

// streamLayer is a raft.StreamLayer over a listener the master bound
// itself, so that Config can pass one in. It also tracks every connection
// it accepted or dialed and closes them all in Close: hashicorp/raft's
// NetworkTransport leaves the goroutines serving accepted connections
// blocked in Read after its own Close, until the peer hangs up.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	// dial is Config.Dial; nil dials TCP.
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newStreamLayer(l net.Listener, advertise net.Addr, dial func(ctx context.Context, addr string) (net.Conn, error)) *streamLayer {
	return &streamLayer{Listener: l, advertise: advertise, dial: dial, conns: map[*trackedConn]struct{}{}}
}

func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	if l.dial != nil {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, timeout)
		}
		c, err = l.dial(ctx, string(address))
		cancel()
	} else {
		d := net.Dialer{Timeout: timeout}
		c, err = d.Dial("tcp", string(address))
	}
	if err != nil {
		return nil, err
	}
	return l.track(c)
}

func (l *streamLayer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.track(c)
}

func (l *streamLayer) track(c net.Conn) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	t := &trackedConn{Conn: c, l: l}
	l.conns[t] = struct{}{}
	return t, nil
}

// Close closes the listener and every tracked connection.
func (l *streamLayer) Close() error {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[*trackedConn]struct{}{}
	l.mu.Unlock()
	err := l.Listener.Close()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

func (l *streamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.Listener.Addr()
}

type trackedConn struct {
	net.Conn
	l *streamLayer
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// raftConfig builds hashicorp/raft's configuration from ours.
func (s *Server) raftConfig(notify chan<- bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.ID)
	rc.HeartbeatTimeout = s.cfg.RaftHeartbeatTimeout
	rc.ElectionTimeout = s.cfg.RaftElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.RaftLeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.RaftCommitTimeout
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.TrailingLogs = s.cfg.TrailingLogs
	// Each entry may carry a whole group-commit batch; 64 of them per
	// AppendEntries is plenty.
	rc.MaxAppendEntries = 64
	// The state machine's state is on disk and newer than any snapshot;
	// see openStores.
	rc.NoSnapshotRestoreOnStart = true
	rc.ShutdownOnRemove = true
	rc.NoLegacyTelemetry = true
	rc.NotifyCh = notify
	rc.Logger = newHCLog(s.cfg.Logger, "raft")
	return rc
}

// bootstrapIfNew writes the initial membership when Dir holds no Raft
// state: Config.Peers, or this master alone; nothing when joining.
func (s *Server) bootstrapIfNew(rc *raft.Config, trans raft.Transport) error {
	has, err := raft.HasExistingState(s.st.wal, s.st.wal, s.st.snaps)
	if err != nil {
		return fmt.Errorf("master: inspect raft state: %w", err)
	}
	if has || s.cfg.Join {
		return nil
	}
	var conf raft.Configuration
	if len(s.cfg.Peers) == 0 {
		conf.Servers = []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr()}}
	}
	for _, p := range s.cfg.Peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	s.log.Info("bootstrapping a new cluster", "members", len(conf.Servers))
	if err := raft.BootstrapCluster(rc, s.st.wal, s.st.wal, s.st.snaps, trans, conf); err != nil {
		return fmt.Errorf("master: bootstrap: %w", err)
	}
	return nil
}
