package erasure

import (
	"errors"
	"fmt"

	"github.com/klauspost/reedsolomon"
)

// Coder encodes and reconstructs the shards of one Layout. Build it once per
// layout with NewCoder and share it: it holds no per-call state, so all
// methods are safe for concurrent use, and it wraps a single
// reedsolomon.Encoder whose matrix and inversion cache are reused.
//
// Ownership: methods never keep a reference to caller buffers after they
// return, and run entirely on the calling goroutine.
//
// Buffers: the row methods (EncodeRow, Reconstruct, ReconstructData,
// ReconstructRow, ReconstructRowData) write into caller-provided memory
// wherever the caller gave enough capacity, and allocate nothing of their
// own for a full stripe row; they allocate scratch only for a partial last
// row, and a new buffer for an output whose capacity is too small.
//
// The parity of RS(k, m) is that of reedsolomon.New(k, m) with its default
// Vandermonde-derived matrix. That matrix is part of the on-disk format:
// changing it, or the options that select it, makes stored parity useless.
type Coder struct {
	layout Layout
	rs     reedsolomon.Encoder // nil for a replicated layout
}

// NewCoder returns the Coder for l, or l.Validate's error.
func NewCoder(l Layout) (*Coder, error) {
	// One goroutine per call: encoding a 1 MiB-cell row takes about 2% of
	// the time hashing it does, so the cores are better spent on
	// ChecksumCells and on concurrent streams; reedsolomon's goroutines
	// were no faster in BenchmarkEncodeOptions, in or out of cache.
	return newCoder(l, reedsolomon.WithMaxGoroutines(1))
}

// newCoder lets benchmarks compare reedsolomon options. Only options that
// leave the coding matrix alone may be passed (see Coder).
func newCoder(l Layout, opts ...reedsolomon.Option) (*Coder, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	c := &Coder{layout: l}
	if l.IsRS() {
		rs, err := reedsolomon.New(l.DataShards(), l.ParityShards(), opts...)
		if err != nil {
			return nil, fmt.Errorf("erasure: %s: %w", l, err)
		}
		c.rs = rs
	}
	return c, nil
}

// Layout returns the layout c codes.
func (c *Coder) Layout() Layout {
	if c == nil {
		return 0
	}
	return c.layout
}

var errNoCoder = errors.New("erasure: Coder not initialized; use NewCoder")

// ready rejects a nil or zero Coder instead of dereferencing nil.
func (c *Coder) ready() error {
	if c == nil || !c.layout.valid() || c.layout.IsRS() != (c.rs != nil) {
		return errNoCoder
	}
	return nil
}

// EncodeRow computes the parity of one stripe row in place.
//
// shards has Shards() entries: the row's k data cells, then its m parity
// cells. The row's width w is len(shards[0]). Data cells may be shorter
// than w — the last row of a slice is partial — and are encoded as if
// zero-padded to w, without the caller padding them or the method writing
// beyond their length. Each parity entry is resliced to length w and
// overwritten, using its own capacity when it is at least w and a new
// buffer otherwise (so pass pooled buffers of CellSize() capacity to stay
// allocation-free). Data cells are only read.
//
// Because the code works byte-wise, entries that hold several full rows
// back to back (equal lengths) are encoded correctly too.
//
// For a replicated layout shards[0] is the data and each other entry
// becomes a copy of it.
func (c *Coder) EncodeRow(shards [][]byte) error {
	if err := c.ready(); err != nil {
		return err
	}
	l := c.layout
	n, k := l.Shards(), l.DataShards()
	if len(shards) != n {
		return fmt.Errorf("erasure: %s: EncodeRow got %d shards, want %d", l, len(shards), n)
	}
	w := len(shards[0])
	short := w
	for i := 1; i < k; i++ {
		if len(shards[i]) > w {
			return fmt.Errorf("erasure: %s: EncodeRow: data cell %d has %d bytes, more than cell 0's %d", l, i, len(shards[i]), w)
		}
		short = min(short, len(shards[i]))
	}
	for j := k; j < n; j++ {
		shards[j] = resize(shards[j], w)
	}
	if w == 0 {
		return nil
	}
	if c.rs == nil {
		for j := 1; j < n; j++ {
			copy(shards[j], shards[0])
		}
		return nil
	}
	if short == w {
		return c.wrap(c.rs.Encode(shards))
	}
	return c.encodeShort(shards, short, w)
}

