package erasure

import "fmt"

// This file is the stripe arithmetic: the contract between the writing
// client, the chunkservers and the reading client about which byte of a
// slice sits where. It is described in full in the package documentation
// (doc.go, "Stripe arithmetic"); every function here is exact for any
// slice length from 0 to math.MaxInt64 and never panics.

// geometry returns k and the cell size as int64, or ok == false for a
// Layout that Validate rejects; every arithmetic entry point uses it so an
// invalid Layout behaves as one with no shards instead of dividing by zero.
func (l Layout) geometry() (k, cell int64, ok bool) {
	if !l.valid() {
		return 0, 0, false
	}
	return int64(l.DataShards()), int64(l.CellSize()), true
}

// valid is Validate without building an error.
func (l Layout) valid() bool {
	k, m, c := l.fieldK(), l.fieldM(), l.CellSize()
	if c <= 0 || c > MaxCellSize {
		return false
	}
	switch l.kind() {
	case kindRS:
		return k >= 1 && m >= 1 && m <= k && k+m <= MaxShards
	case kindReplicated:
		return k >= 1 && k <= MaxShards
	}
	return false
}

// Rows is the number of stripe rows a slice of sliceLen bytes occupies:
// ceil(sliceLen / StripeRow()). It is 0 for an empty slice, a negative
// length or an invalid Layout.
func (l Layout) Rows(sliceLen int64) int64 {
	k, cell, ok := l.geometry()
	if !ok || sliceLen <= 0 {
		return 0
	}
	row := k * cell
	r := sliceLen / row
	if sliceLen%row != 0 {
		r++
	}
	return r
}

// Cells is the number of data cells a slice of sliceLen bytes is cut into:
// ceil(sliceLen / CellSize()). Cell c of the slice holds slice bytes
// [c*CellSize(), min((c+1)*CellSize(), sliceLen)). It is 0 for an empty
// slice, a negative length or an invalid Layout.
func (l Layout) Cells(sliceLen int64) int64 {
	_, cell, ok := l.geometry()
	if !ok || sliceLen <= 0 {
		return 0
	}
	c := sliceLen / cell
	if sliceLen%cell != 0 {
		c++
	}
	return c
}

// CellLength is the number of bytes shard holds at stripe row row of a
// slice of sliceLen bytes, which is also the length of the cell that one
// checksum covers. For a data shard it is the real length of its cell in
// that row (CellSize() in every row but possibly the last; 0 if the last
// row has no cell for this shard). For a parity shard it is the length of
// data shard 0's cell in that row, the width of the row. It is 0 for rows,
// shards or lengths out of range and for an invalid Layout.
func (l Layout) CellLength(sliceLen, row int64, shard int) int {
	k, cell, ok := l.geometry()
	if !ok || sliceLen <= 0 || row < 0 || shard < 0 || shard >= l.Shards() {
		return 0
	}
	rowBytes := k * cell
	full := sliceLen / rowBytes
	if row < full {
		return int(cell)
	}
	if row > full {
		return 0
	}
	rem := sliceLen % rowBytes // bytes in the last, partial row; 0 if none
	if shard >= int(k) {
		return int(min(rem, cell))
	}
	return int(min(max(rem-int64(shard)*cell, 0), cell))
}

// ShardLength is the number of bytes shard holds for a slice of sliceLen
// bytes: the sum of its cells' real lengths. Data shard i holds slice cells
// i, i+k, i+2k, … back to back, so its length is the sum of those cells'
// lengths; every parity shard has the length of data shard 0, because row
// r's parity is as long as row r's longest (first) cell. For a replicated
// layout every shard holds the whole slice, so this is sliceLen. It is 0
// for a shard out of range, a negative length and an invalid Layout.
func (l Layout) ShardLength(sliceLen int64, shard int) int64 {
	k, cell, ok := l.geometry()
	if !ok || sliceLen <= 0 || shard < 0 || shard >= l.Shards() {
		return 0
	}
	rowBytes := k * cell
	full, rem := sliceLen/rowBytes, sliceLen%rowBytes
	if shard >= int(k) {
		shard = 0 // parity is as long as data shard 0
	}
	return full*cell + min(max(rem-int64(shard)*cell, 0), cell)
}

// Position locates one byte of a slice in the stripe. Positions do not
// depend on the slice length: the same offset is always in the same place.
type Position struct {
	Row         int64 // stripe row: Cell / k
	Shard       int   // data shard holding the byte: Cell % k
	Cell        int64 // cell index over the whole slice: offset / CellSize()
	CellOffset  int   // offset of the byte within its cell
	ShardOffset int64 // offset of the byte within its shard: Row*CellSize() + CellOffset
}

