package erasure

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/reedsolomon"
)

func mustCoder(t testing.TB, l Layout) *Coder {
	t.Helper()
	c, err := NewCoder(l)
	if err != nil {
		t.Fatalf("NewCoder(%v): %v", l, err)
	}
	return c
}

// lossSets returns the sets of shards to lose: every subset of at most
// max shards when that is cheap, otherwise the empty set, every single
// shard, and samples random sets of each size up to max.
func lossSets(rng *rand.Rand, n, max int, exhaustive bool) [][]int {
	var sets [][]int
	if exhaustive {
		for mask := 0; mask < 1<<n; mask++ {
			var s []int
			for i := range n {
				if mask&(1<<i) != 0 {
					s = append(s, i)
				}
			}
			if len(s) <= max {
				sets = append(sets, s)
			}
		}
		return sets
	}
	sets = append(sets, nil)
	for i := range n {
		if max >= 1 {
			sets = append(sets, []int{i})
		}
	}
	for size := 2; size <= max; size++ {
		for range 2 {
			s := rng.Perm(n)[:size]
			slices.Sort(s)
			sets = append(sets, s)
		}
	}
	return sets
}

// countSets is the number of subsets of at most max of n shards.
func countSets(n, max int) int {
	total, binom := 0, 1
	for size := 0; size <= max; size++ {
		total += binom
		binom = binom * (n - size) / (size + 1)
	}
	return total
}

// writerSums is what a writer stores: the checksum of every cell of every
// shard.
func writerSums(l Layout, shards [][]byte) [][][ChecksumSize]byte {
	sums := make([][][ChecksumSize]byte, len(shards))
	for i, s := range shards {
		cells := l.AppendCells(nil, s)
		sums[i] = make([][ChecksumSize]byte, len(cells))
		if err := ChecksumCells(cells, sums[i]); err != nil {
			panic(err)
		}
	}
	return sums
}

// readerView is what a reader ends up with: every shard whose cells all
// verify, and nil for the rest.
func readerView(l Layout, shards [][]byte, sums [][][ChecksumSize]byte) [][]byte {
	out := make([][]byte, len(shards))
	for i, s := range shards {
		if s == nil {
			continue
		}
		ok := true
		for c, cell := range l.AppendCells(nil, s) {
			if err := Verify(cell, sums[i][c][:]); err != nil {
				if !errors.Is(err, ErrChecksum) {
					panic(err)
				}
				ok = false
				break
			}
		}
		if ok {
			out[i] = s
		}
	}
	return out
}

// TestSplitJoinSurvivesLoss is the central property: for every layout and
// slice length, losing or corrupting any set of at most m shards leaves
// the slice recoverable by Join and the shards by ReconstructSlice.
func TestSplitJoinSurvivesLoss(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, l := range testLayouts() {
		c := mustCoder(t, l)
		t.Run(l.String(), func(t *testing.T) {
			for _, L := range testLengths(l, rng) {
				slice := randBytes(rng, int(L))
				orig := c.Split(slice)
				if len(orig) != l.Shards() {
					t.Fatalf("L=%d: Split returned %d shards", L, len(orig))
				}
				for i, s := range orig {
					if int64(len(s)) != l.ShardLength(L, i) {
						t.Fatalf("L=%d: shard %d has %d bytes, ShardLength %d", L, i, len(s), l.ShardLength(L, i))
					}
				}
				checkParity(t, l, L, orig)
				sums := writerSums(l, orig)
				// Every loss set while that stays cheap (RS(10,4) has 1471),
				// random samples of every size beyond.
				exhaustive := int64(countSets(l.Shards(), l.Tolerates()))*L <= 4<<20
				for _, lost := range lossSets(rng, l.Shards(), l.Tolerates(), exhaustive) {
					damaged := slices.Clone(orig)
					for _, i := range lost {
						if rng.Intn(2) == 0 || len(orig[i]) == 0 {
							damaged[i] = nil
							continue
						}
						// Corrupt one byte; only the checksums reveal it.
						b := bytes.Clone(orig[i])
						b[rng.Intn(len(b))] ^= byte(1 + rng.Intn(255))
						damaged[i] = b
					}
					view := readerView(l, damaged, sums)
					got, err := c.Join(view, L)
					if err != nil {
						t.Fatalf("L=%d lost %v: Join: %v", L, lost, err)
					}
					if !bytes.Equal(got, slice) {
						t.Fatalf("L=%d lost %v: Join returned different bytes", L, lost)
					}
					if err := c.ReconstructSlice(view, L); err != nil {
						t.Fatalf("L=%d lost %v: ReconstructSlice: %v", L, lost, err)
					}
					for i := range view {
						if !bytes.Equal(view[i], orig[i]) {
							t.Fatalf("L=%d lost %v: rebuilt shard %d differs", L, lost, i)
						}
					}
				}
			}
		})
	}
}

