package shardstore

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults for the tuning knobs of Options. The numbers come from the
// measurements recorded in bench_test.go.
const (
	// DefaultLargeShardThreshold: shards at least this long get a cells
	// file of their own (written to disk once); shorter
	// ones go through a synced Pebble batch (WAL, then a memtable flush:
	// written twice, but concurrent commits share one fsync).
	DefaultLargeShardThreshold = 1 << 20
	// DefaultCacheSize is Pebble's block cache. Cells are read once per
	// client read, so the cache mostly holds index and metadata blocks.
	DefaultCacheSize = 64 << 20
	// DefaultMemTableSize: small shards accumulate in memtables of this
	// size before a flush writes them to an sstable.
	DefaultMemTableSize = 64 << 20
	// DefaultBallastSize is the ballast file kept in Dir (see
	// Options.BallastSize); it is also capped at Capacity/32.
	DefaultBallastSize = 64 << 20
	// DefaultDeleteFlushDelay: a memtable holding a small shard's range
	// deletion is flushed at most this long after the delete, so that
	// compactions can reclaim the space.
	DefaultDeleteFlushDelay = 30 * time.Second
)

// Options configure Open. The zero value of every tuning field means its
// default.
type Options struct {
	// Dir is the directory on FS holding the store. Open creates it.
	// Pebble lives in Dir/db, Writers stage large shards in Dir/staging,
	// committed large shards' bytes are in Dir/shards, and Dir/ballast is
	// the ballast file.
	Dir string
	// FS is the file system; nil means vfs.Default (the real disk).
	FS vfs.FS
	// Capacity is the number of bytes the store may use; 0 means the file
	// system's size (free + used, from statfs via FS.GetDiskUsage).
	Capacity uint64
	// Logger receives the store's and Pebble's log lines; nil discards.
	Logger *slog.Logger
	// Now is the clock stamped into Info.Created; nil means time.Now.
	Now func() time.Time

	// LargeShardThreshold is the shard length from which a shard's bytes
	// go to a cells file of their own instead of through a batch. 0 means
	// DefaultLargeShardThreshold; at most 64 MiB.
	LargeShardThreshold uint64
	// CacheSize is Pebble's block cache size; 0 means DefaultCacheSize.
	CacheSize int64
	// MemTableSize is Pebble's memtable size; 0 means
	// DefaultMemTableSize.
	MemTableSize uint64
	// BallastSize is the size of a file the store keeps in Dir and deletes
	// the moment the file system reports ENOSPC to Pebble, so that
	// Pebble's own writes (WAL, flushes, MANIFEST) still find room and a
	// full disk never turns into a failed store. While the ballast is
	// gone the store is "disk full": Create fails with ErrNoSpace until
	// deletes free enough space to put the ballast back. 0 means
	// DefaultBallastSize, capped at Capacity/32; negative means no
	// ballast (ENOSPC is still detected, but Pebble's writes are only
	// retried once).
	BallastSize int64
	// DeleteFlushDelay bounds how long a small shard's range deletion
	// waits in a memtable; 0 means DefaultDeleteFlushDelay.
	DeleteFlushDelay time.Duration
	// BufferedCells writes large shards' cells through the page cache
	// instead of with O_DIRECT (direct.go), for file systems where
	// direct I/O misbehaves and for comparing the two.
	BufferedCells bool
}

// Validate reports whether o can be used by Open, after defaults.
func (o *Options) Validate() error {
	if o.Dir == "" {
		return errors.New("shardstore: Options.Dir is empty")
	}
	if o.LargeShardThreshold > 64<<20 {
		return fmt.Errorf("shardstore: Options.LargeShardThreshold %d is above 64 MiB", o.LargeShardThreshold)
	}
	if o.CacheSize < 0 {
		return fmt.Errorf("shardstore: Options.CacheSize %d is negative", o.CacheSize)
	}
	if o.MemTableSize > 1<<30 {
		return fmt.Errorf("shardstore: Options.MemTableSize %d is above 1 GiB", o.MemTableSize)
	}
	if o.DeleteFlushDelay < 0 {
		return fmt.Errorf("shardstore: Options.DeleteFlushDelay %v is negative", o.DeleteFlushDelay)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LargeShardThreshold == 0 {
		o.LargeShardThreshold = DefaultLargeShardThreshold
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.DeleteFlushDelay == 0 {
		o.DeleteFlushDelay = DefaultDeleteFlushDelay
	}
}

// formatVersion is pinned (Pebble's advice) so that a newer Pebble does not
// silently ratchet the on-disk format. It has virtual sstables (needed by
// Excise) and the v6 table format.
const formatVersion = pebble.FormatTableFormatV6

// Block sizes. Large cells make their own blocks (a block holds at least one
// KV), so a 1 MiB cell is read with one 1 MiB read; the target size only
// matters for runs of small cells and for metadata, where 32 KiB keeps the
// index small without reading much more than needed.
const (
	blockSize = 32 << 10
	// blockSizeThreshold (percent) is low so that a block holding a few
	// small KVs is closed rather than glued to a following huge cell.
	blockSizeThreshold = 1
)

// pebbleOptions translates o into Pebble's options. fs is the FS Pebble
// uses (o.FS wrapped for disk-full handling).
func (o *Options) pebbleOptions(fs vfs.FS, logger pebble.Logger) *pebble.Options {
	po := &pebble.Options{
		FS:                    fs,
		Logger:                logger,
		CacheSize:             o.CacheSize,
		MemTableSize:          o.MemTableSize,
		FormatMajorVersion:    formatVersion,
		FlushDelayDeleteRange: o.DeleteFlushDelay,
		// Shard data is random-looking (erasure-coded, often already
		// compressed or encrypted): compression would burn CPU for
		// nothing.
	}
	// Pebble's default reaction to a corrupt block is Logger.Fatalf. For a
	// chunkserver a corrupt shard is an expected event with a remedy (the
	// read fails with ErrCorrupt, the scrubber reports it, the master
	// rebuilds it elsewhere), not a reason to stop serving every other
	// shard.
	po.EventListener = &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			logger.Errorf("shardstore: %s", info)
		},
	}
	po.TargetFileSizes[0] = 16 << 20
	for i := range po.Levels {
		po.Levels[i].BlockSize = blockSize
		po.Levels[i].BlockSizeThreshold = blockSizeThreshold
		po.Levels[i].IndexBlockSize = 256 << 10
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	po.EnsureDefaults()
	return po
}