// encodeShort encodes a row whose data cells are not all w bytes long.
// Parity is linear, so the common prefix of all cells is encoded in one
// pass and every longer cell adds its own tail to the parity afterwards;
// this never needs zero-padded copies of the cells.
func (c *Coder) encodeShort(shards [][]byte, short, w int) error {
	k, m := c.layout.DataShards(), c.layout.ParityShards()
	if short > 0 {
		head := make([][]byte, len(shards))
		for i, s := range shards {
			head[i] = s[:short]
		}
		if err := c.rs.Encode(head); err != nil {
			return c.wrap(err)
		}
	}
	for _, p := range shards[k:] {
		clear(p[short:w])
	}
	tail := make([][]byte, m)
	for i, d := range shards[:k] {
		if len(d) <= short {
			continue
		}
		for j := range tail {
			tail[j] = shards[k+j][short:len(d)]
		}
		if err := c.rs.EncodeIdx(d[short:], i, tail); err != nil {
			return c.wrap(err)
		}
	}
	return nil
}

// Reconstruct rebuilds missing entries of a set of equal-length shards: a
// stripe row whose short cells the caller zero-padded, or several full
// rows back to back. shards has Shards() entries; an entry that is nil or
// empty is missing and is replaced by its rebuilt bytes, written into the
// entry's own capacity when that suffices (reedsolomon's convention).
// Present entries must all have the same length and are only read.
//
// For the partial last row of a slice, whose cells differ in length, use
// ReconstructRow, which knows which cells are merely short or empty.
//
// With more than Tolerates() entries missing nothing is changed and the
// error is a *TooFewShardsError naming them. The rebuilt bytes are what the
// survivors imply; verify checksums first so corrupt survivors count as
// missing.
func (c *Coder) Reconstruct(shards [][]byte) error {
	return c.reconstructEqual(shards, false)
}

// ReconstructData is Reconstruct restricted to the data shards: missing
// parity entries are left missing, which saves the work when only the data
// is wanted (a degraded read).
func (c *Coder) ReconstructData(shards [][]byte) error {
	return c.reconstructEqual(shards, true)
}

func (c *Coder) reconstructEqual(shards [][]byte, dataOnly bool) error {
	if err := c.ready(); err != nil {
		return err
	}
	l := c.layout
	if len(shards) != l.Shards() {
		return fmt.Errorf("erasure: %s: got %d shards, want %d", l, len(shards), l.Shards())
	}
	w, first := 0, -1
	for i, s := range shards {
		if len(s) == 0 {
			continue
		}
		if first < 0 {
			w, first = len(s), i
		} else if len(s) != w {
			return fmt.Errorf("erasure: %s: shard %d has %d bytes, shard %d has %d; shards must be equal in length", l, i, len(s), first, w)
		}
	}
	if first < 0 {
		// Nothing present: not even the length is known.
		e := &TooFewShardsError{Layout: l, Need: l.DataShards()}
		for i := range shards {
			e.Missing = append(e.Missing, i)
		}
		return e
	}
	var want [MaxShards]int
	for i := range shards {
		want[i] = w
	}
	return c.rebuild(shards, want[:len(shards)], dataOnly)
}

// ReconstructRow rebuilds the missing cells of stripe row row of a slice of
// sliceLen bytes. shards has Shards() entries holding the row's cells at
// their real lengths, CellLength(sliceLen, row, i): short cells of a
// partial row are passed short, not padded. An entry is missing if it is
// nil or empty while its cell is not empty; missing entries are replaced by
// their rebuilt cells, at their real lengths, written into their own
// capacity when it suffices. Cells whose real length is 0 are never missing.
//
// It fails, changing nothing, if row is not a row of the slice, a present
// entry has the wrong length, or more than Tolerates() cells are missing
// (a *TooFewShardsError).
func (c *Coder) ReconstructRow(sliceLen, row int64, shards [][]byte) error {
	return c.reconstructRow(sliceLen, row, shards, false)
}

// ReconstructRowData is ReconstructRow restricted to the data cells.
func (c *Coder) ReconstructRowData(sliceLen, row int64, shards [][]byte) error {
	return c.reconstructRow(sliceLen, row, shards, true)
}

func (c *Coder) reconstructRow(sliceLen, row int64, shards [][]byte, dataOnly bool) error {
	if err := c.ready(); err != nil {
		return err
	}
	l := c.layout
	if len(shards) != l.Shards() {
		return fmt.Errorf("erasure: %s: got %d shards, want %d", l, len(shards), l.Shards())
	}
	if rows := l.Rows(sliceLen); row < 0 || row >= rows {
		return fmt.Errorf("erasure: %s: row %d is outside the %d rows of a slice of %d bytes", l, row, rows, sliceLen)
	}
	var want [MaxShards]int
	for i := range shards {
		want[i] = l.CellLength(sliceLen, row, i)
	}
	return c.rebuild(shards, want[:len(shards)], dataOnly)
}