// Locate returns where byte off of a slice is stored. For a replicated
// layout the position is in shard 0, and every other copy holds the byte at
// the same ShardOffset (which equals off). If off is negative or l is
// invalid, every field of the result is -1.
func (l Layout) Locate(off int64) Position {
	k, cell, ok := l.geometry()
	if !ok || off < 0 {
		return Position{Row: -1, Shard: -1, Cell: -1, CellOffset: -1, ShardOffset: -1}
	}
	c := off / cell
	within := off % cell
	row := c / k
	return Position{
		Row:         row,
		Shard:       int(c % k),
		Cell:        c,
		CellOffset:  int(within),
		ShardOffset: row*cell + within,
	}
}

// Extent is one contiguous piece of a read: Length bytes at Offset in shard
// Shard, which belong at BufOffset in the caller's buffer for the range.
// An extent never crosses a cell boundary, so exactly one checksum covers
// it: the cell of Shard at stripe row Row, which spans shard bytes
// [Row*CellSize(), Row*CellSize()+CellLength(sliceLen, Row, Shard)).
type Extent struct {
	Shard     int
	Row       int64
	Offset    int64 // offset in the shard
	Length    int64
	BufOffset int64 // offset in the output buffer: slice offset minus the range's start
}

// maxExtents bounds the extents one call may return, so that absurd
// arguments (a huge range with tiny cells) fail instead of exhausting
// memory. With 1 MiB cells it is a 1 TiB range.
const maxExtents = 1 << 20

// Extents maps the byte range [off, off+n) of a slice of sliceLen bytes to
// the shard extents that hold it, in increasing BufOffset order, one per
// cell touched; their lengths sum to n and BufOffsets tile [0, n). For a
// replicated layout the extents name shard 0; any copy serves the same
// offsets. An empty range (n == 0, off ≤ sliceLen) yields no extents.
//
// It returns an error, never a partial answer, if l is invalid, sliceLen,
// off or n is negative, the range ends beyond sliceLen, or the range spans
// more than 2^20 cells.
func (l Layout) Extents(sliceLen, off, n int64) ([]Extent, error) {
	return l.AppendExtents(nil, sliceLen, off, n)
}

// AppendExtents is Extents appending to dst, so a reader can reuse one
// slice across reads. On error dst is returned unchanged.
func (l Layout) AppendExtents(dst []Extent, sliceLen, off, n int64) ([]Extent, error) {
	k, cell, ok := l.geometry()
	if !ok {
		return dst, l.Validate()
	}
	switch {
	case sliceLen < 0:
		return dst, fmt.Errorf("erasure: %s: negative slice length %d", l, sliceLen)
	case off < 0 || n < 0 || off > sliceLen || n > sliceLen-off:
		return dst, fmt.Errorf("erasure: %s: range of %d bytes at offset %d is outside the slice of %d bytes", l, n, off, sliceLen)
	case n == 0:
		return dst, nil
	}
	end := off + n // cannot overflow: n ≤ sliceLen - off
	first, last := off/cell, (end-1)/cell
	if count := last - first + 1; count > maxExtents {
		return dst, fmt.Errorf("erasure: %s: range of %d bytes at offset %d spans %d cells, more than %d", l, n, off, count, maxExtents)
	} else {
		dst = growExtents(dst, int(count))
	}
	for c := first; c <= last; c++ {
		base := c * cell // ≤ end-1; (c+1)*cell could overflow near MaxInt64
		start := max(off, base)
		stop := base + min(cell, end-base)
		row := c / k
		dst = append(dst, Extent{
			Shard:     int(c % k),
			Row:       row,
			Offset:    row*cell + (start - base),
			Length:    stop - start,
			BufOffset: start - off,
		})
	}
	return dst, nil
}

// growExtents makes room for n more extents with a single allocation.
func growExtents(dst []Extent, n int) []Extent {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	grown := make([]Extent, len(dst), len(dst)+n)
	copy(grown, dst)
	return grown
}

// AppendCells appends to dst the cells of one shard's bytes as subslices of
// shard (no copying): CellSize() bytes each, the last possibly shorter.
// These are the units ChecksumCells hashes and chunkservers verify. An
// empty shard has no cells; an invalid Layout appends nothing.
func (l Layout) AppendCells(dst [][]byte, shard []byte) [][]byte {
	_, cell, ok := l.geometry()
	if !ok {
		return dst
	}
	c := int(cell)
	for len(shard) > c {
		dst = append(dst, shard[:c:c])
		shard = shard[c:]
	}
	if len(shard) > 0 {
		dst = append(dst, shard)
	}
	return dst
}
