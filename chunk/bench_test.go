package chunk

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// The shard benchmarks measure the chunkserver against the raw disk in the
// same run, because absolute figures drift on shared machines:
//
//	go test -run x -bench Shard -benchtime 3x ./chunk/
//
// BenchmarkShardWrite streams one shard (CAIRN_BENCH_SHARD_MIB, default 256)
// of 1 MiB cells to a chunkserver over loopback gRPC: checksums verified,
// token checked, shard synced before the ack. It reports the shard's MB/s,
// the raw sequential write with fsync of the same bytes into the same
// directory (what `dd bs=1M conv=fsync` does) as raw-MB/s, their ratio, and
// the write amplification (bytes the store wrote to disk ÷ bytes stored).
//
// BenchmarkShardRead reads the shard back and a raw file of the same size,
// with the page cache dropped before each (as root; otherwise cold=0 says
// the cache was warm).
//
// Both also report cpu-ms/shard: the CPU time the process (server and
// client together) spent per shard streamed, which is steadier than MB/s
// when other work shares the machine's cores.

const benchCell = 1 << 20

func benchShardSize() int {
	if s := os.Getenv("CAIRN_BENCH_SHARD_MIB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n << 20
		}
	}
	return 256 << 20
}

// benchCells returns n distinct pseudo-random cells and their checksums;
// random so neither compression nor deduplication flatters the store.
func benchCells(n int) ([][]byte, [][32]byte) {
	r := rand.New(rand.NewPCG(42, 42))
	cells := make([][]byte, n)
	sums := make([][32]byte, n)
	for i := range cells {
		c := make([]byte, benchCell)
		for j := 0; j < len(c); j += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				c[j+k] = byte(v >> (8 * k))
			}
		}
		cells[i], sums[i] = c, erasure.Checksum(c)
	}
	return cells, sums
}

func (h *harness) streamShard(b *testing.B, id *chunkpb.ShardID, cells [][]byte, sums [][32]byte) {
	size := uint64(len(cells) * benchCell)
	st, err := h.client.WriteShard(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&chunkpb.WriteShardRequest{Header: &chunkpb.WriteShardHeader{Shard: id, Length: size, CellSize: benchCell, Token: h.writeToken(id, size)}}); err != nil {
		b.Fatal(err)
	}
	for i := range cells {
		// Like the client's stripe buffers, cells stay unchanged until the
		// stream ends, so the codec sends them without copying.
		if err := st.SendMsg(shardcodec.Borrowed{Msg: &chunkpb.WriteShardRequest{Data: cells[i], Sha256: sums[i][:]}}); err != nil {
			break
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		b.Fatal(err)
	}
}

func rawWrite(b *testing.B, path string, cells [][]byte) time.Duration {
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cells {
		if _, err := f.Write(c); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// dropCaches empties the page cache; it reports false when not permitted.
func dropCaches() bool {
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("1\n"), 0) == nil
}

func mbps(bytes int, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }

func BenchmarkShardWrite(b *testing.B) {
	size := benchShardSize()
	cells, sums := benchCells(size / benchCell)
	dir := b.TempDir()
	h := start(b, func(c *Config) { c.Dir = filepath.Join(dir, "store"); c.HTTPAddr = "" })
	defer h.stop()
	var shardTime, rawTime, shardCPU time.Duration
	diskBefore := h.srv.store.DiskBytesWritten()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rawTime += rawWrite(b, filepath.Join(dir, "raw"), cells)
		os.Remove(filepath.Join(dir, "raw"))
		id := &chunkpb.ShardID{SliceId: uint64(i + 1)}
		t0 := time.Now()
		c0 := cpuTime()
		h.streamShard(b, id, cells, sums)
		shardTime += time.Since(t0)
		shardCPU += cpuTime() - c0
	}
	b.StopTimer()
	amp := float64(h.srv.store.DiskBytesWritten()-diskBefore) / float64(size*b.N)
	shard, raw := mbps(size*b.N, shardTime), mbps(size*b.N, rawTime)
	b.ReportMetric(shard, "shard-MB/s")
	b.ReportMetric(raw, "raw-MB/s")
	b.ReportMetric(shard/raw, "ratio")
	b.ReportMetric(amp, "write-amp")
	b.ReportMetric(float64(shardCPU.Milliseconds())/float64(b.N), "cpu-ms/shard")
}

func BenchmarkShardRead(b *testing.B) {
	size := benchShardSize()
	cells, sums := benchCells(size / benchCell)
	dir := b.TempDir()
	h := start(b, func(c *Config) { c.Dir = filepath.Join(dir, "store"); c.HTTPAddr = "" })
	defer h.stop()
	id := &chunkpb.ShardID{SliceId: 1}
	h.streamShard(b, id, cells, sums)
	rawPath := filepath.Join(dir, "raw")
	rawWrite(b, rawPath, cells)
	cells = nil
	cold := 1.0
	var shardTime, rawTime, shardCPU time.Duration
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !dropCaches() {
			cold = 0
		}
		t0 := time.Now()
		f, err := os.Open(rawPath)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, benchCell)
		for {
			if _, err := io.ReadFull(f, buf); err != nil {
				break
			}
		}
		f.Close()
		rawTime += time.Since(t0)

		if !dropCaches() {
			cold = 0
		}
		t0 = time.Now()
		c0 := cpuTime()
		st, err := h.client.ReadShard(context.Background(), &chunkpb.ReadShardRequest{Shard: id})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			m, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += len(m.Data)
			h.codec.Release(m.Data) // as the client does
		}
		shardTime += time.Since(t0)
		shardCPU += cpuTime() - c0
		if n != size {
			b.Fatalf("read %d bytes, want %d", n, size)
		}
	}
	b.StopTimer()
	shard, raw := mbps(size*b.N, shardTime), mbps(size*b.N, rawTime)
	b.ReportMetric(shard, "shard-MB/s")
	b.ReportMetric(raw, "raw-MB/s")
	b.ReportMetric(shard/raw, "ratio")
	b.ReportMetric(cold, "cold")
	b.ReportMetric(float64(shardCPU.Milliseconds())/float64(b.N), "cpu-ms/shard")
}

// cpuTime is the CPU time the process (server and client) has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
