package shardstore

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key layout. Every key starts with a one-byte keyspace tag; within a
// keyspace, keys sort by (slice, index[, cell]) because all numbers are
// big-endian.
//
//	'M' slice(8) index(4)           -> shard metadata (metaLen bytes, see meta)
//	'S' slice(8) index(4) cell(4)   -> sha256(32) || cell bytes   (small shards)
//	'L' slice(8) index(4) cell(4)   -> sha256(32) || cell bytes   (large shards
//	                                   of metadata version 1), or sha256(32)
//	                                   alone (file-backed large shards: the
//	                                   bytes are in Dir/shards, see fileName)
//	'G' slice(8) index(4)           -> empty: a large shard's cells whose
//	                                   metadata is deleted and whose sstable
//	                                   still has to be excised (redone on Open)
//
// Small shards are written with one synced batch (metadata and cells
// together). A large shard's cells are written into their own sstable, which
// covers exactly ['L' id, 'L' id+1), so it never overlaps another shard's
// table and ingests into the bottom level without a rewrite; its metadata key
// goes into a second, one-key sstable ingested in the same atomic Ingest
// call. Keeping small and large cells in different keyspaces means the tables
// of flushed small shards never straddle a large shard's key range, and
// keeping all metadata in its own keyspace makes Stat, List and the shard
// count at Open read only small blocks, never cell data.
const (
	tagMeta  = 'M'
	tagSmall = 'S'
	tagLarge = 'L'
	tagGC    = 'G'

	idLen      = 1 + 8 + 4
	cellKeyLen = idLen + 4
)

func appendIDKey(dst []byte, tag byte, id ID) []byte {
	dst = append(dst, tag)
	dst = binary.BigEndian.AppendUint64(dst, id.Slice)
	return binary.BigEndian.AppendUint32(dst, id.Index)
}

func idKey(tag byte, id ID) []byte { return appendIDKey(make([]byte, 0, idLen), tag, id) }

func appendCellKey(dst []byte, tag byte, id ID, cell uint32) []byte {
	dst = appendIDKey(dst, tag, id)
	return binary.BigEndian.AppendUint32(dst, cell)
}

func cellKey(tag byte, id ID, cell uint32) []byte {
	return appendCellKey(make([]byte, 0, cellKeyLen), tag, id, cell)
}

// cellSpan returns the key range [start, end) holding all of id's cells in
// keyspace tag. end is the first key of the next shard ID (the 13-byte ID
// prefix is the successor of every 17-byte cell key of id).
func cellSpan(tag byte, id ID) (start, end []byte) {
	start = idKey(tag, id)
	end = idKey(tag, id)
	// Increment the 12-byte (slice, index) big-endian number; on overflow
	// (the largest ID) use the next tag.
	for i := idLen - 1; i >= 1; i-- {
		end[i]++
		if end[i] != 0 {
			return start, end
		}
	}
	return start, []byte{tag + 1}
}

func parseIDKey(k []byte, tag byte) (ID, bool) {
	if len(k) != idLen || k[0] != tag {
		return ID{}, false
	}
	return ID{Slice: binary.BigEndian.Uint64(k[1:9]), Index: binary.BigEndian.Uint32(k[9:13])}, true
}

func parseCellKey(k []byte, tag byte, id ID) (uint32, bool) {
	if len(k) != cellKeyLen || k[0] != tag {
		return 0, false
	}
	if got, _ := parseIDKey(k[:idLen], tag); got != id {
		return 0, false
	}
	return binary.BigEndian.Uint32(k[idLen:]), true
}

// next returns the ID that follows id in ID order, and false if id is the
// largest ID.
func (id ID) next() (ID, bool) {
	if id.Index != ^uint32(0) {
		return ID{id.Slice, id.Index + 1}, true
	}
	if id.Slice != ^uint64(0) {
		return ID{id.Slice + 1, 0}, true
	}
	return ID{}, false
}

// meta is the stored metadata record of a shard.
type meta struct {
	large    bool
	length   uint64
	cellSize uint32
	created  time.Time
	// digest is sha256 over the concatenated per-cell checksums: two
	// shards with equal length, cell size and digest hold identical bytes
	// (as far as SHA-256 can tell), which is what an idempotent retry
	// checks without reading the cells.
	digest [32]byte
	// file: the cells' bytes are in their own file (see fileName), and
	// the 'L' keys hold only their checksums. gen names the file.
	file bool
	gen  uint64
}