// checkParity compares parity with reedsolomon run directly on the shards
// zero-padded row by row: the on-disk format is exactly that.
func checkParity(t *testing.T, l Layout, L int64, shards [][]byte) {
	t.Helper()
	k, n := l.DataShards(), l.Shards()
	if l.IsReplicated() {
		for i := 1; i < n; i++ {
			if !bytes.Equal(shards[i], shards[0]) {
				t.Fatalf("%v L=%d: copy %d differs", l, L, i)
			}
		}
		return
	}
	w := len(shards[0])
	if w == 0 {
		return
	}
	enc, err := reedsolomon.New(k, n-k)
	if err != nil {
		t.Fatal(err)
	}
	padded := make([][]byte, n)
	for i := range n {
		padded[i] = make([]byte, w)
		if i < k {
			copy(padded[i], shards[i])
		}
	}
	if err := enc.Encode(padded); err != nil {
		t.Fatal(err)
	}
	for i := k; i < n; i++ {
		if !bytes.Equal(padded[i], shards[i]) {
			t.Fatalf("%v L=%d: parity shard %d differs from reedsolomon on padded shards", l, L, i)
		}
	}
}

func TestTooFewShards(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, l := range testLayouts() {
		c := mustCoder(t, l)
		for _, L := range testLengths(l, rng) {
			if L > 4*l.StripeRow() {
				continue
			}
			orig := c.Split(randBytes(rng, int(L)))
			var nonEmpty []int
			for i, s := range orig {
				if len(s) > 0 {
					nonEmpty = append(nonEmpty, i)
				}
			}
			for size := l.Tolerates() + 1; size <= len(nonEmpty); size++ {
				lost := slices.Clone(nonEmpty)
				rng.Shuffle(len(lost), func(i, j int) { lost[i], lost[j] = lost[j], lost[i] })
				lost = lost[:size]
				slices.Sort(lost)
				damaged := slices.Clone(orig)
				for _, i := range lost {
					damaged[i] = nil
				}
				before := slices.Clone(damaged)
				_, err := c.Join(damaged, L)
				checkTooFew(t, l, err, lost)
				checkTooFew(t, l, c.ReconstructSlice(damaged, L), lost)
				if !reflect.DeepEqual(before, damaged) {
					t.Fatalf("%v L=%d: failed reconstruction changed the shards", l, L)
				}
			}
		}
	}
}

func checkTooFew(t *testing.T, l Layout, err error, lost []int) {
	t.Helper()
	var tf *TooFewShardsError
	if !errors.As(err, &tf) || !errors.Is(err, ErrTooFewShards) {
		t.Fatalf("%v lost %v: error %v is not a *TooFewShardsError", l, lost, err)
	}
	if !slices.Equal(tf.Missing, lost) || tf.Need != l.DataShards() || tf.Layout != l {
		t.Fatalf("%v lost %v: error %+v", l, lost, tf)
	}
	if want := fmt.Sprintf("missing %v", lost); !strings.Contains(err.Error(), want) {
		t.Fatalf("%v: error %q does not name %v", l, err, lost)
	}
}

func TestTooFewShardsMessage(t *testing.T) {
	c := mustCoder(t, RS(4, 2))
	shards := c.Split(make([]byte, 4<<20))
	shards[1], shards[4], shards[5] = nil, nil, nil
	_, err := c.Join(shards, 4<<20)
	if want := "erasure: RS(4,2) needs 4 shards, have 3: missing [1 4 5]"; err == nil || err.Error() != want {
		t.Fatalf("Join error = %v, want %q", err, want)
	}
	r := mustCoder(t, Replicated(2))
	_, err = r.Join(make([][]byte, 2), 10)
	if want := "erasure: Replicated(2) needs 1 shard, have 0: missing [0 1]"; err == nil || err.Error() != want {
		t.Fatalf("Join error = %v, want %q", err, want)
	}
}

