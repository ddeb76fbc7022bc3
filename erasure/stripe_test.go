package erasure

import (
	"bytes"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

func TestShardLengthTable(t *testing.T) {
	rs42 := RS(4, 2).WithCellSize(10)
	rep3 := Replicated(3).WithCellSize(10)
	tests := []struct {
		l       Layout
		sliceLn int64
		rows    int64
		cells   int64
		lengths []int64 // per shard
	}{
		{rs42, 0, 0, 0, []int64{0, 0, 0, 0, 0, 0}},
		{rs42, 1, 1, 1, []int64{1, 0, 0, 0, 1, 1}},
		{rs42, 9, 1, 1, []int64{9, 0, 0, 0, 9, 9}},
		{rs42, 10, 1, 1, []int64{10, 0, 0, 0, 10, 10}},
		{rs42, 11, 1, 2, []int64{10, 1, 0, 0, 10, 10}},
		{rs42, 39, 1, 4, []int64{10, 10, 10, 9, 10, 10}},
		{rs42, 40, 1, 4, []int64{10, 10, 10, 10, 10, 10}},
		{rs42, 41, 2, 5, []int64{11, 10, 10, 10, 11, 11}},
		{rs42, 95, 3, 10, []int64{30, 25, 20, 20, 30, 30}},
		{rs42, 120, 3, 12, []int64{30, 30, 30, 30, 30, 30}},
		{rep3, 0, 0, 0, []int64{0, 0, 0}},
		{rep3, 95, 10, 10, []int64{95, 95, 95}},
		{RS(6, 3), 6<<20 + 1, 2, 7, []int64{1<<20 + 1, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1}},
	}
	for _, tt := range tests {
		if got := tt.l.Rows(tt.sliceLn); got != tt.rows {
			t.Errorf("%v.Rows(%d) = %d, want %d", tt.l, tt.sliceLn, got, tt.rows)
		}
		if got := tt.l.Cells(tt.sliceLn); got != tt.cells {
			t.Errorf("%v.Cells(%d) = %d, want %d", tt.l, tt.sliceLn, got, tt.cells)
		}
		var got []int64
		for i := range tt.l.Shards() {
			got = append(got, tt.l.ShardLength(tt.sliceLn, i))
		}
		if !reflect.DeepEqual(got, tt.lengths) {
			t.Errorf("%v ShardLength(%d, *) = %v, want %v", tt.l, tt.sliceLn, got, tt.lengths)
		}
		for _, bad := range []int{-1, tt.l.Shards()} {
			if n := tt.l.ShardLength(tt.sliceLn, bad); n != 0 {
				t.Errorf("%v.ShardLength(%d, %d) = %d, want 0", tt.l, tt.sliceLn, bad, n)
			}
		}
	}
	if n := rs42.ShardLength(-5, 0); n != 0 {
		t.Errorf("negative slice length: ShardLength = %d", n)
	}
}

func TestCellLengthTable(t *testing.T) {
	l := RS(4, 2).WithCellSize(10)
	// 95 bytes: rows 0 and 1 are full, row 2 has cells of 10, 5, 0, 0.
	want := map[int64][]int{
		0:  {10, 10, 10, 10, 10, 10},
		1:  {10, 10, 10, 10, 10, 10},
		2:  {10, 5, 0, 0, 10, 10},
		3:  {0, 0, 0, 0, 0, 0},
		-1: {0, 0, 0, 0, 0, 0},
	}
	for row, lens := range want {
		for shard, n := range lens {
			if got := l.CellLength(95, row, shard); got != n {
				t.Errorf("CellLength(95, %d, %d) = %d, want %d", row, shard, got, n)
			}
		}
	}
	// Shorter than one cell: parity is as long as cell 0.
	if got := l.CellLength(3, 0, 5); got != 3 {
		t.Errorf("CellLength(3, 0, 5) = %d, want 3", got)
	}
}

func TestLocateTable(t *testing.T) {
	rs := RS(4, 2).WithCellSize(10)
	tests := []struct {
		l    Layout
		off  int64
		want Position
	}{
		{rs, 0, Position{Row: 0, Shard: 0, Cell: 0, CellOffset: 0, ShardOffset: 0}},
		{rs, 9, Position{Row: 0, Shard: 0, Cell: 0, CellOffset: 9, ShardOffset: 9}},
		{rs, 10, Position{Row: 0, Shard: 1, Cell: 1, CellOffset: 0, ShardOffset: 0}},
		{rs, 37, Position{Row: 0, Shard: 3, Cell: 3, CellOffset: 7, ShardOffset: 7}},
		{rs, 45, Position{Row: 1, Shard: 0, Cell: 4, CellOffset: 5, ShardOffset: 15}},
		{rs, 94, Position{Row: 2, Shard: 1, Cell: 9, CellOffset: 4, ShardOffset: 24}},
		{Replicated(2).WithCellSize(10), 94, Position{Row: 9, Shard: 0, Cell: 9, CellOffset: 4, ShardOffset: 94}},
		{RS(6, 3), 13<<20 + 5, Position{Row: 2, Shard: 1, Cell: 13, CellOffset: 5, ShardOffset: 2<<20 + 5}},
		{rs, -1, Position{Row: -1, Shard: -1, Cell: -1, CellOffset: -1, ShardOffset: -1}},
		{rs, math.MaxInt64, Position{Row: math.MaxInt64 / 40, Shard: int(math.MaxInt64 / 10 % 4), Cell: math.MaxInt64 / 10, CellOffset: 7, ShardOffset: math.MaxInt64/40*10 + 7}},
	}
	for _, tt := range tests {
		if got := tt.l.Locate(tt.off); got != tt.want {
			t.Errorf("%v.Locate(%d) = %+v, want %+v", tt.l, tt.off, got, tt.want)
		}
	}
}

func TestExtentsTable(t *testing.T) {
	l := RS(4, 2).WithCellSize(10)
	tests := []struct {
		sliceLen, off, n int64
		want             []Extent
	}{
		{95, 0, 0, nil},
		{95, 95, 0, nil},
		{95, 8, 15, []Extent{
			{Shard: 0, Row: 0, Offset: 8, Length: 2, BufOffset: 0},
			{Shard: 1, Row: 0, Offset: 0, Length: 10, BufOffset: 2},
			{Shard: 2, Row: 0, Offset: 0, Length: 3, BufOffset: 12},
		}},
		{95, 38, 14, []Extent{
			{Shard: 3, Row: 0, Offset: 8, Length: 2, BufOffset: 0},
			{Shard: 0, Row: 1, Offset: 10, Length: 10, BufOffset: 2},
			{Shard: 1, Row: 1, Offset: 10, Length: 2, BufOffset: 12},
		}},
		{95, 90, 5, []Extent{{Shard: 1, Row: 2, Offset: 20, Length: 5, BufOffset: 0}}},
	}
	for _, tt := range tests {
		got, err := l.Extents(tt.sliceLen, tt.off, tt.n)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Extents(%d, %d, %d) = %+v, %v; want %+v", tt.sliceLen, tt.off, tt.n, got, err, tt.want)
		}
	}
	rep := Replicated(3).WithCellSize(10)
	got, err := rep.Extents(95, 5, 20)
	want := []Extent{
		{Shard: 0, Row: 0, Offset: 5, Length: 5, BufOffset: 0},
		{Shard: 0, Row: 1, Offset: 10, Length: 10, BufOffset: 5},
		{Shard: 0, Row: 2, Offset: 20, Length: 5, BufOffset: 15},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("replicated Extents = %+v, %v; want %+v", got, err, want)
	}
}

