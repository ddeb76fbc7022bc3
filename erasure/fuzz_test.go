package erasure

import (
	"math"
	"testing"
)

// FuzzExtents drives the stripe arithmetic with arbitrary layouts, slice
// lengths and ranges. Nothing may panic; invalid input must produce an
// error exactly when the documented preconditions fail; valid input must
// produce extents that tile the range, stay inside their cells and shards,
// and agree with Locate, CellLength and ShardLength.
//
//	go test -run '^$' -fuzz FuzzExtents -fuzztime 20s ./erasure/
func FuzzExtents(f *testing.F) {
	f.Add(false, uint8(4), uint8(2), uint32(10), int64(95), int64(8), int64(15))
	f.Add(false, uint8(6), uint8(3), uint32(1<<20), int64(6<<20+1), int64(0), int64(6<<20+1))
	f.Add(false, uint8(10), uint8(4), uint32(1000), int64(10001), int64(9999), int64(2))
	f.Add(false, uint8(2), uint8(1), uint32(1), int64(7), int64(0), int64(7))
	f.Add(true, uint8(3), uint8(0), uint32(4096), int64(3<<20+17), int64(4095), int64(4098))
	f.Add(false, uint8(4), uint8(2), uint32(10), int64(math.MaxInt64), int64(math.MaxInt64-3), int64(3))
	f.Add(false, uint8(4), uint8(2), uint32(10), int64(95), int64(96), int64(0))
	f.Add(false, uint8(4), uint8(2), uint32(10), int64(-1), int64(0), int64(0))
	f.Add(false, uint8(0), uint8(0), uint32(0), int64(10), int64(0), int64(5))
	f.Add(false, uint8(20), uint8(13), uint32(10), int64(10), int64(0), int64(5))
	f.Fuzz(func(t *testing.T, replicated bool, k, m uint8, cell uint32, sliceLen, off, n int64) {
		l := RS(int(k), int(m))
		if replicated {
			l = Replicated(int(k))
		}
		l = l.WithCellSize(int(cell))
		exts, err := l.Extents(sliceLen, off, n)
		valid := l.Validate() == nil
		if !valid {
			if err == nil {
				t.Fatalf("%v: Extents succeeded on an invalid layout", l)
			}
			return
		}
		c := int64(l.CellSize())
		badRange := sliceLen < 0 || off < 0 || n < 0 || off > sliceLen || n > sliceLen-off
		tooMany := !badRange && n > 0 && (off+n-1)/c-off/c+1 > maxExtents
		if (err != nil) != (badRange || tooMany) {
			t.Fatalf("%v Extents(%d, %d, %d): err = %v, bad range %v, too many %v", l, sliceLen, off, n, err, badRange, tooMany)
		}
		if sliceLen >= 0 {
			checkLengths(t, l, sliceLen)
		}
		if err != nil {
			return
		}
		var covered int64
		for _, e := range exts {
			if e.BufOffset != covered || e.Length <= 0 || e.Shard < 0 || e.Shard >= l.DataShards() {
				t.Fatalf("%v: extent %+v after %d bytes", l, e, covered)
			}
			p := l.Locate(off + e.BufOffset)
			if p.Shard != e.Shard || p.Row != e.Row || p.ShardOffset != e.Offset {
				t.Fatalf("%v: extent %+v but Locate(%d) = %+v", l, e, off+e.BufOffset, p)
			}
			cellStart := e.Row * c
			if e.Offset+e.Length > cellStart+int64(l.CellLength(sliceLen, e.Row, e.Shard)) {
				t.Fatalf("%v L=%d: extent %+v runs past its cell", l, sliceLen, e)
			}
			if e.Offset+e.Length > l.ShardLength(sliceLen, e.Shard) {
				t.Fatalf("%v L=%d: extent %+v runs past its shard", l, sliceLen, e)
			}
			covered += e.Length
		}
		if covered != n {
			t.Fatalf("%v: extents cover %d of %d bytes", l, covered, n)
		}
	})
}

// checkLengths checks the shard-length identities for any slice length,
// without iterating over rows (lengths may be near MaxInt64).
func checkLengths(t *testing.T, l Layout, sliceLen int64) {
	var sum int64
	for i := range l.DataShards() {
		s := l.ShardLength(sliceLen, i)
		if s < 0 || s > sliceLen {
			t.Fatalf("%v L=%d: shard %d has %d bytes", l, sliceLen, i, s)
		}
		sum += s
	}
	if sum != sliceLen {
		t.Fatalf("%v L=%d: data shards hold %d bytes", l, sliceLen, sum)
	}
	for i := l.DataShards(); i < l.Shards(); i++ {
		if l.ShardLength(sliceLen, i) != l.ShardLength(sliceLen, 0) {
			t.Fatalf("%v L=%d: parity %d differs in length from shard 0", l, sliceLen, i)
		}
	}
	rows := l.Rows(sliceLen)
	if rows > 0 {
		last := rows - 1
		if got := int64(last)*int64(l.CellSize()) + int64(l.CellLength(sliceLen, last, 0)); got != l.ShardLength(sliceLen, 0) {
			t.Fatalf("%v L=%d: shard 0 ends at %d, ShardLength %d", l, sliceLen, got, l.ShardLength(sliceLen, 0))
		}
	}
	if l.CellLength(sliceLen, rows, 0) != 0 {
		t.Fatalf("%v L=%d: row %d past the end has a cell", l, sliceLen, rows)
	}
}
