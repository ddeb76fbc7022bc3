package client

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"

	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// ErrClosed is returned by operations on a closed ConnPool, DataPath,
// Writer or Reader.
var ErrClosed = errors.New("client: closed")

// ConnPool holds one gRPC connection per chunkserver address, all sharing
// one shard codec (so decoded cells come from one buffer pool). It is safe
// for concurrent use. Connections are made lazily on first use and live
// until Close; gRPC reconnects them by itself after a chunkserver restart.
type ConnPool struct {
	codec *shardcodec.Codec
	opts  []grpc.DialOption

	mu struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

// NewConnPool returns an empty pool. opts are appended to the pool's own
// dial options (insecure transport, the shard codec, message limits for
// cells up to 16 MiB), so callers may add interceptors or credentials.
func NewConnPool(opts ...grpc.DialOption) *ConnPool {
	p := &ConnPool{codec: shardcodec.New()}
	p.opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodecV2(p.codec),
			grpc.MaxCallRecvMsgSize(maxCellSize+64<<10),
			grpc.MaxCallSendMsgSize(maxCellSize+64<<10),
		),
		// Windows larger than gRPC's 64 KiB default let a stream keep a few
		// cells in flight, so one shard stream is not limited by round trips.
		grpc.WithInitialWindowSize(4 << 20),
		grpc.WithInitialConnWindowSize(16 << 20),
		// As on the chunkserver (chunk/server.go): 1 MiB socket buffers
		// make a cell one write or read system call instead of 32, and
		// the transport's frame buffers come from the codec's pool,
		// which skips the memset gRPC's default pool does on every use.
		grpc.WithWriteBufferSize(1 << 20),
		grpc.WithReadBufferSize(1 << 20),
		experimental.WithBufferPool(p.codec.BufferPool()),
	}, opts...)
	p.mu.conns = make(map[string]*grpc.ClientConn)
	return p
}

// Chunk returns a client for the chunkserver at addr, creating its
// connection if needed. The client stays valid until the pool is closed.
func (p *ConnPool) Chunk(addr string) (chunkpb.ChunkClient, error) {
	if addr == "" {
		return nil, errors.New("client: chunkserver has no address")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, ErrClosed
	}
	cc, ok := p.mu.conns[addr]
	if !ok {
		var err error
		if cc, err = grpc.NewClient(addr, p.opts...); err != nil {
			return nil, fmt.Errorf("client: connect to chunkserver %s: %w", addr, err)
		}
		p.mu.conns[addr] = cc
	}
	return chunkpb.NewChunkClient(cc), nil
}

// release returns a Data buffer decoded from a ReadShard stream to the
// codec's pool.
func (p *ConnPool) release(b []byte) { p.codec.Release(b) }

// Close closes every connection; streams still open on them fail. It is
// idempotent and returns the first error from closing a connection.
func (p *ConnPool) Close() error {
	p.mu.Lock()
	conns := p.mu.conns
	p.mu.conns, p.mu.closed = nil, true
	p.mu.Unlock()
	var first error
	for addr, cc := range conns {
		if err := cc.Close(); err != nil && first == nil {
			first = fmt.Errorf("client: close connection to %s: %w", addr, err)
		}
	}
	return first
}