// TestEncodeRowShortCells checks that encoding short cells in place equals
// encoding zero-padded copies, for random cell lengths.
func TestEncodeRowShortCells(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, l := range []Layout{RS(2, 1), RS(4, 2), RS(6, 3), RS(10, 4), RS(3, 3)} {
		l = l.WithCellSize(4096)
		c := mustCoder(t, l)
		enc, _ := reedsolomon.New(l.DataShards(), l.ParityShards())
		k, n := l.DataShards(), l.Shards()
		for iter := range 50 {
			w := 1 + rng.Intn(l.CellSize())
			row := make([][]byte, n)
			padded := make([][]byte, n)
			for i := range n {
				padded[i] = make([]byte, w)
				if i >= k {
					row[i] = make([]byte, 0, w) // pooled parity buffer
					continue
				}
				cl := w
				if i > 0 {
					switch iter % 3 {
					case 0: // a real last row: full cells, then one short, then empty
						cl = min(w, max(0, w*(k-i)/k))
					case 1:
						cl = rng.Intn(w + 1)
					case 2:
						cl = 0
					}
				}
				row[i] = randBytes(rng, cl)
				copy(padded[i], row[i])
			}
			dataBefore := make([][]byte, k)
			for i := range k {
				dataBefore[i] = bytes.Clone(row[i])
			}
			if err := c.EncodeRow(row); err != nil {
				t.Fatalf("%v: EncodeRow: %v", l, err)
			}
			if err := enc.Encode(padded); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if i < k && !bytes.Equal(row[i], dataBefore[i]) {
					t.Fatalf("%v: EncodeRow changed data cell %d", l, i)
				}
				if i >= k && !bytes.Equal(row[i], padded[i]) {
					t.Fatalf("%v iter %d: parity %d differs from padded encoding", l, iter, i)
				}
			}
		}
	}
}

func TestEncodeRowErrors(t *testing.T) {
	c := mustCoder(t, RS(4, 2).WithCellSize(16))
	cell := func(n int) []byte { return make([]byte, n) }
	if err := c.EncodeRow([][]byte{cell(16), cell(16), cell(16), cell(16), cell(16)}); err == nil || !strings.Contains(err.Error(), "got 5 shards, want 6") {
		t.Errorf("short shard list: %v", err)
	}
	if err := c.EncodeRow([][]byte{cell(8), cell(9), nil, nil, nil, nil}); err == nil || !strings.Contains(err.Error(), "data cell 1 has 9 bytes, more than cell 0's 8") {
		t.Errorf("long cell: %v", err)
	}
	// Too little parity capacity is not an error: a buffer is allocated.
	row := [][]byte{cell(16), cell(16), cell(16), cell(16), nil, make([]byte, 3)}
	if err := c.EncodeRow(row); err != nil || len(row[4]) != 16 || len(row[5]) != 16 {
		t.Errorf("parity allocation: %v, lengths %d %d", err, len(row[4]), len(row[5]))
	}
	// An empty row has empty parity.
	row = [][]byte{nil, nil, nil, nil, make([]byte, 5), nil}
	if err := c.EncodeRow(row); err != nil || len(row[4]) != 0 {
		t.Errorf("empty row: %v, parity length %d", err, len(row[4]))
	}
}

// TestEncodeRowReusesBuffers checks that parity lands in the caller's
// buffers and that the wrapper allocates no more than reedsolomon itself.
func TestEncodeRowReusesBuffers(t *testing.T) {
	l := RS(4, 2).WithCellSize(64 << 10)
	c := mustCoder(t, l)
	rng := rand.New(rand.NewSource(6))
	row := make([][]byte, l.Shards())
	for i := range row {
		row[i] = randBytes(rng, l.CellSize())
	}
	p0 := &row[4][0]
	if err := c.EncodeRow(row); err != nil {
		t.Fatal(err)
	}
	if &row[4][0] != p0 {
		t.Fatal("parity was not written into the caller's buffer")
	}
	// reedsolomon's own goroutines allocate a varying amount, so compare
	// without them: the wrapper must add nothing to reedsolomon's count.
	single, err := newCoder(l, reedsolomon.WithMaxGoroutines(1))
	if err != nil {
		t.Fatal(err)
	}
	wrapper := testing.AllocsPerRun(20, func() { _ = single.EncodeRow(row) })
	direct := testing.AllocsPerRun(20, func() { _ = single.rs.Encode(row) })
	if wrapper > direct {
		t.Fatalf("EncodeRow allocates %.1f times per full row, reedsolomon alone %.1f", wrapper, direct)
	}
}

