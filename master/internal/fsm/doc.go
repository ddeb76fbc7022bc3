// Package fsm is the master's replicated state machine: the namespace
// (inodes, directory entries, symlinks, xattrs), each file's chunk → slice
// lists, pending and garbage slices, the ID counters and the request-ID
// table, all kept in one Pebble database.
//
// # Contract
//
// The package is pure and deterministic: Apply never reads a clock (every
// time comes from the command, stamped by the leader), starts no goroutine,
// touches no network and never panics on its input. Given the same sequence
// of (index, entry) pairs, every replica ends with byte-identical Pebble
// contents and returns identical results, errors included. A command that is
// malformed or invalid is rejected with an *Error and leaves the state as it
// was (only the applied index and the meta record move on).
//
// Apply, Snapshot and Restore are called by one goroutine, the Raft FSM
// goroutine (hashicorp/raft calls them that way). The read methods (Lookup,
// GetAttr, ReadDir, GetLayout, …) may be called from any goroutine at any
// time; each sees the state after some whole applied entry, never part of
// one. Linearizability is the caller's job: a leader serves a read only after
// AppliedIndex has reached its read index (or under a verified lease).
//
// # Wiring to hashicorp/raft
//
// The master's raft.FSM adapter is thin:
//
//	Apply(l *raft.Log)         -> f.Apply(l.Index, l.Data) for LogCommand entries;
//	                              a non-nil error must stop the node
//	Snapshot()                 -> f.Snapshot(), wrapped so that Persist(sink) is
//	                              snap.WriteTo(sink) then sink.Close(), and
//	                              Release() is snap.Close()
//	Restore(rc io.ReadCloser)  -> f.Restore(rc), then rc.Close()
//
// Because the state is on disk, Raft should not restore its last snapshot
// at start-up (raft.Config.NoSnapshotRestoreOnStart): the FSM resumes at
// AppliedIndex and Apply ignores the entries Raft replays at or below it.
// The leader builds entries with EncodeEntry, one command each or a
// group-commit batch, stamping now_unix_nano into every command.
//
// # Durability
//
// Apply commits its Pebble batch without fsync. The Raft log is the durable
// record: after a crash Pebble's WAL recovers a prefix of the applied batches
// (each batch whole or not at all, applied index included), and Raft replays
// the entries after AppliedIndex. For that to hold the Raft log must keep
// every entry after the FSM's durable applied index; Snapshot therefore syncs
// Pebble's WAL before it returns, so once Raft has a snapshot at index N
// (and compacts its log up to N) the FSM's state at N is on disk. Restore
// syncs before it returns for the same reason.
//
// # Key layout
//
// Every key starts with one ASCII byte naming its table; integers are 8-byte
// big-endian so that keys sort numerically, and times are int64 with the
// sign bit flipped so that they sort chronologically.
//
//	M                               Meta: applied index, next inode, next slice, Stats
//	R                               present only while a Restore is incomplete
//	i <inode>                       Inode (attributes, dir parent and layout policy, symlink target)
//	d <parent> <name>               dentry: 8-byte inode + 1-byte FileType
//	x <inode> <name>                xattr value
//	c <inode> <chunk index>         ChunkSlices: the chunk's slice pieces in commit order
//	f <inode> <chunk index>         8-byte change time + 4-byte ref count; a chunk with
//	                                FragmentedRefs refs or more, to compact (compact.go)
//	I <inode>                       a small file's inline bytes, under its slices (inline.go)
//	s <slice>                       Slice, pending or committed
//	e <expiry> <slice>              empty; expiry index of pending slices
//	g <slice>                       Slice in the garbage list (shards to delete)
//	r <uvarint len(client)> <client> <request id>   RequestRecord
//	t <time> <client/request suffix of the r key>   empty; retention index of r
//	m <master ID>                   MasterRecord: a master's gRPC and HTTP addresses
//	h <inode> <handle>              Handle: an open handle and its client
//	H <client> <inode> <handle>     empty; index of a client's handles
//	o <inode>                       empty; an unlinked inode kept while open
//	k <inode>                       FileLocks: the locks held on the inode
//	K <client> <inode>              empty; index of a client's locks
//	D <chunkserver ID>              empty; the chunkserver is being drained (repair.go)
//	C <chunkserver ID>              ChunkserverRecord: the chunkserver directory (repair.go)
//
// Nothing is held in Go memory in proportion to the namespace: lookups are
// point reads; a directory listing is one prefix scan of d <parent>, in byte
// order of names; a file's layout is a scan of c <inode>; expiry and
// request-ID retention are ordered scans from the front of e and t, a
// bounded number of keys per entry.
//
// # Data model
//
// A file's bytes are cut into chunks of ChunkSize bytes. CommitSlice records
// a slice once per chunk it covers, as a ChunkRef that never crosses a chunk
// boundary; within a chunk refs are kept in commit order and readers resolve
// newest-wins. A Slice record counts its refs; when truncation or deletion
// drops the last one the slice moves to the garbage list, which GC reads with
// ListGarbage and empties with an AckGarbage command. CompactChunk replaces
// a fragmented chunk's refs with one slice holding the same bytes.
//
// Directories have nlink 2 + number of subdirectories (the root too); other
// inodes have one link per dentry. When the last link goes the inode, its
// xattrs and its chunks are deleted at once.
//
// An inode whose last link goes while a client holds it open stays as an
// orphan until the last handle is released (handles.go). File locks are
// state too (locks.go), so a leader change keeps them.
//
// TODO(permissions): the state machine does not check permissions; the
// master checks them against the caller's credentials before proposing.
package fsm