const (
	metaVersion = 1
	metaLen     = 1 + 1 + 8 + 4 + 8 + 32
	// Version 2 adds the file generation; only file-backed shards use it.
	metaVersionFile = 2
	metaLenFile     = metaLen + 8
	flagLarge       = 1
	flagFile        = 2
)

func (m *meta) encode() []byte {
	b := make([]byte, 0, metaLenFile)
	version := byte(metaVersion)
	if m.file {
		version = metaVersionFile
	}
	b = append(b, version)
	var flags byte
	if m.large {
		flags |= flagLarge
	}
	if m.file {
		flags |= flagFile
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, m.length)
	b = binary.BigEndian.AppendUint32(b, m.cellSize)
	b = binary.BigEndian.AppendUint64(b, uint64(m.created.UnixNano()))
	b = append(b, m.digest[:]...)
	if m.file {
		b = binary.BigEndian.AppendUint64(b, m.gen)
	}
	return b
}

func decodeMeta(b []byte) (meta, error) {
	ok := len(b) == metaLen && b[0] == metaVersion ||
		len(b) == metaLenFile && b[0] == metaVersionFile && b[1]&(flagLarge|flagFile) == flagLarge|flagFile
	if !ok {
		return meta{}, fmt.Errorf("%w: bad metadata record (%d bytes, version %d)", ErrCorrupt, len(b), firstByte(b))
	}
	m := meta{
		large:    b[1]&flagLarge != 0,
		file:     b[1]&flagFile != 0,
		length:   binary.BigEndian.Uint64(b[2:10]),
		cellSize: binary.BigEndian.Uint32(b[10:14]),
		created:  time.Unix(0, int64(binary.BigEndian.Uint64(b[14:22]))),
	}
	copy(m.digest[:], b[22:54])
	if m.file {
		m.gen = binary.BigEndian.Uint64(b[54:62])
	}
	if m.cellSize == 0 || m.cellSize > MaxCellSize || m.length > MaxShardLength {
		return meta{}, fmt.Errorf("%w: bad metadata record (length %d, cell size %d)", ErrCorrupt, m.length, m.cellSize)
	}
	return m, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

func (m *meta) tag() byte {
	if m.large {
		return tagLarge
	}
	return tagSmall
}

func (m *meta) info(id ID) Info {
	return Info{ID: id, Length: m.length, CellSize: m.cellSize, Created: m.created}
}

// cellLen is the length of cell i of a shard of the given length and cell
// size; cells returns their count.
func cellLen(length uint64, cellSize uint32, i uint32) uint32 {
	off := uint64(i) * uint64(cellSize)
	if rest := length - off; rest < uint64(cellSize) {
		return uint32(rest)
	}
	return cellSize
}

func cells(length uint64, cellSize uint32) uint64 {
	return (length + uint64(cellSize) - 1) / uint64(cellSize)
}

// fileName is the name, in Dir/shards, of the file holding the bytes of
// file-backed shard id of generation gen: "slice-index-gen.cells". Every
// Writer of a large shard gets a new generation, so a name is never reused:
// a reader that opened a file reads the shard its metadata described.
func fileName(id ID, gen uint64) string {
	return strconv.FormatUint(id.Slice, 10) + "-" + strconv.FormatUint(uint64(id.Index), 10) +
		"-" + strconv.FormatUint(gen, 10) + fileSuffix
}

const fileSuffix = ".cells"

// parseFileName is fileName's inverse.
func parseFileName(name string) (id ID, gen uint64, ok bool) {
	rest, found := strings.CutSuffix(name, fileSuffix)
	if !found {
		return ID{}, 0, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 {
		return ID{}, 0, false
	}
	slice, err1 := strconv.ParseUint(parts[0], 10, 64)
	index, err2 := strconv.ParseUint(parts[1], 10, 32)
	gen, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return ID{}, 0, false
	}
	return ID{Slice: slice, Index: uint32(index)}, gen, true
}
