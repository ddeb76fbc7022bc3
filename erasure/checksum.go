package erasure

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	sha256 "github.com/minio/sha256-simd"
)

// ChecksumSize is the size of a cell checksum: one SHA-256 digest.
const ChecksumSize = sha256.Size

// Checksum returns the SHA-256 of data, the checksum stored with every
// cell. It uses the CPU's SHA extensions where present (sha256-simd picks
// them at start-up).
func Checksum(data []byte) [ChecksumSize]byte { return sha256.Sum256(data) }

// Verify returns nil if sum is the SHA-256 of data, and otherwise an error
// wrapping ErrChecksum that shows both digests. A sum that is not
// ChecksumSize bytes long cannot match and is reported the same way, so a
// caller treats the cell as corrupt either way.
func Verify(data []byte, sum []byte) error {
	if len(sum) != ChecksumSize {
		return fmt.Errorf("%w: stored checksum has %d bytes, want %d", ErrChecksum, len(sum), ChecksumSize)
	}
	got := Checksum(data)
	if !bytes.Equal(got[:], sum) {
		return fmt.Errorf("%w: %d bytes hash to %x, want %x", ErrChecksum, len(data), got[:8], sum[:8])
	}
	return nil
}

// parallelMinBytes is the least total input for which ChecksumCells hashes
// on several goroutines. Starting and joining goroutines costs microseconds
// and, on a busy machine, a wait for a free core: a row of 32 KiB cells
// (288 KiB) was no faster in parallel, one of 64 KiB cells (576 KiB) was
// (see BenchmarkChecksumCells).
const parallelMinBytes = 512 << 10

// ChecksumCells sets sums[i] to Checksum(cells[i]) for every i. len(sums)
// must equal len(cells), otherwise nothing is hashed and an error is
// returned.
//
// Large batches are hashed on up to GOMAXPROCS goroutines, the caller's
// included, which have all finished when ChecksumCells returns; small ones
// sequentially. sha256-simd's AVX-512 multi-buffer server is deliberately
// not used: on CPUs with SHA extensions it is slower per core than SHA-NI,
// and it runs a goroutine that can never be stopped (see doc.go,
// "Benchmarks").
//
// The cells must not be modified during the call; they may alias each other.
func ChecksumCells(cells [][]byte, sums [][ChecksumSize]byte) error {
	if len(sums) != len(cells) {
		return fmt.Errorf("erasure: ChecksumCells: %d sums for %d cells", len(sums), len(cells))
	}
	workers := min(runtime.GOMAXPROCS(0), len(cells))
	if workers > 1 {
		total := 0
		for _, c := range cells {
			total += len(c)
		}
		if total < parallelMinBytes {
			workers = 1
		}
	}
	if workers <= 1 {
		for i, c := range cells {
			sums[i] = sha256.Sum256(c)
		}
		return nil
	}
	// Cells are handed out one at a time so that a few long cells and many
	// short ones still balance across workers.
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(cells) {
				return
			}
			sums[i] = sha256.Sum256(cells[i])
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return nil
}
