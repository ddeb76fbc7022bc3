// Package erasure is Cairn's pure data-layout layer: named layouts, the
// stripe and cell arithmetic that clients and chunkservers must agree on,
// Reed-Solomon encoding and reconstruction, and per-cell SHA-256 checksums.
// It does no I/O, keeps no package state, starts no goroutine that outlives
// a call, and imports nothing else from Cairn.
//
// # Layouts
//
// A Layout is RS(k, m) — k data shards, m parity shards, 1 ≤ m ≤ k,
// k+m ≤ 32 — or Replicated(n), n full copies, plus a cell size (1 MiB by
// default). Its text form, "RS(6,3)", "Replicated(3)", "RS(4,2)/4KiB", is
// what String writes and ParseLayout reads. Named constants cover common
// schemes (EC6P3 is RS(6,3), Rep3 is Replicated(3)).
//
// # Stripe arithmetic
//
// For a slice of L bytes stored as RS(k, m) with cell size C:
//
//   - The slice is cut into cells of C bytes, the last one possibly shorter:
//     cell c holds slice bytes [c*C, min((c+1)*C, L)).
//   - Cell c goes to data shard c % k, at stripe row r = c / k, at offset
//     r*C within that shard. A data shard is therefore its cells back to
//     back, and every cell but a shard's last is exactly C bytes. A stripe
//     row holds k*C slice bytes (StripeRow); there are ceil(L / (k*C)) rows.
//   - Parity shard j (shard k+j) holds at offset r*C the j-th parity of row
//     r's data cells. In the last row, if partial, absent or short data
//     cells count as zeros for encoding, and the row's parity is as long as
//     its longest cell, which is its first (data shard 0's).
//   - A shard's length is the bytes it actually holds (ShardLength): for a
//     data shard the sum of its cells' real lengths; for every parity shard
//     the length of data shard 0. Nothing is padded on disk.
//   - Byte off of the slice is in cell off / C, row off / (k*C), data shard
//     (off / C) % k, at shard offset (off / (k*C))*C + off % C (Locate).
//     Extents turns a byte range into the per-cell shard pieces to read.
//
// A chunkserver needs only the cell size to checksum a shard: its cells are
// C bytes each but the last (AppendCells), matching the cells above.
//
// Replicated(n) is the same arithmetic with k = 1 and copies for parity:
// every shard holds the whole slice, shard offset equals slice offset, and
// a stripe row is one cell. DataShards is 1 and ParityShards n-1.
//
// Invalid input to the arithmetic never panics: Extents returns an error,
// and the functions without one return 0 (or -1 fields from Locate).
//
// # Coding
//
// A Coder (NewCoder) wraps one reedsolomon.Encoder per layout and is safe
// for concurrent use. A writer fills one stripe row of pooled cell buffers,
// calls EncodeRow, then ChecksumCells on all k+m cells; a degraded reader
// verifies cells, drops the bad ones, and calls ReconstructRowData;
// repair calls ReconstructSlice on whole shards. Split and Join are the
// whole-slice conveniences. When more shards are missing than the layout
// tolerates, every reconstruction returns a *TooFewShardsError that names
// them (errors.Is(err, ErrTooFewShards)).
//
// # Checksums
//
// Every cell, data or parity, carries the SHA-256 of its real bytes
// (Checksum, Verify, ChecksumCells), computed with minio/sha256-simd, which
// uses the SHA extensions (SHA-NI) where the CPU has them. Verification
// failures wrap ErrChecksum.
//
// # Benchmarks
//
// Run
//
//	go test -run '^$' -bench . -benchtime 20x ./erasure/
//
// BenchmarkRow/RS(4,2)/wrapper and BenchmarkRow/RS(6,3)/wrapper encode one
// stripe row of 1 MiB cells and checksum all k+m cells through this
// package (Coder.EncodeRow, ChecksumCells); the …/direct variants do the
// same work on the same buffers by calling reedsolomon.New(k, m).Encode and
// sha256.Sum256 in a loop, the baseline the wrapper must stay within 90%
// of (compare MB/s; SetBytes counts the row's data bytes). …/wrapper-seq
// hashes sequentially, isolating the cost of the wrapper itself from the
// gain of parallel hashing. Measured on a shared 2-core AMD EPYC (median of
// six runs): RS(4,2) wrapper 1812 MB/s, wrapper-seq 1106 MB/s, direct
// 1083 MB/s; RS(6,3) 1815, 1105 and 1085 MB/s — the wrapper at about 167%
// of direct, 102% without parallel hashing. Hashing is about 97% of the
// work, so the ratio mostly measures the free cores.
//
// BenchmarkEncodeOptions compares reedsolomon options for encoding alone:
// its default, WithAutoGoroutines(CellSize()), and one goroutine. On the
// 2-core AMD EPYC (AVX-512, GFNI) all three encoded a row of 1 MiB cells
// at 40–55 GB/s, about 2% of the time hashing the row takes, and one
// goroutine was as fast as the others out of cache too, so NewCoder uses
// WithMaxGoroutines(1) and leaves the cores to hashing and to concurrent
// streams. Options that change the matrix (WithCauchyMatrix,
// WithFastOneParityMatrix) change the stored format and are not candidates.
//
// BenchmarkChecksumCells compares sequential hashing with ChecksumCells on
// one RS(6,3) row of 4 KiB, 64 KiB and 1 MiB cells. On that machine
// SHA-NI hashes about 1.7 GB/s per core; two goroutines reach about
// 3 GB/s for 1 MiB cells, but gained nothing for a row of 32 KiB cells, so
// ChecksumCells stays sequential below 512 KiB per batch. sha256-simd's AVX-512 multi-buffer server
// (NewAvx512Server) managed about 0.9 GB/s for six concurrent 1 MiB cells,
// half of sequential SHA-NI, and runs a goroutine that can never be
// stopped, so it is not used.
//
// BenchmarkDegradedRow rebuilds two lost data cells of an RS(6,3) row.
package erasure
