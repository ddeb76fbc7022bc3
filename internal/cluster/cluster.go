// Package cluster runs a whole Cairn cluster — masters and chunkservers —
// inside one process over loopback, for tests and for `dfs up`.
//
// Start binds every node to a 127.0.0.1 port (chosen by the kernel the
// first time, and recorded in Dir/cluster.json so that a cluster started
// again on the same Dir comes back on the same addresses with its data).
// Each chunkserver runs a heartbeat loop (package chunk/heartbeat) that
// keeps it registered with the master leader. Nodes can be killed and
// restarted individually; Close stops everything and leaves no goroutine
// behind.
//
// Every connection between nodes runs over a fault-injecting network (see
// faults.go): a node can be paused, as if stopped with SIGSTOP (Pause,
// PauseMaster, PauseChunkserver), and the nodes can be split into groups
// that cannot reach each other (Partition, Heal). The daemons take part
// only through their listeners and the Dial hooks of master.Config,
// chunk.Config and heartbeat.Config.
//
// A Cluster's methods are safe for concurrent use.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnfs/cairn/chunk"
	"github.com/cairnfs/cairn/chunk/heartbeat"
	"github.com/cairnfs/cairn/master"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Defaults for Config fields left zero.
const (
	DefaultHeartbeatInterval = 500 * time.Millisecond
	// DefaultFullReportInterval is how often chunkservers resend their
	// shard inventory (it keeps shard counts in Status current).
	DefaultFullReportInterval = 10 * time.Second
	// stateFile records the nodes' addresses under Config.Dir.
	stateFile = "cluster.json"
)