// TestReconstructRow rebuilds every row of several slices, partial last
// rows included, from every loss set.
func TestReconstructRow(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, l := range []Layout{RS(2, 1), RS(4, 2), RS(6, 3), RS(10, 4), Replicated(3)} {
		l = l.WithCellSize(100)
		c := mustCoder(t, l)
		cell := int64(l.CellSize())
		for _, L := range []int64{1, 99, 100, 101, l.StripeRow() - 1, l.StripeRow(), 2*l.StripeRow() + 150, 3*l.StripeRow() - 1} {
			shards := c.Split(randBytes(rng, int(L)))
			for row := range l.Rows(L) {
				orig := make([][]byte, l.Shards())
				for i := range orig {
					start := row * cell
					orig[i] = shards[i][start : start+int64(l.CellLength(L, row, i))]
				}
				for _, lost := range lossSets(rng, l.Shards(), l.Tolerates(), true) {
					for _, dataOnly := range []bool{false, true} {
						cells := slices.Clone(orig)
						for _, i := range lost {
							cells[i] = nil
						}
						var err error
						if dataOnly {
							err = c.ReconstructRowData(L, row, cells)
						} else {
							err = c.ReconstructRow(L, row, cells)
						}
						if err != nil {
							t.Fatalf("%v L=%d row %d lost %v: %v", l, L, row, lost, err)
						}
						for i := range cells {
							if dataOnly && i >= l.DataShards() && slices.Contains(lost, i) {
								if cells[i] != nil {
									t.Fatalf("%v L=%d row %d: data-only rebuild filled parity %d", l, L, row, i)
								}
								continue
							}
							if !bytes.Equal(cells[i], orig[i]) {
								t.Fatalf("%v L=%d row %d lost %v dataOnly=%v: cell %d = %d bytes, want %d", l, L, row, lost, dataOnly, i, len(cells[i]), len(orig[i]))
							}
						}
					}
				}
			}
		}
	}
}

func TestReconstructRowErrors(t *testing.T) {
	l := RS(4, 2).WithCellSize(10)
	c := mustCoder(t, l)
	shards := c.Split(make([]byte, 95))
	row2 := [][]byte{shards[0][20:30], shards[1][20:25], nil, nil, shards[4][20:30], shards[5][20:30]}
	if err := c.ReconstructRow(95, 3, row2); err == nil || !strings.Contains(err.Error(), "row 3 is outside the 3 rows") {
		t.Errorf("row out of range: %v", err)
	}
	if err := c.ReconstructRow(95, -1, row2); err == nil {
		t.Errorf("negative row accepted")
	}
	bad := slices.Clone(row2)
	bad[1] = shards[1][20:24]
	if err := c.ReconstructRow(95, 2, bad); err == nil || !strings.Contains(err.Error(), "shard 1 has 4 bytes, want 5") {
		t.Errorf("wrong length: %v", err)
	}
	// Empty cells of the last row are never missing: losing shards 0 and
	// 1 is within tolerance even though cells 2 and 3 are also nil.
	lost := slices.Clone(row2)
	lost[0], lost[1] = nil, nil
	if err := c.ReconstructRow(95, 2, lost); err != nil {
		t.Fatalf("ReconstructRow with empty cells: %v", err)
	}
	if !bytes.Equal(lost[0], row2[0]) || !bytes.Equal(lost[1], row2[1]) || len(lost[2]) != 0 {
		t.Fatalf("rebuilt row = %q", lost)
	}
}