func TestExtentsErrors(t *testing.T) {
	l := RS(4, 2).WithCellSize(10)
	tests := []struct {
		sliceLen, off, n int64
		want             string
	}{
		{-1, 0, 0, "negative slice length"},
		{95, -1, 5, "outside the slice"},
		{95, 0, -1, "outside the slice"},
		{95, 96, 0, "outside the slice"},
		{95, 90, 6, "outside the slice"},
		{95, 1, math.MaxInt64, "outside the slice"},
		{math.MaxInt64, math.MaxInt64 - 5, 10, "outside the slice"},
		{math.MaxInt64, 0, math.MaxInt64, "more than 1048576"},
	}
	for _, tt := range tests {
		dst := []Extent{{Shard: 7}}
		got, err := l.AppendExtents(dst, tt.sliceLen, tt.off, tt.n)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Extents(%d, %d, %d) error = %v, want %q", tt.sliceLen, tt.off, tt.n, err, tt.want)
		}
		if len(got) != 1 || got[0].Shard != 7 {
			t.Errorf("Extents(%d, %d, %d) changed dst on error: %+v", tt.sliceLen, tt.off, tt.n, got)
		}
	}
	// The far end of the int64 range works.
	got, err := l.Extents(math.MaxInt64, math.MaxInt64-3, 3)
	if err != nil || len(got) != 1 || got[0].Length != 3 {
		t.Errorf("Extents at MaxInt64 = %+v, %v", got, err)
	}
}

