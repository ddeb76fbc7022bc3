// Package master is Cairn's metadata master: a Raft group (hashicorp/raft,
// log in raft-wal) replicating the state machine of master/internal/fsm,
// serving the Master, Registry and Admin gRPC services of proto/masterpb,
// and /metrics and /healthz over HTTP.
//
// # Lifecycle
//
// New validates the Config, opens the state machine, the Raft log and the
// snapshot store in Config.Dir and binds the listeners (so Addr and
// RaftAddr are known at once); Run starts Raft and serves until its context
// ends, then stops every goroutine it started and closes everything New
// opened. If Run is never called, Close releases what New acquired.
//
// # Leader, followers and routing
//
// Only the leader serves the Master and Registry services (Status
// excepted) and Admin. A follower answers with the NotLeader status of
// masterpb.NotLeaderError: code Unavailable with an ErrorDetail whose
// leader_address is the leader's gRPC address (empty while no leader is
// known). Clients resend the same request, with the same request ID, to
// that address; the state machine applies a request ID once. Followers do
// not forward.
//
// Followers learn the leader's gRPC address from the master directory in
// the replicated state: each master records its own addresses as the first
// entry of every term it leads (the "ready" entry, see leader.go).
//
// # Writes and reads
//
// Mutations become fsm commands, group-committed through Raft (batcher.go)
// with the time stamped by the leader from Config.Clock. Reads are
// linearizable without clock-based leases (readindex.go).
//
// # Errors
//
// Every error is a gRPC status; failures with a POSIX meaning carry
// masterpb.ErrorDetail{errno}, and the errno → code mapping is
// masterpb.CodeForErrno, shared with clients.
//
// # Permissions
//
// The master checks basic POSIX permissions against the request header's
// uid, gid and groups before proposing a mutation (see permissions.go); uid
// 0 bypasses them. The credentials are asserted by the client, not
// authenticated: these checks give POSIX semantics to honest clients (the
// S3 gateway, the CLI), not security. Reads (lookup, readdir, getattr) are
// not checked here; the FUSE mount relies on the kernel's
// default_permissions for those.
package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/internal/profiling"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/master/internal/registry"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Server is one master. Create it with New, then call Run once.
type Server struct {
	cfg    Config
	regCfg registry.Config
	log    *slog.Logger
	signer *token.Signer

	st   *stores
	fsm  *fsm.FSM
	rfsm *raftFSM

	raftLis, grpcLis, httpLis net.Listener
	grpcAdvertise             string
	raftAdvertise             string
	grpc                      *grpc.Server
	metrics                   *metrics

	// raft and batch are set by Run before it starts any goroutine that
	// uses them; raftPtr is for readers that may run earlier (metrics).
	raft    *raft.Raft
	raftPtr atomic.Pointer[raft.Raft]
	batch   *batcher
	reads   *readIndex
	// leases are the client session deadlines (service_sessions.go).
	leases leases

	// reg is the chunkserver registry of the current leadership epoch.
	reg atomic.Pointer[registry.Registry]
	// repair rebuilds, collects and drains while this master leads.
	repair *repairer
	// compact holds the chunks handed out for compaction (compaction.go).
	compact compactClaims

	// stopping is closed when shutdown begins: waits give up.
	stopping chan struct{}
	// wg tracks the goroutines Run starts.
	wg sync.WaitGroup

	mu struct {
		sync.Mutex
		lead leadership
		// fatal is the first error that requires the master to stop.
		fatal error
		rng   *rand.Rand
	}
	// fatalCh is closed by fail; removedCh when Raft shut itself down
	// (this master was removed from the group).
	fatalCh   chan struct{}
	removedCh chan struct{}
	fatalOnce sync.Once

	runOnce  sync.Once
	ran      atomic.Bool
	closeErr error
}

