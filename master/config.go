package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/master/internal/placement"
)

// Clock is where the master reads the time: chunkserver liveness, the times
// it stamps into commands, slice and token expiry. It must be safe for
// concurrent use.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Peer is one member of a fresh cluster's initial Raft membership.
type Peer struct {
	// ID is the master's stable ID (Config.ID on that master).
	ID string
	// RaftAddr is the address the other masters dial for Raft.
	RaftAddr string
}

// ParsePeers reads the --peers flag form "m1=host:port,m2=host:port".
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		id, addr, ok := strings.Cut(f, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("master: peer %q: want ID=raft-address", f)
		}
		out = append(out, Peer{ID: strings.TrimSpace(id), RaftAddr: strings.TrimSpace(addr)})
	}
	return out, nil
}

// Defaults for Config fields left zero.
const (
	DefaultRaftAddr = "127.0.0.1:7001"
	DefaultGRPCAddr = "127.0.0.1:7000"

	// Raft timing. hashicorp/raft's defaults (1 s heartbeat and election
	// timeouts) detect a dead leader after 1–2 s and may need a second
	// randomized election round, which can exceed the 3 s budget for a new
	// leader; 700 ms puts detection at 0.7–1.4 s and an election round at
	// most 1.4 s more, while staying far above loopback and LAN round trips
	// and an fsync.
	DefaultRaftHeartbeatTimeout = 700 * time.Millisecond
	DefaultRaftElectionTimeout  = 700 * time.Millisecond
	// DefaultRaftLeaderLeaseTimeout is how long a leader keeps leading
	// without hearing from a quorum before it steps down. It is only a
	// step-down timer: reads never rely on it (see the package doc).
	DefaultRaftLeaderLeaseTimeout = 350 * time.Millisecond
	DefaultRaftCommitTimeout      = 20 * time.Millisecond
	DefaultSnapshotInterval       = 30 * time.Second
	DefaultSnapshotThreshold      = 16384
	DefaultTrailingLogs           = 10240
	DefaultSnapshotRetain         = 2

	// DefaultMaxBatch bounds the commands one Raft entry carries.
	DefaultMaxBatch = 512
	// DefaultMaxInFlight bounds the group-commit entries proposed and not
	// yet applied; proposals arriving meanwhile wait and form the next
	// batch.
	DefaultMaxInFlight = 2
	// DefaultBatchLinger is the longest a free slot waits for the
	// proposers expected back before proposing the next entry.
	DefaultBatchLinger = 500 * time.Microsecond

	DefaultSliceTTL      = time.Hour
	DefaultTokenTTL      = 10 * time.Minute
	DefaultApplyTimeout  = 10 * time.Second
	DefaultShutdownGrace = 5 * time.Second
	// DefaultClientLease is how long a client's open handles and locks
	// outlive its last KeepAlive.
	DefaultClientLease = 30 * time.Second
)