func TestAppendCells(t *testing.T) {
	l := RS(2, 1).WithCellSize(4)
	shard := []byte("abcdefghij")
	cells := l.AppendCells(nil, shard)
	want := [][]byte{[]byte("abcd"), []byte("efgh"), []byte("ij")}
	if !reflect.DeepEqual(cells, want) {
		t.Fatalf("AppendCells = %q, want %q", cells, want)
	}
	// Cells are capped so appending to one cannot overwrite the next.
	cells[0] = append(cells[0], 'X')
	if string(shard) != "abcdefghij" {
		t.Fatalf("append to a cell overwrote the shard: %q", shard)
	}
	if got := l.AppendCells(nil, nil); len(got) != 0 {
		t.Fatalf("empty shard has %d cells", len(got))
	}
}

// testLayouts are the layouts the property tests sweep, with small cells.
func testLayouts() []Layout {
	var ls []Layout
	for _, cell := range []int{1000, 4096} {
		for _, l := range []Layout{RS(2, 1), RS(4, 2), RS(6, 3), RS(10, 4), Replicated(1), Replicated(2), Replicated(3)} {
			ls = append(ls, l.WithCellSize(cell))
		}
	}
	return ls
}

// testLengths are the slice lengths every property test includes, plus a
// few random ones.
func testLengths(l Layout, rng *rand.Rand) []int64 {
	cell, row := int64(l.CellSize()), l.StripeRow()
	ls := []int64{0, 1, cell - 1, cell, cell + 1, row - 1, row, row + 1, 2*row + cell/2, 3<<20 + 17}
	for range 3 {
		ls = append(ls, rng.Int63n(8*row)+1)
	}
	var out []int64
	for _, n := range ls {
		if n >= 0 {
			out = append(out, n)
		}
	}
	return out
}

func TestStripeInvariants(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, l := range testLayouts() {
		for _, L := range testLengths(l, rng) {
			checkStripeInvariants(t, rng, l, L)
		}
	}
}