// ReconstructSlice rebuilds the missing whole shards of a slice of sliceLen
// bytes, as a chunkserver does for repair. shards has Shards() entries,
// each present one exactly ShardLength(sliceLen, i) bytes long; an entry is
// missing if it is nil or empty while its shard is not empty. Missing
// entries are replaced by the rebuilt shards, written into their own
// capacity when it suffices.
//
// It fails, changing nothing, if a present entry has the wrong length or
// more than Tolerates() shards are missing (a *TooFewShardsError).
func (c *Coder) ReconstructSlice(shards [][]byte, sliceLen int64) error {
	if err := c.ready(); err != nil {
		return err
	}
	want, err := c.shardLengths(shards, sliceLen)
	if err != nil {
		return err
	}
	return c.rebuild(shards, want[:len(shards)], false)
}

// shardLengths checks the shard count and slice length and returns every
// shard's expected length.
func (c *Coder) shardLengths(shards [][]byte, sliceLen int64) ([MaxShards]int, error) {
	var want [MaxShards]int
	l := c.layout
	if len(shards) != l.Shards() {
		return want, fmt.Errorf("erasure: %s: got %d shards, want %d", l, len(shards), l.Shards())
	}
	if sliceLen < 0 {
		return want, fmt.Errorf("erasure: %s: negative slice length %d", l, sliceLen)
	}
	for i := range shards {
		n := l.ShardLength(sliceLen, i)
		if int64(int(n)) != n {
			return want, fmt.Errorf("erasure: %s: shard %d of a slice of %d bytes does not fit in memory", l, i, sliceLen)
		}
		want[i] = int(n)
	}
	return want, nil
}

// rebuild is the one reconstruction routine behind every public variant.
//
// want[i] is shard i's true length. Parity shards and data shard 0 are the
// longest, w; the shortest data shard has short bytes. Every shard is full
// over [0, short), so that region is one reedsolomon call on the caller's
// memory. Over [short, w) — present only when the last row is partial —
// shorter shards continue as zeros: they are padded into scratch (and
// those with nothing there are known zeros, never missing), decoded, and
// the rebuilt tails copied back.
func (c *Coder) rebuild(shards [][]byte, want []int, dataOnly bool) error {
	l := c.layout
	k, n := l.DataShards(), l.Shards()
	var missing [MaxShards]bool
	nMissing := 0
	for i, s := range shards {
		switch {
		case len(s) == want[i]:
		case len(s) == 0:
			missing[i] = true
			nMissing++
		default:
			return fmt.Errorf("erasure: %s: shard %d has %d bytes, want %d", l, i, len(s), want[i])
		}
	}
	if nMissing == 0 {
		return nil
	}
	if nMissing > l.Tolerates() {
		e := &TooFewShardsError{Layout: l, Need: k, Have: n - nMissing}
		for i := range n {
			if missing[i] {
				e.Missing = append(e.Missing, i)
			}
		}
		return e
	}
	needed := func(i int) bool { return missing[i] && (!dataOnly || i < k) }

	if c.rs == nil {
		var src []byte
		for i, s := range shards {
			if !missing[i] {
				src = s
				break
			}
		}
		for i := range shards {
			if needed(i) {
				shards[i] = resize(shards[i], want[i])
				copy(shards[i], src)
			}
		}
		return nil
	}

	w, short := want[0], want[0]
	for i := range k {
		short = min(short, want[i])
	}
	// Every needed shard gets its output memory first: reedsolomon writes
	// the head into an empty entry's capacity, the tail is copied after it.
	// The caller's entries are only replaced once everything succeeded.
	var out [MaxShards][]byte
	for i := range n {
		if needed(i) {
			out[i] = resize(shards[i], want[i])
		}
	}
	if short > 0 {
		head := make([][]byte, n)
		for i, s := range shards {
			switch {
			case needed(i):
				head[i] = out[i][:0]
			case missing[i]:
				head[i] = nil // parity left missing by a data-only rebuild
			default:
				head[i] = s[:short]
			}
		}
		if err := c.decode(head, dataOnly); err != nil {
			return err
		}
	}
	if short < w {
		if err := c.rebuildTail(shards, want, out[:n], missing[:n], dataOnly, short, w); err != nil {
			return err
		}
	}
	for i := range n {
		if needed(i) {
			shards[i] = out[i]
		}
	}
	return nil
}

// decode runs reedsolomon on equal-length shards whose empty entries are
// to be filled.
func (c *Coder) decode(shards [][]byte, dataOnly bool) error {
	if dataOnly {
		return c.wrap(c.rs.ReconstructData(shards))
	}
	return c.wrap(c.rs.Reconstruct(shards))
}

