// Package chunk is the chunkserver: it stores immutable, checksummed shards
// (see chunk/internal/shardstore) and serves them over gRPC
// (proto/chunkpb). Writes need a token minted by the master with the cluster
// key; every cell's checksum is verified before a write is acknowledged, and
// a write is acknowledged only once the whole shard is durable. A scrubber
// re-verifies stored cells in the background at a configured rate, and
// ReconstructShard rebuilds a lost shard here from surviving ones on other
// chunkservers when the master orders a repair (reconstruct.go).
//
// A Server is a library first: New binds its listeners and opens the store,
// Run serves until its context is cancelled, then shuts down gracefully.
package chunk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cairnfs/cairn/internal/profiling"
	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// Server is one chunkserver.
type Server struct {
	cfg      Config
	store    *shardstore.Store
	lis      net.Listener
	httpLis  net.Listener
	grpc     *grpc.Server
	svc      *service
	draining chan struct{}
	metrics  *metrics

	runOnce sync.Once
	closed  chan struct{}
}

// New opens the store and binds the listeners; nothing is served until Run.
// If Run is never called, Close releases what New acquired.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	signer, err := token.NewSigner(cfg.ClusterKey)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("chunk: registering metrics: %w", err)
	}
	store, err := shardstore.Open(shardstore.Options{
		Dir:      cfg.Dir,
		FS:       cfg.FS,
		Capacity: cfg.Capacity,
		Logger:   cfg.Logger.With("component", "shardstore"),
		Now:      cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("chunk: opening store in %s: %w", cfg.Dir, err)
	}
	s := &Server{cfg: cfg, store: store, metrics: m, draining: make(chan struct{}), closed: make(chan struct{})}
	if err := s.registerStoreGauges(); err != nil {
		store.Close()
		return nil, err
	}
	s.lis = cfg.Listener
	if s.lis == nil {
		if s.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			store.Close()
			return nil, fmt.Errorf("chunk: listen on %s: %w", cfg.ListenAddr, err)
		}
	}
	if cfg.HTTPAddr != "" {
		if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			s.lis.Close()
			store.Close()
			return nil, fmt.Errorf("chunk: listen on %s: %w", cfg.HTTPAddr, err)
		}
	}
	codec := shardcodec.New()
	s.svc = &service{store: store, codec: codec, signer: signer, metrics: m, peers: newPeerPool(codec, cfg.Dial), now: cfg.Now, draining: s.draining}
	s.grpc = grpc.NewServer(
		grpc.ForceServerCodecV2(codec),
		// A message carries one cell plus a little framing.
		grpc.MaxRecvMsgSize(MaxCellSize+64<<10),
		grpc.MaxSendMsgSize(MaxCellSize+64<<10),
		// The transport's frame buffers come from the codec's pool,
		// which does not clear them on every use as gRPC's default pool
		// does (a memset per 16 KiB frame on the hot path).
		experimental.BufferPool(codec.BufferPool()),
		// 1 MiB socket buffers: a cell is one write (or read) system
		// call instead of 32 of gRPC's default 32 KiB.
		grpc.WriteBufferSize(1<<20),
		grpc.ReadBufferSize(1<<20),
		// Windows like the client's (client/pool.go): a write stream
		// keeps a few cells in flight instead of waiting on round trips.
		grpc.InitialWindowSize(4<<20),
		grpc.InitialConnWindowSize(16<<20),
	)
	chunkpb.RegisterChunkServer(s.grpc, s.svc)
	return s, nil
}

func (s *Server) registerStoreGauges() error {
	labels := prometheus.Labels{"chunkserver": s.cfg.ID}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "chunk", Name: "capacity_bytes",
			Help: "Bytes the store may hold.", ConstLabels: labels}, func() float64 { return float64(s.store.Usage().Capacity) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "chunk", Name: "used_bytes",
			Help: "Bytes the store holds.", ConstLabels: labels}, func() float64 { return float64(s.store.Usage().Used) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "chunk", Name: "free_bytes",
			Help: "Bytes the store may still take.", ConstLabels: labels}, func() float64 { return float64(s.store.Usage().Free) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "chunk", Name: "shards",
			Help: "Shards stored.", ConstLabels: labels}, func() float64 { return float64(s.store.Usage().Shards) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "cairn", Subsystem: "chunk", Name: "disk_bytes_written_total",
			Help: "Bytes the store wrote to disk (for write amplification).", ConstLabels: labels}, func() float64 { return float64(s.store.DiskBytesWritten()) }),
	}
	for _, g := range gauges {
		if err := s.cfg.Registerer.Register(g); err != nil {
			return fmt.Errorf("chunk: registering metrics: %w", err)
		}
	}
	return nil
}

// Addr is the gRPC address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// HTTPAddr is the metrics address, or "" when disabled.
func (s *Server) HTTPAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// ID is the chunkserver's ID.
func (s *Server) ID() string { return s.cfg.ID }

// Usage reports the store's capacity and use, for heartbeats.
func (s *Server) Usage() (capacity, free, shards uint64) {
	u := s.store.Usage()
	return u.Capacity, u.Free, u.Shards
}

// Run serves until ctx is cancelled or serving fails, then shuts down: it
// stops taking new streams, lets in-flight ones finish for up to
// Config.ShutdownGrace, aborts the rest (their shards are discarded, never
// half-written), stops the scrubber and closes the store. Run may be called
// once; the Server cannot be restarted (open a new one on the same Dir).
func (s *Server) Run(ctx context.Context) error {
	err := errors.New("chunk: Run called twice")
	s.runOnce.Do(func() { err = s.run(ctx) })
	return err
}

func (s *Server) run(ctx context.Context) error {
	defer close(s.closed)
	log := s.cfg.Logger
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.grpc.Serve(s.lis); err != nil {
			errc <- fmt.Errorf("chunk: serving gRPC: %w", err)
		}
	}()
	var httpSrv *http.Server
	if s.httpLis != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		profiling.Register(mux)
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("chunk: serving HTTP: %w", err)
			}
		}()
	}
	if s.cfg.ScrubBytesPerSecond > 0 {
		sc := &scrubber{store: s.store, rate: s.cfg.ScrubBytesPerSecond, interval: s.cfg.ScrubInterval,
			onCorrupt: s.cfg.OnCorrupt, metrics: s.metrics, log: log}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc.run(ctx)
		}()
	}
	log.Info("chunkserver serving", "id", s.cfg.ID, "addr", s.Addr(), "http", s.HTTPAddr(), "dir", s.cfg.Dir)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	close(s.draining)
	cancel()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.cfg.ShutdownGrace):
		log.Warn("chunkserver: aborting streams still open after the grace period", "grace", s.cfg.ShutdownGrace)
		s.grpc.Stop()
		<-stopped
	}
	s.svc.peers.close()
	if httpSrv != nil {
		httpSrv.Close()
	}
	wg.Wait()
	if err := s.store.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("chunk: closing store: %w", err)
	}
	log.Info("chunkserver stopped", "id", s.cfg.ID)
	return runErr
}

// Close releases a Server whose Run was never called, and makes a later Run
// fail. If Run was called, Close waits for it to return (cancel its context
// first); Run closes everything itself.
func (s *Server) Close() error {
	ran := true
	s.runOnce.Do(func() { ran = false })
	if ran {
		<-s.closed
		return nil
	}
	close(s.closed)
	s.lis.Close()
	if s.httpLis != nil {
		s.httpLis.Close()
	}
	s.grpc.Stop()
	s.svc.peers.close()
	return s.store.Close()
}