func TestReconstructEqual(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	for _, l := range []Layout{RS(4, 2), RS(6, 3), Replicated(3)} {
		l = l.WithCellSize(4096)
		c := mustCoder(t, l)
		// Three full rows at once: Reconstruct works on any equal lengths.
		orig := c.Split(randBytes(rng, int(3*l.StripeRow())))
		for _, lost := range lossSets(rng, l.Shards(), l.Tolerates(), true) {
			shards := slices.Clone(orig)
			bufs := map[int]*byte{}
			for _, i := range lost {
				b := make([]byte, 0, len(orig[i])) // capacity to be reused
				shards[i] = b
				bufs[i] = &b[:1][0]
			}
			if err := c.Reconstruct(shards); err != nil {
				t.Fatalf("%v lost %v: %v", l, lost, err)
			}
			for i := range shards {
				if !bytes.Equal(shards[i], orig[i]) {
					t.Fatalf("%v lost %v: shard %d differs", l, lost, i)
				}
				if p, ok := bufs[i]; ok && &shards[i][0] != p {
					t.Fatalf("%v lost %v: shard %d not rebuilt in the given buffer", l, lost, i)
				}
			}
			data := slices.Clone(orig)
			for _, i := range lost {
				data[i] = nil
			}
			if err := c.ReconstructData(data); err != nil {
				t.Fatal(err)
			}
			for i := range data {
				if i < l.DataShards() && !bytes.Equal(data[i], orig[i]) {
					t.Fatalf("%v lost %v: ReconstructData shard %d differs", l, lost, i)
				}
				if i >= l.DataShards() && slices.Contains(lost, i) && data[i] != nil {
					t.Fatalf("%v lost %v: ReconstructData filled parity %d", l, lost, i)
				}
			}
		}
		shards := slices.Clone(orig)
		shards[1] = shards[1][:10]
		if err := c.Reconstruct(shards); err == nil || !strings.Contains(err.Error(), "shard 1 has 10 bytes") {
			t.Errorf("%v: unequal lengths: %v", l, err)
		}
		if err := c.Reconstruct(make([][]byte, l.Shards())); !errors.Is(err, ErrTooFewShards) {
			t.Errorf("%v: all missing: %v", l, err)
		}
		if err := c.Reconstruct(orig[:1]); err == nil {
			t.Errorf("%v: wrong shard count accepted", l)
		}
	}
}

func TestJoinErrors(t *testing.T) {
	l := RS(4, 2).WithCellSize(10)
	c := mustCoder(t, l)
	shards := c.Split(make([]byte, 95))
	if _, err := c.Join(shards[:5], 95); err == nil || !strings.Contains(err.Error(), "got 5 shards, want 6") {
		t.Errorf("short list: %v", err)
	}
	if _, err := c.Join(shards, 96); err == nil || !strings.Contains(err.Error(), "shard 1 has 25 bytes, want 26") {
		t.Errorf("wrong slice length: %v", err)
	}
	if _, err := c.Join(shards, -1); err == nil || !strings.Contains(err.Error(), "negative slice length") {
		t.Errorf("negative slice length: %v", err)
	}
	if _, err := c.Join(shards, 1<<62); err == nil {
		t.Errorf("huge slice length accepted")
	}
	// Join leaves its input alone, including missing entries' memory.
	slice := randBytes(rand.New(rand.NewSource(9)), 95)
	spare := make([]byte, 0, 30)
	in := c.Split(slice)
	in[0] = spare
	got, err := c.Join(in, 95)
	if err != nil || !bytes.Equal(got, slice) {
		t.Fatalf("Join = %v", err)
	}
	if len(in[0]) != 0 || !bytes.Equal(spare[:30], make([]byte, 30)) {
		t.Fatal("Join wrote into a missing entry's memory")
	}
	got, err = c.Join(c.Split(nil), 0)
	if err != nil || len(got) != 0 {
		t.Errorf("empty slice: %q, %v", got, err)
	}
}

func TestNilCoder(t *testing.T) {
	for _, c := range []*Coder{nil, {}} {
		if err := c.EncodeRow(nil); !errors.Is(err, errNoCoder) {
			t.Errorf("EncodeRow: %v", err)
		}
		if err := c.Reconstruct(nil); !errors.Is(err, errNoCoder) {
			t.Errorf("Reconstruct: %v", err)
		}
		if err := c.ReconstructRow(1, 0, nil); !errors.Is(err, errNoCoder) {
			t.Errorf("ReconstructRow: %v", err)
		}
		if err := c.ReconstructSlice(nil, 0); !errors.Is(err, errNoCoder) {
			t.Errorf("ReconstructSlice: %v", err)
		}
		if _, err := c.Join(nil, 0); !errors.Is(err, errNoCoder) {
			t.Errorf("Join: %v", err)
		}
		if c.Split([]byte("x")) != nil {
			t.Errorf("Split on a nil Coder")
		}
		_ = c.Layout()
	}
}