// rebuildTail decodes region [short, w) of the shards, where data shards
// shorter than w continue as zeros, and copies the rebuilt bytes into out.
// It allocates scratch, but only for the partial last row of a slice.
func (c *Coder) rebuildTail(shards [][]byte, want []int, out [][]byte, missing []bool, dataOnly bool, short, w int) error {
	n, k, t := len(shards), c.layout.DataShards(), w-short
	scratch := make([]byte, n*t)
	tail := make([][]byte, n)
	for i := range n {
		buf := scratch[i*t : (i+1)*t : (i+1)*t]
		switch {
		case missing[i] && dataOnly && i >= k:
			tail[i] = nil
		case missing[i] && want[i] > short:
			tail[i] = buf[:0] // reedsolomon fills it in
		case want[i] == w:
			tail[i] = shards[i][short:w]
		case missing[i]:
			// Lost, but it ends by short, so the tail is known zeros.
			tail[i] = buf
		default:
			// A short or empty present cell: zeros beyond its real end.
			copy(buf, shards[i][short:want[i]])
			tail[i] = buf
		}
	}
	if err := c.decode(tail, dataOnly); err != nil {
		return err
	}
	for i := range n {
		if missing[i] && !(dataOnly && i >= k) && want[i] > short {
			// out[i] has want[i] bytes; its head came from the head decode.
			copy(out[i][short:want[i]], tail[i])
		}
	}
	return nil
}

// resize returns b with length n, reusing its capacity when it suffices.
func resize(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// wrap names the layout in a reedsolomon error. Arguments are checked
// before reedsolomon sees them, so these indicate a bug here.
func (c *Coder) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("erasure: %s: %w", c.layout, err)
}

// Split cuts a whole slice into its Shards() shards, each of its
// ShardLength, and computes the parity: data shard i receives cells i, i+k,
// i+2k, … back to back (see the package documentation). It copies; the
// result never aliases slice. All shards share one allocation. For a
// replicated layout every entry is the same single copy of slice, so
// treat the result as read-only. A nil or zero Coder yields nil.
//
// Split is the convenience path for tests and small slices; a streaming
// writer fills one stripe row at a time and calls EncodeRow instead.
func (c *Coder) Split(slice []byte) [][]byte {
	if c.ready() != nil {
		return nil
	}
	l := c.layout
	n, k, cell := l.Shards(), l.DataShards(), l.CellSize()
	L := int64(len(slice))
	shards := make([][]byte, n)
	if c.rs == nil {
		cp := append([]byte(nil), slice...)
		if cp == nil {
			cp = []byte{}
		}
		for i := range shards {
			shards[i] = cp
		}
		return shards
	}
	total := 0
	for i := range n {
		total += int(l.ShardLength(L, i))
	}
	buf := make([]byte, total)
	for i := range n {
		sz := int(l.ShardLength(L, i))
		shards[i], buf = buf[:sz:sz], buf[sz:]
	}
	for off, ci := 0, 0; off < len(slice); off, ci = off+cell, ci+1 {
		at := (ci / k) * cell
		copy(shards[ci%k][at:], slice[off:min(off+cell, len(slice))])
	}
	// All full rows are encoded in one call: every shard holds them at the
	// same offsets, and the code works byte-wise.
	full := int(L/l.StripeRow()) * cell
	if full > 0 {
		head := make([][]byte, n)
		for i, s := range shards {
			head[i] = s[:full]
		}
		if c.rs.Encode(head) != nil {
			return nil // unreachable: the lengths are equal and non-zero
		}
	}
	if full < len(shards[0]) {
		row := make([][]byte, n)
		for i, s := range shards {
			row[i] = s[full:]
		}
		if c.EncodeRow(row) != nil {
			return nil // unreachable: cell 0 is the longest, parity has room
		}
	}
	return shards
}

// Join returns the sliceLen bytes of a slice from its shards, rebuilding
// missing data shards first. shards has Shards() entries; an entry that is
// nil or empty while its shard is not empty is missing, and every present
// entry must be exactly ShardLength(sliceLen, i) bytes long. Join neither
// modifies shards nor writes into their memory; the result is new memory.
//
// It fails with a *TooFewShardsError naming the missing shards when more
// than Tolerates() are missing, and with a plain error for a wrong count,
// length or slice length. Join trusts the bytes it is given: callers verify
// checksums first and pass corrupt shards as missing.
func (c *Coder) Join(shards [][]byte, sliceLen int64) ([]byte, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	want, err := c.shardLengths(shards, sliceLen)
	if err != nil {
		return nil, err
	}
	l := c.layout
	n, k, cell := l.Shards(), l.DataShards(), l.CellSize()
	work := make([][]byte, n)
	for i, s := range shards {
		if len(s) != 0 {
			work[i] = s // entries left nil are rebuilt into fresh memory
		}
	}
	if err := c.rebuild(work, want[:n], true); err != nil {
		return nil, err
	}
	out := make([]byte, sliceLen)
	for off, ci := 0, 0; off < len(out); off, ci = off+cell, ci+1 {
		at := (ci / k) * cell
		end := min(off+cell, len(out))
		copy(out[off:end], work[ci%k][at:at+end-off])
	}
	return out, nil
}
