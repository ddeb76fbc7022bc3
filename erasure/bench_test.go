package erasure

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/klauspost/reedsolomon"
	sha256 "github.com/minio/sha256-simd"
)

// benchRow returns one stripe row of random data cells and empty parity
// buffers of full capacity, as a writer's buffer pool would hand out.
func benchRow(l Layout) [][]byte {
	rng := rand.New(rand.NewSource(42))
	row := make([][]byte, l.Shards())
	for i := range row {
		row[i] = randBytes(rng, l.CellSize())
		if i >= l.DataShards() {
			row[i] = row[i][:0]
		}
	}
	return row
}

// BenchmarkRow measures what a writer does per stripe row: encode parity,
// then checksum all k+m cells. See doc.go, "Benchmarks".
func BenchmarkRow(b *testing.B) {
	for _, l := range []Layout{RS(4, 2), RS(6, 3)} {
		dataBytes := l.StripeRow()
		b.Run(l.String()+"/wrapper", func(b *testing.B) {
			c := mustCoder(b, l)
			row := benchRow(l)
			sums := make([][ChecksumSize]byte, len(row))
			b.SetBytes(dataBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.EncodeRow(row); err != nil {
					b.Fatal(err)
				}
				if err := ChecksumCells(row, sums); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(l.String()+"/wrapper-seq", func(b *testing.B) {
			c := mustCoder(b, l)
			row := benchRow(l)
			sums := make([][ChecksumSize]byte, len(row))
			b.SetBytes(dataBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.EncodeRow(row); err != nil {
					b.Fatal(err)
				}
				for i, cell := range row {
					sums[i] = Checksum(cell)
				}
			}
		})
		b.Run(l.String()+"/direct", func(b *testing.B) {
			enc, err := reedsolomon.New(l.DataShards(), l.ParityShards())
			if err != nil {
				b.Fatal(err)
			}
			row := benchRow(l)
			for i := l.DataShards(); i < len(row); i++ {
				row[i] = row[i][:l.CellSize()]
			}
			sums := make([][sha256.Size]byte, len(row))
			b.SetBytes(dataBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := enc.Encode(row); err != nil {
					b.Fatal(err)
				}
				for i, cell := range row {
					sums[i] = sha256.Sum256(cell)
				}
			}
		})
	}
}

// BenchmarkEncodeOptions compares reedsolomon options for encoding one
// row of 1 MiB cells, the choice behind NewCoder's options.
func BenchmarkEncodeOptions(b *testing.B) {
	for _, l := range []Layout{RS(4, 2), RS(6, 3)} {
		for _, opt := range []struct {
			name string
			opts []reedsolomon.Option
		}{
			{"default", nil},
			{"auto", []reedsolomon.Option{reedsolomon.WithAutoGoroutines(l.CellSize())}},
			{"single", []reedsolomon.Option{reedsolomon.WithMaxGoroutines(1)}},
		} {
			b.Run(fmt.Sprintf("%v/%s", l, opt.name), func(b *testing.B) {
				c, err := newCoder(l, opt.opts...)
				if err != nil {
					b.Fatal(err)
				}
				row := benchRow(l)
				b.SetBytes(l.StripeRow())
				for b.Loop() {
					if err := c.EncodeRow(row); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkChecksumCells compares sequential hashing with ChecksumCells
// for one RS(6,3) row of cells, large and small.
func BenchmarkChecksumCells(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		cells := benchRow(RS(6, 3).WithCellSize(size))
		for i := range cells {
			cells[i] = cells[i][:size]
		}
		sums := make([][ChecksumSize]byte, len(cells))
		b.Run(fmt.Sprintf("%dKiB/sequential", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size * len(cells)))
			for b.Loop() {
				for i, c := range cells {
					sums[i] = Checksum(c)
				}
			}
		})
		b.Run(fmt.Sprintf("%dKiB/ChecksumCells", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size * len(cells)))
			for b.Loop() {
				if err := ChecksumCells(cells, sums); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDegradedRow measures a degraded read of one RS(6,3) row of
// 1 MiB cells with two data cells lost.
func BenchmarkDegradedRow(b *testing.B) {
	l := RS(6, 3)
	c := mustCoder(b, l)
	row := benchRow(l)
	if err := c.EncodeRow(row); err != nil {
		b.Fatal(err)
	}
	spare := [][]byte{make([]byte, 0, l.CellSize()), make([]byte, 0, l.CellSize())}
	work := make([][]byte, len(row))
	b.SetBytes(l.StripeRow())
	b.ReportAllocs()
	for b.Loop() {
		copy(work, row)
		work[1], work[4] = spare[0], spare[1]
		if err := c.ReconstructRowData(l.StripeRow(), 0, work); err != nil {
			b.Fatal(err)
		}
	}
}