// Config configures an in-process cluster.
type Config struct {
	// Dir holds every node's data (Dir/masters/mN, Dir/chunkservers/csN)
	// and the address record. Required. Reusing a Dir restarts the same
	// cluster; Masters must then match what it was created with.
	Dir string
	// Masters is 1 or 3 (default 1).
	Masters int
	// Chunkservers is how many chunkservers to run (default 6).
	Chunkservers int
	// ClusterKey signs shard tokens; at least 16 bytes. Default: a fixed
	// development key (an in-process cluster is not a security boundary).
	ClusterKey []byte
	// HeartbeatInterval is the chunkservers' heartbeat period, which the
	// masters hand out. Default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// HeartbeatCallTimeout bounds each of the chunkservers' calls to a
	// master (zero: heartbeat.DefaultCallTimeout). A hung (paused) master
	// leader holds its chunkservers that long before they look for the
	// new one; tests of a paused leader set it short.
	HeartbeatCallTimeout time.Duration
	// FullReportInterval is how often chunkservers send full shard
	// reports. Default DefaultFullReportInterval; negative: only at
	// registration and when the master asks.
	FullReportInterval time.Duration
	// ChunkserverCapacity, if not zero, caps each chunkserver's store.
	ChunkserverCapacity uint64
	// DefaultLayout is the masters' default layout ("" chooses by the
	// number of live chunkservers).
	DefaultLayout string
	// DeadAfter is the masters' dead-server grace: how long a silent
	// chunkserver waits before its shards are rebuilt elsewhere (zero:
	// the master default). Tests of repair set it short.
	DeadAfter time.Duration
	// ClientLease is how long the masters keep a silent client's open
	// handles and locks (zero: the master default). Tests of lock
	// recovery set it short.
	ClientLease time.Duration
	// Repair tunes the masters' rebuilding, garbage collection and
	// draining. PerServer left zero is 1 here, not the master's default:
	// every chunkserver of a local cluster shares the one machine's
	// cores, and more rebuilds at once than cores only thrash its caches
	// (seven servers rebuilding four shards each rebuilt at a third of
	// the rate of one each).
	Repair master.RepairConfig
	// Compaction tunes when the masters hand fragmented chunks to clients
	// to compact.
	Compaction master.CompactionConfig
	// ScrubBytesPerSecond turns the chunkservers' scrubbers on at that
	// pace (0: off); ScrubInterval is the pause between passes.
	ScrubBytesPerSecond uint64
	ScrubInterval       time.Duration
	// Logger receives every node's logs; nil discards them.
	Logger *slog.Logger
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("cluster: config: Dir is required")
	}
	if c.Masters == 0 {
		c.Masters = 1
	}
	if c.Masters != 1 && c.Masters != 3 && c.Masters != 5 {
		return fmt.Errorf("cluster: config: Masters is %d, want 1, 3 or 5", c.Masters)
	}
	if c.Chunkservers == 0 {
		c.Chunkservers = 6
	}
	if c.Chunkservers < 0 {
		return fmt.Errorf("cluster: config: Chunkservers %d is negative", c.Chunkservers)
	}
	if c.ClusterKey == nil {
		c.ClusterKey = []byte("cairn-local-development-cluster-key")
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.FullReportInterval == 0 {
		c.FullReportInterval = DefaultFullReportInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Repair.PerServer == 0 {
		c.Repair.PerServer = 1
	}
	return nil
}

// addrs is the persisted address record.
type addrs struct {
	Masters      []masterAddrs `json:"masters"`
	Chunkservers []string      `json:"chunkservers"`
}

type masterAddrs struct {
	Raft string `json:"raft"`
	GRPC string `json:"grpc"`
}

// Cluster is a running in-process cluster. Create one with Start and
// stop it with Close.
type Cluster struct {
	cfg   Config
	addrs addrs

	// net carries every connection of the nodes; its state has its own
	// lock, taken after mu.
	net *network

	mu      sync.Mutex
	masters []*masterNode
	chunks  []*chunkNode
	closed  bool
}

type masterNode struct {
	id     string
	node   Node
	srv    *master.Server // nil while stopped
	cancel context.CancelFunc
	done   chan error
}

type chunkNode struct {
	id     string
	node   Node
	srv    *chunk.Server // nil while stopped
	cancel context.CancelFunc
	done   chan error // Run's result
	hbDone chan struct{}
}

// Start creates (or, on a used Dir, restarts) the cluster and starts every
// node. It returns once every node is serving; use WaitReady to wait for a
// leader and for the chunkservers to be registered. ctx bounds only the
// start; Close stops the cluster.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{cfg: cfg}
	fresh, err := c.loadAddrs()
	if err != nil {
		return nil, err
	}
	// Bind every listener first, so the masters know each other's
	// addresses before any starts.
	type mlis struct{ raft, grpc net.Listener }
	ml := make([]mlis, cfg.Masters)
	var cl []net.Listener
	closeAll := func() {
		for _, l := range ml {
			if l.raft != nil {
				l.raft.Close()
			}
			if l.grpc != nil {
				l.grpc.Close()
			}
		}
		for _, l := range cl {
			l.Close()
		}
	}
	for i := range cfg.Masters {
		want := masterAddrs{Raft: "127.0.0.1:0", GRPC: "127.0.0.1:0"}
		if i < len(c.addrs.Masters) {
			want = c.addrs.Masters[i]
		}
		if ml[i].raft, err = listen(ctx, want.Raft); err == nil {
			ml[i].grpc, err = listen(ctx, want.GRPC)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("cluster: master m%d: %w", i+1, err)
		}
		if i >= len(c.addrs.Masters) {
			c.addrs.Masters = append(c.addrs.Masters, masterAddrs{Raft: ml[i].raft.Addr().String(), GRPC: ml[i].grpc.Addr().String()})
		}
	}
	for i := range cfg.Chunkservers {
		want := "127.0.0.1:0"
		if i < len(c.addrs.Chunkservers) {
			want = c.addrs.Chunkservers[i]
		}
		l, err := listen(ctx, want)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("cluster: chunkserver cs%d: %w", i+1, err)
		}
		cl = append(cl, l)
		if i >= len(c.addrs.Chunkservers) {
			c.addrs.Chunkservers = append(c.addrs.Chunkservers, l.Addr().String())
		}
	}
	if err := c.saveAddrs(); err != nil {
		closeAll()
		return nil, err
	}
	var peers []master.Peer
	if cfg.Masters > 1 && fresh {
		for i, a := range c.addrs.Masters {
			peers = append(peers, master.Peer{ID: masterID(i), RaftAddr: a.Raft})
		}
	}
	c.net = newNetwork(cfg.Masters, cfg.Chunkservers)
	for i, a := range c.addrs.Masters {
		c.net.setAddr(a.Raft, Master(i))
		c.net.setAddr(a.GRPC, Master(i))
	}
	for i, a := range c.addrs.Chunkservers {
		c.net.setAddr(a, Chunkserver(i))
	}
	for i := range cfg.Masters {
		c.masters = append(c.masters, &masterNode{id: masterID(i), node: Master(i)})
	}
	for i := range cfg.Chunkservers {
		c.chunks = append(c.chunks, &chunkNode{id: chunkID(i), node: Chunkserver(i)})
	}
	for i, nd := range c.masters {
		if err := c.startMaster(nd, ml[i].raft, ml[i].grpc, peers); err != nil {
			ml[i] = mlis{}
			closeAll()
			c.Close()
			return nil, err
		}
		ml[i] = mlis{}
	}
	for i, nd := range c.chunks {
		l := cl[i]
		cl[i] = nil
		if err := c.startChunk(nd, l); err != nil {
			for _, l := range cl {
				if l != nil {
					l.Close()
				}
			}
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func masterID(i int) string { return fmt.Sprintf("m%d", i+1) }

func chunkID(i int) string { return fmt.Sprintf("cs%d", i+1) }

// loadAddrs reads the address record; fresh reports that there was none.
func (c *Cluster) loadAddrs() (fresh bool, err error) {
	b, err := os.ReadFile(filepath.Join(c.cfg.Dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster: %w", err)
	}
	if err := json.Unmarshal(b, &c.addrs); err != nil {
		return false, fmt.Errorf("cluster: read %s: %w", stateFile, err)
	}
	if len(c.addrs.Masters) != c.cfg.Masters {
		return false, fmt.Errorf("cluster: %s was created with %d masters, not %d", c.cfg.Dir, len(c.addrs.Masters), c.cfg.Masters)
	}
	return false, nil
}

func (c *Cluster) saveAddrs() error {
	b, err := json.MarshalIndent(c.addrs, "", "  ")
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	tmp := filepath.Join(c.cfg.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.cfg.Dir, stateFile)); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// listen binds addr, retrying for a few seconds while a just-closed
// listener's port is still held by the kernel.
func listen(ctx context.Context, addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) startMaster(nd *masterNode, rl, gl net.Listener, peers []master.Peer) error {
	srv, err := master.New(master.Config{
		ID:                nd.id,
		Dir:               filepath.Join(c.cfg.Dir, "masters", nd.id),
		RaftListener:      c.net.listen(nd.node, rl),
		GRPCListener:      c.net.listen(nd.node, gl),
		Dial:              c.net.dialer(nd.node),
		Peers:             peers,
		ClusterKey:        c.cfg.ClusterKey,
		Logger:            c.cfg.Logger.With("node", nd.id),
		HeartbeatInterval: c.cfg.HeartbeatInterval,
		DeadAfter:         c.cfg.DeadAfter,
		SuspectAfter:      c.cfg.DeadAfter / 2,
		Repair:            c.cfg.Repair,
		Compaction:        c.cfg.Compaction,
		DefaultLayout:     c.cfg.DefaultLayout,
		ClientLease:       c.cfg.ClientLease,
	})
	if err != nil {
		rl.Close()
		gl.Close()
		return fmt.Errorf("cluster: start master %s: %w", nd.id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.srv, nd.cancel, nd.done = srv, cancel, make(chan error, 1)
	go func() { nd.done <- srv.Run(ctx) }()
	return nil
}

func (c *Cluster) startChunk(nd *chunkNode, l net.Listener) error {
	corrupt := heartbeat.NewCorruptQueue()
	srv, err := chunk.New(chunk.Config{
		ID:                  nd.id,
		Listener:            c.net.listen(nd.node, l),
		Dial:                c.net.dialer(nd.node),
		Dir:                 filepath.Join(c.cfg.Dir, "chunkservers", nd.id),
		Capacity:            c.cfg.ChunkserverCapacity,
		ClusterKey:          c.cfg.ClusterKey,
		ShutdownGrace:       2 * time.Second,
		ScrubBytesPerSecond: c.cfg.ScrubBytesPerSecond,
		ScrubInterval:       c.cfg.ScrubInterval,
		OnCorrupt:           corrupt.Add,
		Logger:              c.cfg.Logger.With("node", nd.id),
	})
	if err != nil {
		l.Close()
		return fmt.Errorf("cluster: start chunkserver %s: %w", nd.id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.srv, nd.cancel, nd.done, nd.hbDone = srv, cancel, make(chan error, 1), make(chan struct{})
	go func() { nd.done <- srv.Run(ctx) }()
	go func() {
		defer close(nd.hbDone)
		_ = heartbeat.Run(ctx, heartbeat.Config{
			Masters:            c.MasterAddrs(),
			Node:               srv,
			Interval:           c.cfg.HeartbeatInterval,
			CallTimeout:        c.cfg.HeartbeatCallTimeout,
			FullReportInterval: c.cfg.FullReportInterval,
			Corrupt:            corrupt,
			Logger:             c.cfg.Logger.With("node", nd.id),
			Dial:               c.net.dialer(nd.node),
		})
	}()
	return nil
}

// MasterAddrs returns every master's gRPC address, whether running or not.
func (c *Cluster) MasterAddrs() []string {
	out := make([]string, len(c.addrs.Masters))
	for i, a := range c.addrs.Masters {
		out[i] = a.GRPC
	}
	return out
}

// MasterInfo describes one master of the cluster.
type MasterInfo struct {
	ID       string
	Addr     string // gRPC
	RaftAddr string
	Running  bool
	Paused   bool
	// Leader reports that the master leads and is ready to serve (as
	// Leader does); AppliedIndex is the last Raft index its state machine
	// applied (0 while stopped). Tests compare them to see a master that
	// was paused or partitioned rejoin and catch up.
	Leader       bool
	AppliedIndex uint64
}

// Masters describes every master, running or not.
func (c *Cluster) Masters() []MasterInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]MasterInfo, len(c.masters))
	for i, nd := range c.masters {
		a := c.addrs.Masters[i]
		out[i] = MasterInfo{ID: nd.id, Addr: a.GRPC, RaftAddr: a.Raft, Running: nd.srv != nil, Paused: c.net.paused(nd.node)}
		if nd.srv != nil {
			out[i].Leader = nd.srv.IsLeader()
			out[i].AppliedIndex = nd.srv.AppliedIndex()
		}
	}
	return out
}

// ChunkserverInfo describes one chunkserver of the cluster.
type ChunkserverInfo struct {
	ID      string
	Addr    string
	Running bool
	Paused  bool
}

// Chunkservers describes every chunkserver, running or not.
func (c *Cluster) Chunkservers() []ChunkserverInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ChunkserverInfo, len(c.chunks))
	for i, nd := range c.chunks {
		out[i] = ChunkserverInfo{ID: nd.id, Addr: c.addrs.Chunkservers[i], Running: nd.srv != nil, Paused: c.net.paused(nd.node)}
	}
	return out
}

// ChunkserverDir returns chunkserver i's (0-based) data directory, where
// its Pebble store and its shards directory (large shards' cells files,
// "<slice>-<index>-<gen>.cells") live. Tests use it to damage stored data;
// the directory exists whether the chunkserver runs or not.
func (c *Cluster) ChunkserverDir(i int) string {
	return filepath.Join(c.cfg.Dir, "chunkservers", fmt.Sprintf("cs%d", i+1))
}

// Leader returns the index of the master that leads and is ready, or -1.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.masters {
		if nd.srv != nil && nd.srv.IsLeader() {
			return i
		}
	}
	return -1
}