// Config configures a master. Zero fields take the defaults above (filled
// in by Validate); New calls Validate.
type Config struct {
	// ID names this master in the Raft group; stable across restarts.
	// Required.
	ID string
	// Dir holds the state machine (Pebble), the Raft log and snapshots.
	// Required.
	Dir string

	// RaftAddr is where the Raft transport listens (TCP). RaftAdvertise,
	// if set, is the address other masters dial instead (when RaftAddr is
	// a wildcard). RaftListener, if set, is used instead of listening on
	// RaftAddr (tests and in-process clusters bind ahead of time to learn
	// the port).
	RaftAddr      string
	RaftAdvertise string
	RaftListener  net.Listener
	// GRPCAddr is where clients, chunkservers and operators connect;
	// GRPCAdvertise is the address followers hand out for this master when
	// it leads (default: the bound address). GRPCListener as RaftListener.
	GRPCAddr      string
	GRPCAdvertise string
	GRPCListener  net.Listener
	// HTTPAddr serves /metrics and /healthz; "" with no HTTPListener turns
	// HTTP off.
	HTTPAddr     string
	HTTPListener net.Listener
	// Dial, if set, opens the connections this master makes to the other
	// masters (the Raft transport; the master dials nothing else). Nil
	// dials TCP. In-process clusters (internal/cluster) set it to route
	// Raft traffic through fault-injecting connections that can be paused
	// and partitioned; with the listeners above, it sees every byte the
	// master sends or receives.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// Peers is the initial membership of a fresh cluster: every master of
	// the new cluster is started with the same list, which must include
	// this master. It is ignored once Dir holds Raft state. Empty (and not
	// Join) starts a single-master cluster of this master alone.
	Peers []Peer
	// Join starts a fresh master with no membership, to be added to a
	// running cluster with Admin.AddMaster on the leader.
	Join bool

	// ClusterKey signs the shard tokens chunkservers check; the same key
	// on every master and chunkserver. At least token.MinKeyLen bytes.
	ClusterKey []byte

	// Clock supplies the time; nil means the system clock.
	Clock Clock
	// Logger receives the master's logs (Raft's too); nil means
	// slog.Default().
	Logger *slog.Logger
	// Registerer receives the master's metrics; nil uses a private
	// registry. Gatherer serves /metrics and should match Registerer; nil
	// uses Registerer if it is a Gatherer.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	// HeartbeatInterval is how often chunkservers heartbeat; SuspectAfter
	// and DeadAfter when a silent one is suspect and dead. Zero means the
	// registry's defaults.
	HeartbeatInterval time.Duration
	SuspectAfter      time.Duration
	DeadAfter         time.Duration

	// DefaultLayout, if set ("RS(4,2)", "Replicated(3)", …), is the layout
	// of files under directories without a policy. Empty chooses from the
	// number of live chunkservers (see chooseLayout).
	DefaultLayout string
	// Reserve is the free space placement keeps on every chunkserver.
	// Zero means 1% of capacity.
	Reserve placement.Reserve

	// SliceTTL is how long an allocated slice may stay uncommitted before
	// it becomes garbage; TokenTTL how long write tokens are valid.
	SliceTTL time.Duration
	TokenTTL time.Duration

	// Raft knobs; see the Default constants.
	RaftHeartbeatTimeout   time.Duration
	RaftElectionTimeout    time.Duration
	RaftLeaderLeaseTimeout time.Duration
	RaftCommitTimeout      time.Duration
	SnapshotInterval       time.Duration
	SnapshotThreshold      uint64
	TrailingLogs           uint64
	SnapshotRetain         int
	// WALSegmentSize is the Raft log's segment file size; zero means
	// raft-wal's default (64 MiB).
	WALSegmentSize int

	// MaxBatch, MaxInFlight and BatchLinger tune group commit (see
	// batcher.go). A negative BatchLinger turns lingering off.
	MaxBatch    int
	MaxInFlight int
	BatchLinger time.Duration
	// ApplyTimeout bounds how long a proposal may wait to be enqueued by
	// Raft.
	ApplyTimeout time.Duration
	// ShutdownGrace is how long Run lets in-flight RPCs finish.
	ShutdownGrace time.Duration
	// ClientLease is how long a client's open handles and locks survive
	// without a KeepAlive from it (DefaultClientLease).
	ClientLease time.Duration
	// Repair tunes rebuilding, garbage collection and draining (see
	// RepairConfig).
	Repair RepairConfig
	// Compaction tunes when fragmented chunks are handed to clients to
	// compact (see CompactionConfig).
	Compaction CompactionConfig
}

