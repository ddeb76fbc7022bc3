package chunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// Defaults for Config fields left zero.
const (
	DefaultScrubInterval = 24 * time.Hour
	DefaultShutdownGrace = 10 * time.Second
	DefaultListBatch     = 1000
	// MaxCellSize bounds the cell size a writer may use, and so the largest
	// gRPC message a chunkserver accepts.
	MaxCellSize = 16 << 20
)

// Config configures a chunkserver. The zero value of every optional field
// picks a sensible default; Validate reports what is missing or wrong.
type Config struct {
	// ID names the chunkserver in the cluster; stable across restarts.
	ID string
	// ListenAddr is the gRPC address ("127.0.0.1:0" picks a port).
	ListenAddr string
	// Listener, if set, is used instead of listening on ListenAddr (tests,
	// socket activation).
	Listener net.Listener
	// Dial, if set, opens the connections this chunkserver makes to other
	// chunkservers (the sources of a rebuild); nil dials TCP. In-process
	// clusters (internal/cluster) set it to route that traffic through
	// fault-injecting connections that can be paused and partitioned.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// HTTPAddr serves /metrics and /healthz; empty disables it.
	HTTPAddr string
	// Dir holds the shard store.
	Dir string
	// FS is the file system under Dir; nil means the real disk.
	FS vfs.FS
	// Capacity is the most bytes the store may hold; 0 means what statfs
	// reports for Dir.
	Capacity uint64
	// Rack names the failure domain, for placement.
	Rack string
	// ClusterKey verifies the master's write and delete tokens.
	ClusterKey []byte
	// ScrubBytesPerSecond paces the scrubber; 0 disables scrubbing.
	ScrubBytesPerSecond uint64
	// ScrubInterval is the pause between the end of one full scrub pass and
	// the start of the next.
	ScrubInterval time.Duration
	// OnCorrupt, if set, is called by the scrubber with shards whose stored
	// bytes no longer match their checksums. It must not block for long.
	OnCorrupt func([]*chunkpb.ShardID)
	// ShutdownGrace is how long Run waits for in-flight streams to finish
	// once its context is cancelled before aborting them.
	ShutdownGrace time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil uses a private registry
	// (served on HTTPAddr all the same).
	Registerer prometheus.Registerer
	// Gatherer serves /metrics; it should match Registerer. Nil with a nil
	// Registerer means the private registry.
	Gatherer prometheus.Gatherer
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("chunk: config: ID is required"))
	}
	if c.ListenAddr == "" && c.Listener == nil {
		errs = append(errs, errors.New("chunk: config: ListenAddr is required"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("chunk: config: Dir is required"))
	}
	if len(c.ClusterKey) < token.MinKeyLen {
		errs = append(errs, fmt.Errorf("chunk: config: ClusterKey must be at least %d bytes", token.MinKeyLen))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.ScrubInterval <= 0 {
		c.ScrubInterval = DefaultScrubInterval
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		reg := prometheus.NewRegistry()
		c.Registerer, c.Gatherer = reg, reg
	}
	if c.Gatherer == nil {
		if g, ok := c.Registerer.(prometheus.Gatherer); ok {
			c.Gatherer = g
		} else {
			c.Gatherer = prometheus.NewRegistry()
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
