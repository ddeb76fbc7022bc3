package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/cairnfs/cairn/client"
)

// Defaults for ServerConfig fields left zero.
const (
	DefaultShutdownGrace  = 10 * time.Second
	DefaultMaxHeaderBytes = 64 << 10
	DefaultDialTimeout    = 30 * time.Second
)

// ServerConfig configures a Server: an S3 endpoint with its own client.
type ServerConfig struct {
	// ListenAddr is the HTTP address to serve on, unless Listener is set.
	ListenAddr string
	// Listener, if set, is served instead of listening on ListenAddr.
	Listener net.Listener
	// Client configures the connection to the cluster (Masters at least).
	Client client.ClientConfig
	// Handler configures the S3 API (credentials, region).
	Handler Config
	// MaxHeaderBytes bounds a request's headers; larger ones are refused
	// with 431 (DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// ShutdownGrace is how long Run waits for requests in flight once its
	// context ends (DefaultShutdownGrace).
	ShutdownGrace time.Duration
}

// Validate checks c and fills in defaults.
func (c *ServerConfig) Validate() error {
	if c.ListenAddr == "" && c.Listener == nil {
		return errors.New("s3: no listen address")
	}
	if len(c.Client.Masters) == 0 {
		return errors.New("s3: no master addresses")
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	return c.Handler.Validate()
}

// Server is an S3 gateway process: a Handler served over HTTP on a client
// it dials itself.
type Server struct {
	cfg ServerConfig
	ln  net.Listener
}

// NewServer validates cfg and binds the listener, so that Addr is known
// before Run.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return nil, fmt.Errorf("s3: listen: %w", err)
		}
	}
	return &Server{cfg: cfg, ln: ln}, nil
}

// Addr is the address the Server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run connects to the cluster and serves until ctx ends, then lets the
// requests in flight finish (within ShutdownGrace) and closes the client.
// It returns nil after a shutdown caused by ctx.
func (s *Server) Run(ctx context.Context) error {
	defer s.ln.Close()
	dctx, cancel := context.WithTimeout(ctx, DefaultDialTimeout)
	ccfg := s.cfg.Client
	ccfg.NoSymlinks = true // keys stay inside their buckets
	cl, err := client.Dial(dctx, ccfg)
	cancel()
	if err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	defer cl.Close()
	h, err := NewHandler(cl, s.cfg.Handler)
	if err != nil {
		return err
	}
	if ttl := h.cfg.StagingTTL; ttl > 0 {
		sctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.sweep(sctx, min(sweepEvery, ttl/4))
		}()
		defer func() {
			stop()
			<-done
		}()
	}
	return Serve(ctx, s.ln, h, s.cfg.MaxHeaderBytes, s.cfg.ShutdownGrace)
}

// Serve serves h on ln until ctx ends, then shuts down within grace. It
// is what Run does with its own client; `dfs up` calls it with the
// client it already has. It returns nil after a shutdown caused by ctx.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, maxHeaderBytes int, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("s3: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close() // cut what did not finish in time
	}
	<-errc
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3: shutdown: %w", err)
	}
	return nil
}
