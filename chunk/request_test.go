package chunk

import (
	"testing"

	"github.com/cairnfs/cairn/proto/chunkpb"
)

func TestCellRange(t *testing.T) {
	tests := []struct {
		shardLen     uint64
		cell         uint32
		off, n       uint64
		first, count uint32
		bad          bool
	}{
		{0, 4, 0, 0, 0, 0, false},
		{0, 4, 0, 1, 0, 0, true},
		{0, 4, 1, 0, 0, 0, true},
		{10, 4, 0, 0, 0, 3, false},
		{10, 4, 0, 10, 0, 3, false},
		{10, 4, 3, 2, 0, 2, false},
		{10, 4, 4, 4, 1, 1, false},
		{10, 4, 8, 0, 2, 1, false},
		{10, 4, 10, 0, 0, 0, false},
		{10, 4, 9, 2, 0, 0, true},
		{10, 4, 11, 0, 0, 0, true},
		{10, 0, 0, 0, 0, 0, true},
		{1 << 40, 1 << 20, 1<<40 - 1, 1, 1<<20 - 1, 1, false},
	}
	for _, tt := range tests {
		first, count, err := cellRange(tt.shardLen, tt.cell, tt.off, tt.n)
		if (err != nil) != tt.bad {
			t.Errorf("cellRange(%d, %d, %d, %d) error = %v, want error %v", tt.shardLen, tt.cell, tt.off, tt.n, err, tt.bad)
			continue
		}
		if !tt.bad && (first != tt.first || count != tt.count) {
			t.Errorf("cellRange(%d, %d, %d, %d) = %d, %d; want %d, %d", tt.shardLen, tt.cell, tt.off, tt.n, first, count, tt.first, tt.count)
		}
	}
}

// FuzzCellRange checks that the cells chosen always cover exactly the
// requested bytes and never reach past the shard.
func FuzzCellRange(f *testing.F) {
	f.Add(uint64(10), uint32(4), uint64(3), uint64(2))
	f.Add(uint64(0), uint32(1), uint64(0), uint64(0))
	f.Add(^uint64(0), ^uint32(0), ^uint64(0), ^uint64(0))
	f.Fuzz(func(t *testing.T, shardLen uint64, cell uint32, off, n uint64) {
		first, count, err := cellRange(shardLen, cell, off, n)
		if err != nil {
			return
		}
		end := off + n
		if n == 0 {
			end = shardLen
		}
		if end < off || end > shardLen {
			t.Fatalf("accepted [%d,%d) of a %d-byte shard", off, end, shardLen)
		}
		if end == off {
			if count != 0 {
				t.Fatalf("empty range got %d cells", count)
			}
			return
		}
		c := uint64(cell)
		lo, hi := uint64(first)*c, (uint64(first)+uint64(count))*c
		if lo > off || hi < end || off-lo >= c || hi-end >= c {
			t.Fatalf("cells [%d,+%d) of %d bytes do not tightly cover [%d,%d)", first, count, cell, off, end)
		}
	})
}

func TestCheckWriteHeader(t *testing.T) {
	id := &chunkpb.ShardID{SliceId: 1}
	for _, h := range []*chunkpb.WriteShardHeader{
		nil,
		{},
		{Shard: id},
		{Shard: id, CellSize: MaxCellSize + 1},
		{Shard: id, CellSize: 1, Length: MaxShardLength + 1},
	} {
		if err := checkWriteHeader(h); err == nil {
			t.Errorf("checkWriteHeader(%v) accepted a bad header", h)
		}
	}
	if err := checkWriteHeader(&chunkpb.WriteShardHeader{Shard: id, CellSize: 1 << 20, Length: 5}); err != nil {
		t.Errorf("good header refused: %v", err)
	}
}