// New validates cfg, opens the stores in cfg.Dir and binds the listeners.
// Nothing is served until Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	regCfg := registry.Config{
		HeartbeatInterval: cfg.HeartbeatInterval,
		SuspectAfter:      cfg.SuspectAfter,
		DeadAfter:         cfg.DeadAfter,
		Clock:             cfg.Clock,
	}
	if err := regCfg.Validate(); err != nil {
		return nil, fmt.Errorf("master: config: %w", err)
	}
	signer, err := token.NewSigner(cfg.ClusterKey)
	if err != nil {
		return nil, fmt.Errorf("master: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		regCfg:    regCfg,
		log:       cfg.Logger.With("master", cfg.ID),
		signer:    signer,
		stopping:  make(chan struct{}),
		fatalCh:   make(chan struct{}),
		removedCh: make(chan struct{}),
	}
	s.mu.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(len(cfg.ID))))
	s.mu.lead = leadership{ready: make(chan struct{}), ended: make(chan struct{})}
	reg, _ := registry.New(regCfg)
	s.reg.Store(reg)
	s.repair = newRepairer(s)

	ok := false
	defer func() {
		if !ok {
			_ = s.release()
		}
	}()
	if s.st, err = openStores(&s.cfg); err != nil {
		return nil, err
	}
	s.fsm = s.st.fsm
	if s.raftLis, err = listen(cfg.RaftListener, cfg.RaftAddr, "raft"); err != nil {
		return nil, err
	}
	if s.grpcLis, err = listen(cfg.GRPCListener, cfg.GRPCAddr, "gRPC"); err != nil {
		return nil, err
	}
	if cfg.HTTPListener != nil || cfg.HTTPAddr != "" {
		if s.httpLis, err = listen(cfg.HTTPListener, cfg.HTTPAddr, "HTTP"); err != nil {
			return nil, err
		}
	}
	s.raftAdvertise = cfg.RaftAdvertise
	if s.raftAdvertise == "" {
		s.raftAdvertise = s.raftLis.Addr().String()
	}
	s.grpcAdvertise = cfg.GRPCAdvertise
	if s.grpcAdvertise == "" {
		s.grpcAdvertise = s.grpcLis.Addr().String()
	}
	if s.metrics, err = newMetrics(s); err != nil {
		return nil, err
	}
	s.rfsm = newRaftFSM(s.fsm, func(d time.Duration) { s.metrics.applySeconds.Observe(seconds(d)) }, s.fail)
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(32<<20),
		// Serve streams on a fixed pool of goroutines rather than one new
		// goroutine per call: cheaper for the many small metadata calls.
		grpc.NumStreamWorkers(uint32(4*runtime.GOMAXPROCS(0))),
		grpc.ChainUnaryInterceptor(s.metrics.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.metrics.streamInterceptor),
	)
	masterpb.RegisterMasterServer(s.grpc, &masterService{s: s})
	masterpb.RegisterRegistryServer(s.grpc, &registryService{s: s})
	masterpb.RegisterAdminServer(s.grpc, &adminService{s: s})
	ok = true
	return s, nil
}

func listen(l net.Listener, addr, what string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("master: %s listener on %s: %w", what, addr, err)
	}
	return l, nil
}

// ID returns the master's ID.
func (s *Server) ID() string { return s.cfg.ID }

// Addr returns the gRPC address clients should use: GRPCAdvertise, or the
// bound address.
func (s *Server) Addr() string { return s.grpcAdvertise }

// RaftAddr returns the Raft transport address other masters dial.
func (s *Server) RaftAddr() string { return s.raftAdvertise }

// HTTPAddr returns the /metrics address, or "" when HTTP is off.
func (s *Server) HTTPAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// IsLeader reports whether this master leads and is ready to serve.
func (s *Server) IsLeader() bool {
	lead := s.leadership()
	if !lead.leader {
		return false
	}
	select {
	case <-lead.ready:
		return true
	default:
		return false
	}
}

// AppliedIndex returns the highest Raft log index this master's state
// machine has processed.
func (s *Server) AppliedIndex() uint64 { return s.rfsm.lastIndex() }

func (s *Server) raftNode() *raft.Raft { return s.raftPtr.Load() }

func (s *Server) registry() *registry.Registry { return s.reg.Load() }

func (s *Server) now() time.Time { return s.cfg.Clock.Now() }

// fail records an error that requires the master to stop (a state
// machine that cannot apply) and makes Run return it.
func (s *Server) fail(err error) {
	s.fatalOnce.Do(func() {
		s.mu.Lock()
		s.mu.fatal = err
		s.mu.Unlock()
		s.log.Error("master must stop", "err", err)
		close(s.fatalCh)
	})
}

// Run starts Raft and serves until ctx ends or a fatal error occurs, then
// shuts down: it stops accepting RPCs, gives in-flight ones up to
// Config.ShutdownGrace, shuts Raft down and closes the stores. It returns
// nil after a shutdown asked for by ctx. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	err := errors.New("master: Run called twice")
	s.runOnce.Do(func() {
		s.ran.Store(true)
		err = s.run(ctx)
	})
	return err
}

