package shardstore

// Benchmarks of the store against the raw disk. Run, for example:
//
//	go test ./chunk/internal/shardstore -run '^$' -bench . -benchtime 3x
//
// With SHARDSTORE_DROP_CACHES=1 (as root) the read benchmarks sync and drop
// the page cache (echo 3 > /proc/sys/vm/drop_caches) before each timed read,
// with the timer stopped, so reads come from the disk.
//
// Measured on the 2-core development VM (ext4 on virtio, shared with other
// work, so ±30% noise; medians of 5 runs):
//
//	LargeWrite   510 MB/s, write-amp 1.000   RawWrite 1110 MB/s   SHA256 1670 MB/s
//	LargeRead   2240 MB/s (cold cache)        RawRead  4890 MB/s (cold cache)
//	SmallCommits (64 KiB): 1 goroutine 1.00 WAL syncs/commit, 81 MB/s;
//	             16 goroutines 0.17 syncs/commit (group commit), 150 MB/s
//	Threshold (4 writers), batch vs ingest, MB/s and write-amp:
//	  128 KiB  135 (2.8) vs  64 (1.0)     256 KiB  131 (2.7) vs 104 (1.0)
//	  512 KiB  162 (2.0) vs 188 (1.0)       1 MiB  178 (2.5) vs 320 (1.0)
//	    4 MiB  181 (2.0) vs 559 (1.0)
//
// Hence DefaultLargeShardThreshold = 1 MiB: below ~512 KiB the batch path is
// faster (one shared fsync instead of a file, three fsyncs and a MANIFEST
// edit); at 512 KiB ingest wins by only 16% while costing one sstable per
// shard in the LSM; from 1 MiB it is 1.8x faster and writes half as much.
//
// The Large and Threshold figures above are from when a large shard's bytes
// went into an sstable of its own. With cells files (written behind the
// hashing, read a few cells ahead into pooled buffers), two runs at load
// average 3.4, 3x:
//
//	LargeWrite   570-674 MB/s, write-amp 1.000   RawWrite  874-1275 MB/s
//	LargeRead   2696-4345 MB/s (cold cache)       RawRead  4381-4911 MB/s (cold cache)

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/minio/sha256-simd"
	dto "github.com/prometheus/client_model/go"
)

const (
	benchShard = 256 << 20
	benchCell  = 1 << 20
)

// benchData is random shard data with its cell checksums.
type benchData struct {
	data []byte
	sums [][32]byte
	cell int
}

var benchDataOnce = sync.OnceValue(func() *benchData { return newBenchData(benchShard, benchCell) })

func newBenchData(n, cell int) *benchData {
	r := rand.New(rand.NewPCG(1, 2))
	d := &benchData{data: make([]byte, n), cell: cell}
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			d.data[i+j] = byte(v >> (8 * j))
		}
	}
	for off := 0; off < n; off += cell {
		d.sums = append(d.sums, sha256.Sum256(d.data[off:min(off+cell, n)]))
	}
	return d
}

func (d *benchData) write(s *Store, id ID) (Info, error) {
	w, err := s.Create(id, uint64(len(d.data)), uint32(d.cell))
	if err != nil {
		return Info{}, err
	}
	defer w.Abort()
	for i, off := 0, 0; off < len(d.data); i, off = i+1, off+d.cell {
		if err := w.WriteCell(d.data[off:min(off+d.cell, len(d.data))], d.sums[i]); err != nil {
			return Info{}, err
		}
	}
	return w.Commit()
}

func benchStore(b *testing.B, tweak func(*Options)) *Store {
	b.Helper()
	o := Options{Dir: b.TempDir()}
	if tweak != nil {
		tweak(&o)
	}
	s, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func dropCaches(b *testing.B) {
	if os.Getenv("SHARDSTORE_DROP_CACHES") == "" {
		return
	}
	b.StopTimer()
	defer b.StartTimer()
	syscall.Sync() // drop_caches drops only clean pages
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Fatalf("drop caches: %v", err)
	}
}