// checkStripeInvariants checks the documented relations between Rows,
// Cells, ShardLength, CellLength and Locate for one slice length.
func checkStripeInvariants(t *testing.T, rng *rand.Rand, l Layout, L int64) {
	t.Helper()
	k, cell := l.DataShards(), int64(l.CellSize())
	rows := l.Rows(L)
	var dataSum int64
	for i := range l.Shards() {
		sl := l.ShardLength(L, i)
		if i < k {
			dataSum += sl
		} else if sl != l.ShardLength(L, 0) {
			t.Fatalf("%v L=%d: parity shard %d has %d bytes, shard 0 has %d", l, L, i, sl, l.ShardLength(L, 0))
		}
		if l.IsReplicated() && sl != L {
			t.Fatalf("%v L=%d: copy %d has %d bytes", l, L, i, sl)
		}
		var cellSum int64
		for r := range rows {
			cl := int64(l.CellLength(L, r, i))
			if cl > cell || cl < 0 || (r < rows-1 && cl != cell) {
				t.Fatalf("%v L=%d: CellLength(row %d, shard %d) = %d", l, L, r, i, cl)
			}
			cellSum += cl
		}
		if cellSum != sl {
			t.Fatalf("%v L=%d shard %d: cells sum to %d, ShardLength %d", l, L, i, cellSum, sl)
		}
		if got := int64(len(l.AppendCells(nil, make([]byte, sl)))); got != (sl+cell-1)/cell {
			t.Fatalf("%v L=%d shard %d: %d cells", l, L, i, got)
		}
	}
	if dataSum != L {
		t.Fatalf("%v L=%d: data shards hold %d bytes", l, L, dataSum)
	}
	if L > 0 {
		last := l.Locate(L - 1)
		if last.Row != rows-1 || last.Cell != l.Cells(L)-1 {
			t.Fatalf("%v L=%d: last byte at %+v, rows %d, cells %d", l, L, last, rows, l.Cells(L))
		}
		if last.ShardOffset != l.ShardLength(L, last.Shard)-1 {
			t.Fatalf("%v L=%d: last byte at shard offset %d, shard %d has %d bytes", l, L, last.ShardOffset, last.Shard, l.ShardLength(L, last.Shard))
		}
	}
	for range 20 {
		if L == 0 {
			break
		}
		off := rng.Int63n(L)
		p := l.Locate(off)
		if p.Cell != off/cell || p.Shard != int(p.Cell%int64(k)) || p.Row != p.Cell/int64(k) ||
			int64(p.CellOffset) != off%cell || p.ShardOffset != p.Row*cell+int64(p.CellOffset) ||
			p.ShardOffset >= l.ShardLength(L, p.Shard) {
			t.Fatalf("%v L=%d: Locate(%d) = %+v", l, L, off, p)
		}
	}
}

// TestExtentsReassemble reads random ranges through Extents from the
// shards Split produced and compares them with the original slice.
func TestExtentsReassemble(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, l := range testLayouts() {
		c := mustCoder(t, l)
		for _, L := range testLengths(l, rng) {
			slice := randBytes(rng, int(L))
			shards := c.Split(slice)
			ranges := [][2]int64{{0, L}, {L, 0}}
			for range 25 {
				off := rng.Int63n(L + 1)
				ranges = append(ranges, [2]int64{off, rng.Int63n(L - off + 1)})
			}
			for _, r := range ranges {
				off, n := r[0], r[1]
				exts, err := l.Extents(L, off, n)
				if err != nil {
					t.Fatalf("%v L=%d Extents(%d, %d): %v", l, L, off, n, err)
				}
				buf := make([]byte, n)
				var covered int64
				for _, e := range exts {
					if e.BufOffset != covered {
						t.Fatalf("%v L=%d [%d,+%d): extent %+v does not follow %d", l, L, off, n, e, covered)
					}
					rowStart := e.Row * int64(l.CellSize())
					if e.Offset < rowStart || e.Offset+e.Length > rowStart+int64(l.CellLength(L, e.Row, e.Shard)) || e.Length <= 0 {
						t.Fatalf("%v L=%d: extent %+v leaves its cell", l, L, e)
					}
					copy(buf[e.BufOffset:], shards[e.Shard][e.Offset:e.Offset+e.Length])
					covered += e.Length
				}
				if covered != n {
					t.Fatalf("%v L=%d [%d,+%d): extents cover %d bytes", l, L, off, n, covered)
				}
				if !bytes.Equal(buf, slice[off:off+n]) {
					t.Fatalf("%v L=%d [%d,+%d): reassembled bytes differ", l, L, off, n)
				}
			}
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}
