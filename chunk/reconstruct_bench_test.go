package chunk

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// BenchmarkReconstruct rebuilds data shard 0 of an RS(4,2) slice on one
// chunkserver from four others (shards 1-4) over loopback gRPC, unthrottled:
// every source cell verified, the row decoded, the rebuilt cell hashed and
// stored, the shard synced. Each shard is CAIRN_BENCH_SHARD_MIB/4 (default
// 64 MiB). It reports the rebuilt shard's MB/s, the raw sequential write
// with fsync of as many bytes into the target's directory (raw-MB/s),
// their ratio, the decode speed of the erasure library alone on the same
// rows (decode-MB/s of rebuilt bytes), and the CPU the whole process spent
// per MiB rebuilt, all measured in the same run. All five chunkservers
// share the machine's cores, so on a small machine the rebuild is bound by
// CPU (reading, verifying and sending four cells per rebuilt one), not by
// the disk:
//
//	go test -run x -bench Reconstruct -benchtime 3x ./chunk/
func BenchmarkReconstruct(b *testing.B) {
	shardSize := benchShardSize() / 4
	l := erasure.RS(4, 2)
	sliceLen := 4 * shardSize
	cells, _ := benchCells(sliceLen / benchCell)
	data := make([]byte, 0, sliceLen)
	for _, c := range cells {
		data = append(data, c...)
	}
	cells = nil
	coder, err := erasure.NewCoder(l)
	if err != nil {
		b.Fatal(err)
	}
	shards := coder.Split(data)
	data = nil
	dir := b.TempDir()
	hs := make([]*harness, 5)
	for i := range hs {
		hs[i] = start(b, func(c *Config) { c.Dir = filepath.Join(dir, "cs", string(rune('a'+i))); c.HTTPAddr = "" })
		defer hs[i].stop()
	}
	var sources []*chunkpb.ShardSource
	for i := 1; i <= 4; i++ {
		id := &chunkpb.ShardID{SliceId: 1, Index: uint32(i)}
		cs, sums := cells2(shards[i])
		hs[i].streamShard(b, id, cs, sums)
		sources = append(sources, &chunkpb.ShardSource{Index: uint32(i), Address: hs[i].srv.Addr()})
	}
	target := hs[0]
	id := &chunkpb.ShardID{SliceId: 1, Index: 0}
	rawCells, _ := cells2(shards[0])

	// Decode alone: rebuild data cell 0 of every row from cells 1-4.
	row := make([][]byte, l.Shards())
	t0 := time.Now()
	for r := int64(0); r < l.Rows(int64(sliceLen)); r++ {
		for j := range row {
			row[j] = nil
		}
		for j := 1; j <= 4; j++ {
			row[j] = shards[j][r*benchCell : (r+1)*benchCell]
		}
		if err := coder.ReconstructRow(int64(sliceLen), r, row); err != nil {
			b.Fatal(err)
		}
	}
	decode := mbps(shardSize, time.Since(t0))
	shards = nil

	var rebuildTime, rawTime, rebuildCPU time.Duration
	b.SetBytes(int64(shardSize))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rawTime += rawWrite(b, filepath.Join(dir, "raw"), rawCells)
		os.Remove(filepath.Join(dir, "raw"))
		t0 := time.Now()
		c0 := cpuTime()
		_, err := target.client.ReconstructShard(context.Background(), &chunkpb.ReconstructShardRequest{
			Shard: id, Layout: wirelayout.ToProto(l), SliceLength: uint64(sliceLen), Sources: sources,
			Token: target.writeToken(id, uint64(shardSize)),
		})
		if err != nil {
			b.Fatal(err)
		}
		rebuildTime += time.Since(t0)
		rebuildCPU += cpuTime() - c0
		b.StopTimer()
		del := target.signer.Mint(chunkpb.TokenOp_TOKEN_OP_DELETE, 1, 0, 0, time.Now().Add(time.Minute))
		if _, err := target.client.DeleteShard(context.Background(), &chunkpb.DeleteShardRequest{Shard: id, Token: del}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	rebuild, raw := mbps(shardSize*b.N, rebuildTime), mbps(shardSize*b.N, rawTime)
	b.ReportMetric(rebuild, "rebuild-MB/s")
	b.ReportMetric(raw, "raw-MB/s")
	b.ReportMetric(rebuild/raw, "ratio")
	b.ReportMetric(decode, "decode-MB/s")
	// CPU of the whole process (sources, target and client) per MiB
	// rebuilt: on a shared machine steadier than MB/s.
	b.ReportMetric(rebuildCPU.Seconds()*1000/float64(shardSize*b.N>>20), "cpu-ms/MiB")
}

// cells2 cuts a shard into benchCell cells with their checksums.
func cells2(shard []byte) ([][]byte, [][32]byte) {
	var cs [][]byte
	var sums [][32]byte
	for off := 0; off < len(shard); off += benchCell {
		c := shard[off:min(off+benchCell, len(shard))]
		cs = append(cs, c)
		sums = append(sums, erasure.Checksum(c))
	}
	return cs, sums
}
