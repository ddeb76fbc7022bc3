package masterpb

// This file is hand-written, not generated: limits of the wire protocol
// that the master enforces and clients respect.

// MaxCommitExtents bounds CommitSliceRequest.extents: one commit then
// adds at most as many chunk refs as a 64 MiB buffer holds 4 KiB writes,
// and its Raft entry stays a few hundred KiB.
const MaxCommitExtents = 1 << 14
