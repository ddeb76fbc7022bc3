package client

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// Defaults for Config fields left zero.
const (
	// DefaultChunkSize is the logical chunk size of Cairn files (the
	// master's); a slice never crosses a chunk boundary.
	DefaultChunkSize = 64 << 20
	// DefaultWriteBuffer bounds the data a Writer buffers: one slice.
	DefaultWriteBuffer = 64 << 20
	// DefaultPipelineRows is how many stripe rows an upload keeps in flight
	// per shard stream while the next rows are encoded and hashed.
	DefaultPipelineRows = 4
	// DefaultReadAhead is the size of one read-ahead window; a Reader keeps
	// two, three while it moves from one to the next.
	DefaultReadAhead = 16 << 20
	// DefaultShardReadTimeout bounds one ReadShard call; a shard that takes
	// longer is treated as failed and the read turns degraded.
	DefaultShardReadTimeout = 30 * time.Second
	// DefaultShardStallTimeout is how long a shard stream may go without
	// delivering a cell before the read stops waiting for it and rebuilds
	// its cells from other shards.
	DefaultShardStallTimeout = 3 * time.Second
	// DefaultSliceWriteTimeout bounds one pass of a slice's shard streams.
	DefaultSliceWriteTimeout = 5 * time.Minute
	// DefaultReplaceRounds is how many times an upload asks the master for
	// substitutes for failed shards before settling for what it has.
	DefaultReplaceRounds = 2
	// DefaultInlineMax is the largest file a Writer stores inline, in
	// the namespace, instead of as a slice on chunkservers (the master's
	// own limit).
	DefaultInlineMax = 16 << 10
	// DefaultIdleBuffers bounds the bytes of idle pooled buffers a DataPath
	// keeps for reuse.
	DefaultIdleBuffers = 256 << 20
)

// Config configures a DataPath. Zero fields take the defaults above;
// Validate fills them in and reports impossible values.
type Config struct {
	// ClientID goes into every mutation's RequestHeader.
	ClientID string
	// ChunkSize is the logical chunk size; it must equal the master's
	// (only tests change it).
	ChunkSize int64
	// WriteBuffer bounds the file bytes one Writer buffers, and so the
	// largest slice it writes. Memory per open Writer is WriteBuffer plus
	// parity for PipelineRows rows (m × PipelineRows cells).
	WriteBuffer int64
	// PipelineRows is the depth of the per-shard send queues during an
	// upload.
	PipelineRows int
	// ReadAhead is the read-ahead window size; negative disables
	// read-ahead. A Reader holds at most two windows.
	ReadAhead int64
	// ShardReadTimeout bounds one ReadShard call.
	ShardReadTimeout time.Duration
	// ShardStallTimeout bounds the wait for each cell of a ReadShard
	// stream (and for its first answer): a slow or hung chunkserver turns
	// the read degraded instead of holding it up.
	ShardStallTimeout time.Duration
	// SliceWriteTimeout bounds one pass of shard streams of one slice.
	SliceWriteTimeout time.Duration
	// ReplaceRounds is how many rounds of substitutes an upload asks for;
	// negative means none.
	ReplaceRounds int
	// IdleBuffers bounds the pooled idle buffer bytes.
	IdleBuffers int64
	// InlineMax is the largest file a Writer stores inline
	// (DefaultInlineMax): a flush of bytes all below InlineMax goes to the
	// master in one commit, replicated by Raft, instead of to m+1
	// chunkservers. Negative disables inline writes.
	InlineMax int64
	// LayoutCache is how many files' layouts are cached
	// (DefaultLayoutCache); negative disables the cache.
	LayoutCache int
	// DialOptions are added to the chunkserver connections' options
	// (interceptors, credentials).
	DialOptions []grpc.DialOption
	// Logger receives the data path's logs; nil discards them.
	Logger *slog.Logger
	// Now stamps commits' mtimes; nil means time.Now.
	Now func() time.Time
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.ChunkSize < 0 {
		errs = append(errs, fmt.Errorf("client: config: ChunkSize %d is negative", c.ChunkSize))
	}
	if c.WriteBuffer == 0 {
		c.WriteBuffer = DefaultWriteBuffer
	}
	if c.WriteBuffer < 0 || c.WriteBuffer > 1<<30 {
		errs = append(errs, fmt.Errorf("client: config: WriteBuffer %d outside 1..1GiB", c.WriteBuffer))
	}
	if c.PipelineRows == 0 {
		c.PipelineRows = DefaultPipelineRows
	}
	if c.PipelineRows < 0 {
		errs = append(errs, fmt.Errorf("client: config: PipelineRows %d is negative", c.PipelineRows))
	}
	if c.ReadAhead == 0 {
		c.ReadAhead = DefaultReadAhead
	}
	if c.ReadAhead > 1<<30 {
		errs = append(errs, fmt.Errorf("client: config: ReadAhead %d exceeds 1GiB", c.ReadAhead))
	}
	if c.ShardReadTimeout <= 0 {
		c.ShardReadTimeout = DefaultShardReadTimeout
	}
	if c.LayoutCache == 0 {
		c.LayoutCache = DefaultLayoutCache
	}
	if c.ShardStallTimeout <= 0 {
		c.ShardStallTimeout = DefaultShardStallTimeout
	}
	if c.SliceWriteTimeout <= 0 {
		c.SliceWriteTimeout = DefaultSliceWriteTimeout
	}
	if c.ReplaceRounds == 0 {
		c.ReplaceRounds = DefaultReplaceRounds
	}
	if c.InlineMax == 0 {
		c.InlineMax = DefaultInlineMax
	}
	if c.IdleBuffers <= 0 {
		c.IdleBuffers = DefaultIdleBuffers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return errors.Join(errs...)
}