// BenchmarkLargeWrite writes one 256 MiB shard of 1 MiB cells per iteration
// (WriteCell verifies each checksum), commits it, and deletes it untimed;
// once with the cells written with O_DIRECT (the default) and once through
// the page cache, reporting the process's CPU seconds per GiB of each.
func BenchmarkLargeWrite(b *testing.B) {
	for _, mode := range []struct {
		name     string
		buffered bool
	}{{"direct", false}, {"buffered", true}} {
		b.Run(mode.name, func(b *testing.B) {
			d := benchDataOnce()
			s := benchStore(b, func(o *Options) { o.BufferedCells = mode.buffered })
			b.SetBytes(int64(len(d.data)))
			var written, stored uint64
			var cpu float64
			b.ResetTimer()
			for i := range b.N {
				before, cpuBefore := s.DiskBytesWritten(), cpuSeconds()
				if _, err := d.write(s, ID{Slice: uint64(i + 1)}); err != nil {
					b.Fatal(err)
				}
				cpu += cpuSeconds() - cpuBefore
				written += s.DiskBytesWritten() - before
				stored += uint64(len(d.data))
				b.StopTimer()
				if _, err := s.Delete(ID{Slice: uint64(i + 1)}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(written)/float64(stored), "write-amp")
			b.ReportMetric(cpu/(float64(stored)/(1<<30)), "cpu-s/GiB")
		})
	}
}

// cpuSeconds is the user and system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkLargeRead reads a 256 MiB shard with ReadCells.
func BenchmarkLargeRead(b *testing.B) {
	d := benchDataOnce()
	s := benchStore(b, nil)
	if _, err := d.write(s, ID{Slice: 1}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(d.data)))
	b.ResetTimer()
	for range b.N {
		dropCaches(b)
		var n int
		err := s.ReadCells(ID{Slice: 1}, 0, 0, func(_ uint32, data []byte, _ [32]byte) error {
			n += len(data)
			return nil
		})
		if err != nil || n != len(d.data) {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkRawWrite is the baseline: what dd bs=1M conv=fsync does.
func BenchmarkRawWrite(b *testing.B) {
	d := benchDataOnce()
	dir := b.TempDir()
	b.SetBytes(int64(len(d.data)))
	b.ResetTimer()
	for i := range b.N {
		path := filepath.Join(dir, fmt.Sprint(i))
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(d.data); off += benchCell {
			if _, err := f.Write(d.data[off : off+benchCell]); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = os.Remove(path)
		b.StartTimer()
	}
}

// BenchmarkSHA256 is the checksum verification WriteCell must do: the
// ceiling of one stream's write speed on this CPU.
func BenchmarkSHA256(b *testing.B) {
	d := benchDataOnce()
	b.SetBytes(int64(len(d.data)))
	b.ResetTimer()
	for range b.N {
		for i, off := 0, 0; off < len(d.data); i, off = i+1, off+benchCell {
			if sha256.Sum256(d.data[off:off+benchCell]) != d.sums[i] {
				b.Fatal("checksum")
			}
		}
	}
}

// BenchmarkRawRead is the baseline: a sequential read in 1 MiB blocks.
func BenchmarkRawRead(b *testing.B) {
	d := benchDataOnce()
	path := filepath.Join(b.TempDir(), "raw")
	if err := os.WriteFile(path, d.data, 0o644); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, benchCell)
	b.SetBytes(int64(len(d.data)))
	b.ResetTimer()
	for range b.N {
		dropCaches(b)
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			m, err := io.ReadFull(f, buf)
			n += m
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		_ = f.Close()
		if n != len(d.data) {
			b.Fatal(n)
		}
	}
}

// BenchmarkSmallCommits commits 64 KiB shards (16 KiB cells) from 1 and 16
// goroutines: with 16, Pebble's group commit shares WAL syncs
// (wal-syncs/commit well below 1).
func BenchmarkSmallCommits(b *testing.B) {
	d := newBenchData(64<<10, 16<<10)
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%d", par), func(b *testing.B) {
			s := benchStore(b, nil)
			var next atomic.Uint64
			syncs0 := walSyncs(b, s)
			b.SetBytes(int64(len(d.data)))
			b.ResetTimer()
			var wg sync.WaitGroup
			for range par {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > uint64(b.N) {
							return
						}
						if _, err := d.write(s, ID{Slice: i}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(walSyncs(b, s)-syncs0)/float64(b.N), "wal-syncs/commit")
		})
	}
}

// walSyncs returns the number of WAL fsyncs so far (Pebble's fsync
// latency histogram counts them all, recycled WAL files included).
func walSyncs(b *testing.B, s *Store) uint64 {
	var m dto.Metric
	if err := s.db.Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
		b.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// BenchmarkThreshold compares the two write paths for shards around the
// large-shard threshold, 4 writers at a time: "batch" (synced Pebble batch,
// WAL then flush) and "ingest" (staged sstable). Write amplification
// includes the flush of the memtable at the end.
func BenchmarkThreshold(b *testing.B) {
	for _, size := range []int{128 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20} {
		cell := min(size, 256<<10)
		d := newBenchData(size, cell)
		for _, path := range []string{"batch", "ingest"} {
			b.Run(fmt.Sprintf("size=%dKiB/%s", size>>10, path), func(b *testing.B) {
				s := benchStore(b, func(o *Options) {
					if path == "batch" {
						o.LargeShardThreshold = 64 << 20
					} else {
						o.LargeShardThreshold = 1
					}
				})
				var next atomic.Uint64
				b.SetBytes(int64(size))
				b.ResetTimer()
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > uint64(b.N) {
								return
							}
							if _, err := d.write(s, ID{Slice: i}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				if err := s.db.Flush(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(s.DiskBytesWritten())/float64(b.N*size), "write-amp")
			})
		}
	}
}