// Validate fills in defaults and reports what is missing or inconsistent.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("master: config: "+format, args...)) }
	if c.ID == "" {
		bad("ID is required")
	} else if len(c.ID) > 256 || strings.ContainsAny(c.ID, ",= \t\n") {
		bad("ID %q must be at most 256 bytes without commas, '=' or blanks", c.ID)
	}
	if c.Dir == "" {
		bad("Dir is required")
	}
	if len(c.ClusterKey) < token.MinKeyLen {
		bad("ClusterKey is %d bytes, need at least %d", len(c.ClusterKey), token.MinKeyLen)
	}
	if c.RaftAddr == "" && c.RaftListener == nil {
		c.RaftAddr = DefaultRaftAddr
	}
	if c.GRPCAddr == "" && c.GRPCListener == nil {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.Join && len(c.Peers) > 0 {
		bad("Join and Peers exclude each other: a joining master is added by the leader")
	}
	if len(c.Peers) > 0 {
		seen := map[string]bool{}
		self := false
		for _, p := range c.Peers {
			if p.ID == "" || p.RaftAddr == "" {
				bad("peer %+v needs an ID and a Raft address", p)
			}
			if seen[p.ID] {
				bad("peer %q listed twice", p.ID)
			}
			seen[p.ID] = true
			self = self || p.ID == c.ID
		}
		if !self {
			bad("Peers must include this master (%q)", c.ID)
		}
	}
	if c.DefaultLayout != "" {
		if _, err := erasure.ParseLayout(c.DefaultLayout); err != nil {
			bad("DefaultLayout: %v", err)
		}
	}
	if f := c.Reserve.Fraction; !(f >= 0 && f < 1) {
		bad("Reserve.Fraction %v outside [0, 1)", f)
	}
	if c.Reserve == (placement.Reserve{}) {
		c.Reserve.Fraction = placement.DefaultReserveFraction
	}
	for name, d := range map[string]time.Duration{
		"HeartbeatInterval": c.HeartbeatInterval, "SuspectAfter": c.SuspectAfter, "DeadAfter": c.DeadAfter,
		"SliceTTL": c.SliceTTL, "TokenTTL": c.TokenTTL, "RaftHeartbeatTimeout": c.RaftHeartbeatTimeout,
		"RaftElectionTimeout": c.RaftElectionTimeout, "RaftLeaderLeaseTimeout": c.RaftLeaderLeaseTimeout,
		"RaftCommitTimeout": c.RaftCommitTimeout, "SnapshotInterval": c.SnapshotInterval,
		"ApplyTimeout": c.ApplyTimeout, "ShutdownGrace": c.ShutdownGrace,
		"ClientLease": c.ClientLease,
	} {
		if d < 0 {
			bad("%s is negative", name)
		}
	}
	if c.MaxBatch < 0 || c.MaxInFlight < 0 || c.SnapshotRetain < 0 || c.WALSegmentSize < 0 {
		bad("negative MaxBatch, MaxInFlight, SnapshotRetain or WALSegmentSize")
	}
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setDur(&c.SliceTTL, DefaultSliceTTL)
	setDur(&c.TokenTTL, DefaultTokenTTL)
	setDur(&c.RaftHeartbeatTimeout, DefaultRaftHeartbeatTimeout)
	setDur(&c.RaftElectionTimeout, DefaultRaftElectionTimeout)
	setDur(&c.RaftLeaderLeaseTimeout, min(DefaultRaftLeaderLeaseTimeout, c.RaftHeartbeatTimeout))
	setDur(&c.RaftCommitTimeout, DefaultRaftCommitTimeout)
	setDur(&c.SnapshotInterval, DefaultSnapshotInterval)
	setDur(&c.ApplyTimeout, DefaultApplyTimeout)
	setDur(&c.ShutdownGrace, DefaultShutdownGrace)
	setDur(&c.ClientLease, DefaultClientLease)
	setDur(&c.BatchLinger, DefaultBatchLinger)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.RaftLeaderLeaseTimeout > c.RaftHeartbeatTimeout {
		bad("RaftLeaderLeaseTimeout %v exceeds RaftHeartbeatTimeout %v", c.RaftLeaderLeaseTimeout, c.RaftHeartbeatTimeout)
	}
	if c.RaftElectionTimeout < c.RaftHeartbeatTimeout {
		bad("RaftElectionTimeout %v is below RaftHeartbeatTimeout %v", c.RaftElectionTimeout, c.RaftHeartbeatTimeout)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		reg := prometheus.NewRegistry()
		c.Registerer = reg
		if c.Gatherer == nil {
			c.Gatherer = reg
		}
	}
	if c.Gatherer == nil {
		if g, ok := c.Registerer.(prometheus.Gatherer); ok {
			c.Gatherer = g
		} else {
			c.Gatherer = prometheus.NewRegistry()
		}
	}
	return errors.Join(errs...)
}
