// Package client is the Go API every Cairn front end uses. This part of it
// is the data path: moving a file's bytes between the caller and the
// chunkservers, with the master consulted only for metadata.
//
// # Pieces
//
//   - Metadata is the handful of master RPCs the data path needs. A
//     masterpb.MasterClient satisfies it directly; tests use an in-memory
//     fake.
//   - ConnPool holds one gRPC connection per chunkserver address, with the
//     shard codec that moves cells through pooled buffers.
//   - DataPath ties them together with the configuration, one erasure.Coder
//     per layout, buffer pools and a background reporter of bad shards.
//     Writers and Readers are opened from it.
//   - Writer buffers a file's writes into slices, each within one logical
//     chunk, and uploads a slice when it is full or flushed: AllocateSlice,
//     one WriteShard stream per shard, all in parallel, parity encoded and
//     cells hashed row by row while earlier rows are on the wire, then
//     CommitSlice with the shards that acknowledged.
//   - Reader resolves a file's committed slices (newest wins, holes read as
//     zeros), reads the data cells it needs in parallel, verifies every
//     cell's SHA-256 and, when a shard is missing, slow, failing or corrupt,
//     reads other shards and rebuilds the rows (a degraded read), reporting
//     the bad shard to the master. Sequential reads are served from
//     read-ahead windows.
//
// # Why a slice is uploaded only when complete
//
// A chunkserver needs each shard's exact length in the WriteShard header,
// and a shard's length follows from the slice's length (erasure.Layout.
// ShardLength). So a Writer cannot open streams while the caller may still
// append: it buffers up to Config.WriteBuffer bytes (or to the end of the
// chunk), and only then is the slice's length known. The whole slice stays
// in the buffer until it is committed, which is also what lets a shard whose
// chunkserver fails mid-stream be resent to a substitute.
//
// # Consistency
//
// Bytes written become visible to readers when their slice is committed:
// at Flush or Close, or when the buffer fills. A Reader sees the layout it
// fetched when opened (or last refreshed): close-to-open, as DESIGN.md
// promises.
package client
