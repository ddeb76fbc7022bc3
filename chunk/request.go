package chunk

import (
	"fmt"

	"github.com/cairnfs/cairn/proto/chunkpb"
)

// MaxShardLength bounds a single shard: 64 GiB, far above the 64 MiB chunk a
// slice covers, so only a corrupt or hostile header reaches it.
const MaxShardLength = 64 << 30

// shardName formats a shard ID the way every error and log line names it.
func shardName(id *chunkpb.ShardID) string {
	if id == nil {
		return "<no shard>"
	}
	return fmt.Sprintf("%d/%d", id.GetSliceId(), id.GetIndex())
}

// checkWriteHeader validates the first message of a WriteShard stream.
func checkWriteHeader(h *chunkpb.WriteShardHeader) error {
	switch {
	case h == nil:
		return fmt.Errorf("the first message carries no header")
	case h.GetShard() == nil:
		return fmt.Errorf("the header names no shard")
	case h.GetCellSize() == 0:
		return fmt.Errorf("shard %s: cell size is 0", shardName(h.GetShard()))
	case h.GetCellSize() > MaxCellSize:
		return fmt.Errorf("shard %s: cell size %d exceeds the maximum %d", shardName(h.GetShard()), h.GetCellSize(), MaxCellSize)
	case h.GetLength() > MaxShardLength:
		return fmt.Errorf("shard %s: length %d exceeds the maximum %d", shardName(h.GetShard()), h.GetLength(), uint64(MaxShardLength))
	}
	return nil
}

// cellRange returns the cells [first, first+count) that cover the byte range
// [offset, offset+length) of a shard of shardLen bytes cut into cells of
// cellSize; length 0 means to the end of the shard. A read of zero bytes at
// the end of the shard (including any read of an empty shard at offset 0)
// covers no cells. A range reaching past the end is an error.
func cellRange(shardLen uint64, cellSize uint32, offset, length uint64) (first, count uint32, err error) {
	if cellSize == 0 {
		return 0, 0, fmt.Errorf("cell size is 0")
	}
	if offset > shardLen {
		return 0, 0, fmt.Errorf("offset %d is past the end of the %d-byte shard", offset, shardLen)
	}
	if length == 0 {
		length = shardLen - offset
	} else if length > shardLen-offset {
		return 0, 0, fmt.Errorf("range [%d, %d+%d) reaches past the end of the %d-byte shard", offset, offset, length, shardLen)
	}
	if length == 0 {
		return 0, 0, nil
	}
	cs := uint64(cellSize)
	f := offset / cs
	l := (offset + length - 1) / cs
	return uint32(f), uint32(l - f + 1), nil
}
