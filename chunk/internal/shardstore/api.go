// Package shardstore keeps a chunkserver's immutable shards and their per-cell
// SHA-256 checksums in Pebble, on an injected vfs.FS.
//
// A shard is written once through a Writer, cell by cell, and becomes visible
// atomically when Commit returns: after a crash, a shard is either whole and
// readable or absent. Writing a shard that exists succeeds only when the new
// bytes are identical (an idempotent retry).
//
// All methods are safe for concurrent use.
//
// Layout of Dir: db/ (Pebble), staging/ (files of open Writers), shards/
// (large shards' cells files), ballast.
//
// # Write paths
//
// Shards shorter than Options.LargeShardThreshold (1 MiB by default) are
// committed with one synced Pebble batch holding the metadata and all cells;
// Pebble shares one WAL sync among concurrent commits. Their bytes are
// written twice (WAL, then a memtable flush), plus compactions.
//
// Larger shards keep their bytes in a plain file of their own, and only
// their metadata and per-cell checksums in Pebble. The cells are appended, as
// they arrive, to a file in Dir/staging (memory stays bounded by a cell),
// and their checksums to a small sstable beside it. Commit syncs both, moves
// the file to Dir/shards under a name no other shard ever had (see fileName)
// and ingests the checksum table together with a one-key sstable holding
// the metadata: the Ingest is the commit point, atomic and synced. A crash
// before it leaves at most a file that no metadata names, which Open
// removes (it also empties Dir/staging). The bytes are written once, and
// read back without Pebble's block cache: reads fetch a file's cells a few
// at a time ahead of the caller, straight into pooled buffers (for
// ReadCellsInto, the caller's).
//
// Stores written before cells files existed hold large shards' bytes in
// ingested sstables ('L' keys holding checksum and bytes, see keys.go);
// those are still read and deleted as before.
//
// # Space
//
// Create reserves the shard's size against Usage().Free. Deleting a large
// shard removes its file and excises its checksums, so the space comes back
// at once (a read still streaming the shard keeps the file until it ends);
// a small shard's range deletion is reclaimed by compactions. A ballast file
// (see Options.BallastSize) keeps a full disk from failing Pebble's own
// writes.
//
// # Failures
//
// Errors wrap this package's sentinels (ErrNotFound, ErrNoSpace, ...) and name
// the operation and the shard, for example
// "shardstore: write shard 17/3: checksum mismatch in cell 4". Storage errors
// that Pebble cannot survive in place (a failed WAL sync: what reached the
// disk is unknown) make the store failed: every later call returns ErrFailed
// until the owner closes it and opens it again, which recovers every
// acknowledged shard (and, possibly, whole shards whose Commit failed), as
// after a crash.
package shardstore

import (
	"errors"
	"strconv"
	"time"
)

// Limits on what Create accepts.
const (
	// MaxCellSize is the largest cell size a shard may have.
	MaxCellSize = 64 << 20
	// MaxShardLength is the largest shard length Create accepts.
	MaxShardLength = 64 << 30
)

// ID names a shard: shard Index of slice Slice. IDs order by (Slice, Index).
type ID struct {
	Slice uint64
	Index uint32
}

// String formats id as "slice/index", the way errors and logs name shards.
func (id ID) String() string {
	return strconv.FormatUint(id.Slice, 10) + "/" + strconv.FormatUint(uint64(id.Index), 10)
}

// Less reports whether id sorts before o: by Slice, then by Index.
func (id ID) Less(o ID) bool {
	return id.Slice < o.Slice || (id.Slice == o.Slice && id.Index < o.Index)
}

// Info describes a stored shard.
type Info struct {
	ID       ID
	Length   uint64 // bytes in the shard
	CellSize uint32 // size of every cell but the last
	Created  time.Time
}

// Cells is the number of cells in the shard.
func (i Info) Cells() uint32 {
	if i.Length == 0 || i.CellSize == 0 {
		return 0
	}
	return uint32((i.Length + uint64(i.CellSize) - 1) / uint64(i.CellSize))
}

// Errors. Callers test with errors.Is; returned errors wrap these and name
// the shard.
var (
	ErrNotFound = errors.New("shard not found")
	// ErrChecksum: a cell's bytes do not match its checksum, on the way in
	// or on the way out (corruption at rest).
	ErrChecksum = errors.New("checksum mismatch")
	// ErrExists: the shard exists with different bytes.
	ErrExists = errors.New("shard exists with different contents")
	// ErrNoSpace: the disk is full (ENOSPC) or the configured capacity is
	// reached.
	ErrNoSpace = errors.New("no space left")
	// ErrInvalid: a malformed request: bad cell size, a cell of the wrong
	// length, too many or too few cells, a read past the end.
	ErrInvalid = errors.New("invalid request")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store closed")
	// ErrCorrupt: stored data is damaged (a malformed record, a missing
	// cell, a failed block checksum inside Pebble).
	ErrCorrupt = errors.New("shard store corrupt")
	// ErrFailed: the store hit a storage error it cannot recover from in
	// place (for example a failed WAL sync: Pebble cannot tell what
	// reached the disk). Every later call fails with it too; the owner
	// must Close the store and Open it again, which recovers exactly the
	// acknowledged state, as after a crash.
	ErrFailed = errors.New("store failed; close and reopen it")
)

// Usage reports the space of a store. Used and Free are estimates from the
// store's files and the space reserved by open Writers.
type Usage struct {
	// Capacity is Options.Capacity, or the file system's size when that
	// is 0, or math.MaxUint64 when neither is known.
	Capacity uint64
	// Used is the store's bytes on disk (Pebble's files, the ballast) plus
	// the space reserved by open Writers.
	Used uint64
	// Free is what Create may still reserve: Capacity-Used, and no more
	// than the file system reports available (less reservations). It is 0
	// while the store is in its disk-full state (see Options.BallastSize).
	Free uint64
	// Shards is the number of committed shards.
	Shards uint64
}