func (s *Server) run(ctx context.Context) (err error) {
	defer func() {
		if rerr := s.release(); err == nil {
			err = rerr
		}
	}()
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  newStreamLayer(s.raftLis, tcpAddr(s.raftAdvertise), s.cfg.Dial),
		MaxPool: 4,
		Timeout: 10 * time.Second,
		Logger:  newHCLog(s.cfg.Logger, "raft-net"),
	})
	s.raftLis = nil // the transport owns it now
	defer func() {
		trans.CloseStreams()
		_ = trans.Close()
	}()

	notify := make(chan bool, 16)
	rc := s.raftConfig(notify)
	if err := s.bootstrapIfNew(rc, trans); err != nil {
		return err
	}
	r, err := raft.NewRaft(rc, s.rfsm, s.st.wal, s.st.wal, s.st.snaps, trans)
	if err != nil {
		return fmt.Errorf("master: start raft: %w", err)
	}
	s.raft = r
	s.raftPtr.Store(r)
	s.batch = newBatcher(r, s.cfg.MaxBatch, s.cfg.MaxInFlight, s.cfg.BatchLinger, s.cfg.ApplyTimeout, func(n int, d time.Duration) {
		s.metrics.batchSize.Observe(float64(n))
		s.metrics.commitSeconds.Observe(seconds(d))
	})
	s.reads = newReadIndex(s)

	// Goroutines stopped by cancelling work: the batcher, the read-index
	// rounds, leader start-up.
	work, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	// The leadership watcher must outlive Raft (Raft blocks on notify).
	watchStop := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		s.watchLeadership(work, notify, watchStop)
	}()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.batch.run(work)
	}()
	go func() {
		defer s.wg.Done()
		s.reads.run(work)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.expireLeases(work)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.repair.run(work)
	}()

	serveErr := make(chan error, 2)
	var serveWG sync.WaitGroup
	serveWG.Add(1)
	go func() {
		defer serveWG.Done()
		if err := s.grpc.Serve(s.grpcLis); err != nil {
			serveErr <- fmt.Errorf("master: serve gRPC: %w", err)
		}
	}()
	var httpSrv *http.Server
	if s.httpLis != nil {
		httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		serveWG.Add(1)
		go func() {
			defer serveWG.Done()
			if err := httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("master: serve HTTP: %w", err)
			}
		}()
	}
	s.log.Info("master serving", "grpc", s.Addr(), "raft", s.RaftAddr(), "http", s.HTTPAddr(), "dir", s.cfg.Dir)

	var runErr error
	select {
	case <-ctx.Done():
	case <-s.removedCh:
		s.log.Warn("raft has shut down: this master was removed from the cluster; stopping")
	case <-s.fatalCh:
		s.mu.Lock()
		runErr = s.mu.fatal
		s.mu.Unlock()
	case runErr = <-serveErr:
	}

	// Shutdown: refuse new work, let RPCs finish, then stop Raft.
	close(s.stopping)
	cancelWork()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.cfg.ShutdownGrace):
		s.grpc.Stop()
		<-stopped
	}
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	serveWG.Wait()
	// Let the entries in flight finish while Raft runs (see waitIdle):
	// they commit and apply, or fail once leadership is lost (at most
	// the leader lease) or Raft gives up enqueueing them (ApplyTimeout).
	<-s.batch.done
	if !s.batch.waitIdle(s.cfg.ApplyTimeout + s.cfg.RaftLeaderLeaseTimeout + time.Second) {
		s.log.Error("proposals still unanswered at shutdown")
	}
	if err := r.Shutdown().Error(); err != nil && runErr == nil {
		runErr = fmt.Errorf("master: raft shutdown: %w", err)
	}
	close(watchStop)
	watchWG.Wait()
	s.wg.Wait()
	if !s.batch.waitIdle(time.Second) {
		// Only entries Raft dropped at shutdown without an answer; their
		// waiter goroutines stay blocked. Logged, not hung on.
		s.log.Error("raft left proposals unanswered at shutdown")
	}
	s.log.Info("master stopped")
	return runErr
}

// Close releases what New acquired when Run was never called; after Run
// it does nothing.
func (s *Server) Close() error {
	if s.ran.Load() {
		return nil
	}
	var err error
	s.runOnce.Do(func() {
		s.ran.Store(true)
		err = s.release()
	})
	return err
}

// release unregisters the metrics and closes listeners and stores.
func (s *Server) release() error {
	if s.metrics != nil {
		s.metrics.unregister(s.cfg.Registerer)
	}
	var errs []error
	for _, l := range []net.Listener{s.raftLis, s.grpcLis, s.httpLis} {
		if l != nil {
			_ = l.Close()
		}
	}
	if s.st != nil {
		errs = append(errs, s.st.close())
	}
	return errors.Join(errs...)
}

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}

// httpHandler serves /metrics, /healthz and Go's profiles under
// /debug/pprof/. /healthz answers 200 while the master runs and knows a
// leader (itself or another), 503 otherwise, with the master's role in the
// body.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	profiling.Register(mux)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		r := s.raftNode()
		if r == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		addr, _ := r.LeaderWithID()
		if addr == "" {
			http.Error(w, fmt.Sprintf("%s: no leader known", r.State()), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s term %d applied %d\n", r.State(), r.CurrentTerm(), s.AppliedIndex())
	})
	return mux
}