// KillChunkserver stops chunkserver i (0-based) and its heartbeats. Its
// data stays in Dir for RestartChunkserver. A paused chunkserver is
// resumed with its connections reset first (see Pause).
func (c *Cluster) KillChunkserver(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.chunks) {
		return fmt.Errorf("cluster: no chunkserver %d", i)
	}
	c.unpause(c.chunks[i].node)
	return stopChunk(c.chunks[i])
}

// unpause resets a paused node's connections and resumes it, so that it
// can shut down.
func (c *Cluster) unpause(node Node) {
	if c.net.paused(node) {
		c.net.reset(node)
	}
}

func stopChunk(nd *chunkNode) error {
	if nd.srv == nil {
		return nil
	}
	nd.cancel()
	<-nd.hbDone
	err := <-nd.done
	nd.srv = nil
	if err != nil {
		return fmt.Errorf("cluster: chunkserver %s: %w", nd.id, err)
	}
	return nil
}

// RestartChunkserver starts a killed chunkserver i again on its data and
// address.
func (c *Cluster) RestartChunkserver(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.chunks) {
		return fmt.Errorf("cluster: no chunkserver %d", i)
	}
	if c.closed {
		return errors.New("cluster: closed")
	}
	nd := c.chunks[i]
	if nd.srv != nil {
		return fmt.Errorf("cluster: chunkserver %s is running", nd.id)
	}
	l, err := listen(ctx, c.addrs.Chunkservers[i])
	if err != nil {
		return fmt.Errorf("cluster: restart chunkserver %s: %w", nd.id, err)
	}
	return c.startChunk(nd, l)
}

// KillMaster stops master i (0-based); its data stays for RestartMaster.
// A paused master is resumed with its connections reset first (see
// Pause).
func (c *Cluster) KillMaster(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.masters) {
		return fmt.Errorf("cluster: no master %d", i)
	}
	c.unpause(c.masters[i].node)
	return stopMaster(c.masters[i])
}

func stopMaster(nd *masterNode) error {
	if nd.srv == nil {
		return nil
	}
	nd.cancel()
	err := <-nd.done
	nd.srv = nil
	if err != nil {
		return fmt.Errorf("cluster: master %s: %w", nd.id, err)
	}
	return nil
}

// RestartMaster starts a killed master i again on its data and addresses.
func (c *Cluster) RestartMaster(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.masters) {
		return fmt.Errorf("cluster: no master %d", i)
	}
	if c.closed {
		return errors.New("cluster: closed")
	}
	nd := c.masters[i]
	if nd.srv != nil {
		return fmt.Errorf("cluster: master %s is running", nd.id)
	}
	a := c.addrs.Masters[i]
	rl, err := listen(ctx, a.Raft)
	if err != nil {
		return fmt.Errorf("cluster: restart master %s: %w", nd.id, err)
	}
	gl, err := listen(ctx, a.GRPC)
	if err != nil {
		rl.Close()
		return fmt.Errorf("cluster: restart master %s: %w", nd.id, err)
	}
	return c.startMaster(nd, rl, gl, nil)
}

// WaitReady waits until a master leads and every running chunkserver is
// registered with it and live, or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	conns := map[string]*grpc.ClientConn{}
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	var last error
	for {
		if err := c.ready(ctx, conns); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) ready(ctx context.Context, conns map[string]*grpc.ClientConn) error {
	i := c.Leader()
	if i < 0 {
		return errors.New("no leader")
	}
	addr := c.addrs.Masters[i].GRPC
	cc, ok := conns[addr]
	if !ok {
		var err error
		if cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return err
		}
		conns[addr] = cc
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := masterpb.NewMasterClient(cc).Status(cctx, &masterpb.StatusRequest{})
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, cs := range st.Chunkservers {
		live[cs.Id] = cs.State == "live"
	}
	for _, cs := range c.Chunkservers() {
		if cs.Running && !live[cs.ID] {
			return fmt.Errorf("chunkserver %s not live", cs.ID)
		}
	}
	return nil
}

// Close stops every node, chunkservers first, and waits for them. It
// returns the first error a node's Run reported. Close is idempotent. It
// heals any partition and resets and resumes paused nodes first, so that
// every node can shut down.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.net != nil {
		c.net.partition(nil)
		for node := range c.net.nodes {
			c.unpause(node)
		}
	}
	var errs []error
	for _, nd := range c.chunks {
		errs = append(errs, stopChunk(nd))
	}
	for _, nd := range c.masters {
		errs = append(errs, stopMaster(nd))
	}
	return errors.Join(errs...)
}
