package client

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Reader reads one file's committed bytes. Open one with
// DataPath.OpenReader per open file handle.
//
// It reads the file as of the layout it fetched at open (or at the last
// Refresh): close-to-open consistency. A layout covers a window of
// layoutWindow chunks; a read beyond it fetches the next window as the
// file is then, so a large file's layout is never fetched whole (a chunk
// rewritten in small pieces lists thousands of refs until compacted).
// Bytes no slice covers read as zeros; where slices overlap the newest
// wins. A Reader is safe for concurrent use. Sequential reads, also when
// they arrive a little out of order as a FUSE mount's do, are served from
// read-ahead windows of Config.ReadAhead bytes: the one being read and the
// next (and, for the last few MiB read, the one before), fetched in the
// background by goroutines the Reader owns; Close stops them.
type Reader struct {
	d      *DataPath
	inode  uint64
	ctx    context.Context // ends at Close; bounds read-ahead
	cancel context.CancelFunc
	wg     sync.WaitGroup // read-ahead goroutines

	mu struct {
		sync.Mutex
		lay *fileLayout
		// prev is the window fetched before lay (nil: none): read-ahead
		// runs into the next window while reads still need this one.
		prev   *fileLayout
		closed bool
		// next is where a sequential read would continue; -1 before
		// the first read.
		next int64
		// ramp is the size of the next read-ahead window, 0 for the
		// first of a run (see nextWindowLocked).
		ramp int64
		wins []*window // read-ahead windows in file order
	}
}

// fileLayout is a file's resolved metadata at one moment, for a window
// of it.
type fileLayout struct {
	inode   uint64
	version uint64
	size    int64
	// lo and hi bound the file bytes whose refs the layout holds.
	lo, hi int64
	inline []byte // the file's inline bytes: a layer under every slice
	refs   []sliceRef
}

// layoutWindow is how many chunks one layout covers.
const layoutWindow = 4

// covers reports whether lay describes file byte pos: it holds pos's
// refs, or pos is at or past the end of the file.
func (lay *fileLayout) covers(pos int64) bool {
	return pos >= lay.lo && (pos < lay.hi || pos >= lay.size)
}

// cellSizeAt returns the cell size of the newest slice holding file byte
// pos, or 0 if none does.
func (lay *fileLayout) cellSizeAt(pos int64) int64 {
	for i := len(lay.refs) - 1; i >= 0; i-- {
		if ref := lay.refs[i]; pos >= ref.fileOff && pos < ref.fileOff+ref.length {
			return int64(ref.s.layout.CellSize())
		}
	}
	return 0
}

// sliceRef places bytes [sliceOff, sliceOff+length) of a slice at file
// offset fileOff; later refs win.
type sliceRef struct {
	s                         *sliceInfo
	fileOff, sliceOff, length int64
}

// window is one read-ahead buffer. buf belongs to the window until it is
// both finished and dropped and no reader holds a reference.
type window struct {
	off  int64
	want int
	buf  []byte
	done chan struct{}
	// Set before done is closed.
	n   int
	err error
	// Guarded by Reader.mu.
	finished, dropped bool
	refs              int
}

// OpenReader fetches inode's layout and returns a Reader for it.
func (d *DataPath) OpenReader(ctx context.Context, inode uint64) (*Reader, error) {
	lay, err := d.fetchLayout(ctx, inode, 0)
	if err != nil {
		return nil, err
	}
	return d.newReader(inode, lay), nil
}

func (d *DataPath) newReader(inode uint64, lay *fileLayout) *Reader {
	r := &Reader{d: d, inode: inode}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.lay = lay
	r.mu.next = -1
	return r
}

// Size is the file's size in the Reader's current layout.
func (r *Reader) Size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.lay.size
}

// Refresh fetches the file's layout again, so that slices committed since
// the Reader was opened become visible, and drops read-ahead.
func (r *Reader) Refresh(ctx context.Context) error {
	r.mu.Lock()
	pos := max(r.mu.next, 0)
	r.mu.Unlock()
	lay, err := r.d.fetchLayout(ctx, r.inode, pos)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return ErrClosed
	}
	r.mu.lay, r.mu.prev = lay, nil
	r.dropAllLocked()
	return nil
}

// layoutAt returns a layout of the Reader's that covers file byte pos,
// fetching that window if it has none.
func (r *Reader) layoutAt(ctx context.Context, pos int64) (*fileLayout, error) {
	r.mu.Lock()
	closed := r.mu.closed
	for _, lay := range []*fileLayout{r.mu.lay, r.mu.prev} {
		if !closed && lay != nil && lay.covers(pos) {
			r.mu.Unlock()
			return lay, nil
		}
	}
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	fresh, err := r.d.fetchLayout(ctx, r.inode, pos)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return nil, ErrClosed
	}
	r.mu.lay, r.mu.prev = fresh, r.mu.lay
	return fresh, nil
}

// ReadAt reads len(p) bytes at file offset off, as io.ReaderAt does: it
// returns n < len(p) only with an error, io.EOF when the file ends first.
// ctx bounds the call (read-ahead already under way continues until
// Close or until it is no longer wanted).
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("client: read inode %d at %d: negative offset", r.inode, off)
	}
	lay, err := r.layoutAt(ctx, off)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return 0, ErrClosed
	}
	// A read continues a sequential run when it starts where the last
	// ended or falls in a window already fetched or under way: the kernel
	// sends a mount's read-ahead requests concurrently, and they reach
	// the Reader in any order. The first read of a run is served
	// directly, so that reading a file's first bytes (a header, a magic
	// number) costs the cells they are in, not a window.
	sequential := r.d.cfg.ReadAhead > 0 && len(lay.refs) > 0 &&
		(off == r.mu.next || r.coveredLocked(off))
	if end := off + int64(len(p)); !sequential || end > r.mu.next {
		r.mu.next = end
	}
	if !sequential {
		r.mu.ramp = 0
		r.dropAllLocked()
		r.mu.Unlock()
		return r.readDirect(ctx, p, off, true)
	}
	r.mu.Unlock()

	total := 0
	for total < len(p) {
		pos := off + int64(total)
		if pos >= lay.size {
			return total, io.EOF
		}
		w, err := r.window(pos)
		if err != nil {
			return total, err
		}
		select {
		case <-w.done:
		case <-ctx.Done():
			r.unref(w)
			return total, fmt.Errorf("client: read inode %d at %d: %w", r.inode, pos, ctx.Err())
		}
		if w.err != nil || pos >= w.off+int64(w.n) {
			// Read-ahead failed (or the Reader is closing): read directly,
			// which reports the error with the caller's context.
			r.unref(w)
			n, err := r.readDirect(ctx, p[total:], pos, true)
			return total + n, err
		}
		total += copy(p[total:], w.buf[pos-w.off:w.n])
		r.unref(w)
	}
	return total, nil
}

// readDirect reads p at off, window by window of the layout, as
// io.ReaderAt does. With retry, a read that fails while the file has a
// newer version is tried once more against the new layout (see readIn).
func (r *Reader) readDirect(ctx context.Context, p []byte, off int64, retry bool) (int, error) {
	total := 0
	for total < len(p) {
		pos := off + int64(total)
		lay, err := r.layoutAt(ctx, pos)
		if err != nil {
			return total, err
		}
		q := p[total:]
		if pos < lay.size && pos+int64(len(q)) > lay.hi {
			q = q[:lay.hi-pos]
		}
		var n int
		if retry {
			n, err = r.readIn(ctx, lay, q, pos)
		} else {
			n, err = r.d.readRange(ctx, lay, q, pos)
		}
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// readIn reads as lay describes the file. When that fails and the file
// has a newer version, the slices lay names may be gone: compaction
// swapped them for one holding the same bytes and GC deleted them, or
// another client overwrote or truncated the file. The read is then tried
// once more against the new layout, which the Reader keeps, rather than
// failing with an error about shards that no longer matter.
func (r *Reader) readIn(ctx context.Context, lay *fileLayout, p []byte, off int64) (int, error) {
	n, err := r.d.readRange(ctx, lay, p, off)
	if err == nil || err == io.EOF || ctx.Err() != nil {
		return n, err
	}
	fresh, ferr := r.d.fetchLayout(ctx, r.inode, off)
	if ferr != nil || fresh.version == lay.version {
		return n, err
	}
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return 0, ErrClosed
	}
	if r.mu.lay == lay || r.mu.prev == lay {
		r.mu.lay, r.mu.prev = fresh, nil
		r.dropAllLocked()
	}
	r.mu.Unlock()
	// fresh is the same window as lay, which p does not reach past.
	return r.d.readRange(ctx, fresh, p, off)
}

// Close stops read-ahead and releases its buffers. Later calls return
// ErrClosed; closing twice returns ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.mu.closed = true
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
	r.mu.Lock()
	r.dropAllLocked()
	r.mu.Unlock()
	return nil
}

// reorderSlack is how far past a window's end reads may have moved
// (at most one window) before it is dropped, for reads that arrive late:
// the kernel has at most a few of a mount's 1 MiB read-ahead requests out
// at once.
const reorderSlack = 4 << 20

// covers reports whether file byte pos is in the window.
func (w *window) covers(pos int64) bool { return pos >= w.off && pos < w.off+int64(w.want) }

// coveredLocked reports whether a window holds file byte pos.
func (r *Reader) coveredLocked(pos int64) bool {
	for _, w := range r.mu.wins {
		if w.covers(pos) {
			return true
		}
	}
	return false
}

// window returns a referenced window holding pos, starting one there if
// none does, and keeps one more window in flight beyond the one read.
func (r *Reader) window(pos int64) (*window, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return nil, ErrClosed
	}
	r.dropWindowsLocked(pos - min(reorderSlack, r.d.cfg.ReadAhead))
	var w *window
	for _, x := range r.mu.wins {
		if x.covers(pos) {
			w = x
			break
		}
	}
	if w == nil {
		r.dropAllLocked()
		w = r.startLocked(pos)
	}
	if last := r.mu.wins[len(r.mu.wins)-1]; w == last && last.off+int64(last.want) < r.mu.lay.size {
		r.startLocked(last.off + int64(last.want))
	}
	w.refs++
	return w, nil
}

// startLocked starts fetching a window at off.
func (r *Reader) startLocked(off int64) *window {
	lay := r.mu.lay
	cell := lay.cellSizeAt(off)
	end := off + r.nextWindowLocked(cell)
	if cell > 0 && end/cell*cell > off {
		// Ending on a cell boundary, the next window starts on one:
		// cells are fetched whole, and one that two windows share
		// would be fetched twice. (Boundaries in file offsets: a
		// slice placed off them fetches its boundary cells twice.)
		end = end / cell * cell
	}
	w := &window{off: off, want: int(min(end, lay.size) - off), done: make(chan struct{})}
	w.buf = r.d.bufs.get(w.want)
	r.mu.wins = append(r.mu.wins, w)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		n, err := r.readDirect(r.ctx, w.buf, w.off, false)
		if err == io.EOF {
			err = nil
		}
		w.n, w.err = n, err
		close(w.done)
		r.mu.Lock()
		w.finished = true
		r.maybeFreeLocked(w)
		r.mu.Unlock()
	}()
	return w
}

// nextWindowLocked returns the size of the next window to start. A run's
// first window is a quarter of Config.ReadAhead (4 MiB by default, a
// stripe row of RS(4,2) with 1 MiB cells), the later ones the whole, so a
// short sequential read fetches little more than it reads. The first is
// at least cell bytes: cells are fetched whole.
func (r *Reader) nextWindowLocked(cell int64) int64 {
	size := r.mu.ramp
	if size <= 0 {
		size = min(max(r.d.cfg.ReadAhead/4, cell, 1), r.d.cfg.ReadAhead)
	}
	r.mu.ramp = min(4*size, r.d.cfg.ReadAhead)
	return size
}

// dropWindowsLocked drops the windows that end at or before keepFrom.
func (r *Reader) dropWindowsLocked(keepFrom int64) {
	kept := r.mu.wins[:0]
	for _, w := range r.mu.wins {
		if w.off+int64(w.want) > keepFrom {
			kept = append(kept, w)
			continue
		}
		w.dropped = true
		r.maybeFreeLocked(w)
	}
	clear(r.mu.wins[len(kept):])
	r.mu.wins = kept
}

// dropAllLocked drops every window.
func (r *Reader) dropAllLocked() { r.dropWindowsLocked(1 << 62) }

func (r *Reader) unref(w *window) {
	r.mu.Lock()
	w.refs--
	r.maybeFreeLocked(w)
	r.mu.Unlock()
}

func (r *Reader) maybeFreeLocked(w *window) {
	if w.finished && w.dropped && w.refs == 0 && w.buf != nil {
		r.d.bufs.put(w.buf)
		w.buf = nil
	}
}

// fetchLayout asks the master for the window of inode's layout that
// holds file byte pos, and checks it. The first window is cached.
func (d *DataPath) fetchLayout(ctx context.Context, inode uint64, pos int64) (*fileLayout, error) {
	win := layoutWindow * d.cfg.ChunkSize
	lo := pos / win * win
	res, err := d.meta.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: inode, Offset: uint64(lo), Length: uint64(win)})
	if err != nil {
		return nil, fmt.Errorf("client: get layout of inode %d at %d: %w", inode, lo, err)
	}
	lay, err := parseLayout(inode, res)
	if err != nil {
		return nil, err
	}
	lay.lo, lay.hi = lo, lo+win
	if lo == 0 {
		d.layouts.put(lay)
	}
	return lay, nil
}

// parseLayout checks a GetLayout answer for inode and resolves it into a
// fileLayout.
func parseLayout(inode uint64, res *masterpb.GetLayoutResponse) (*fileLayout, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("client: layout of inode %d from master: "+format, append([]any{inode}, args...)...)
	}
	if res.Attr == nil {
		return nil, bad("no attributes")
	}
	if res.Attr.Size > 1<<62 {
		return nil, bad("size %d", res.Attr.Size)
	}
	lay := &fileLayout{inode: inode, version: res.Attr.Version, size: int64(res.Attr.Size), hi: 1 << 62}
	if len(res.InlineData) > 0 {
		lay.inline = res.InlineData
	}
	infos := make(map[uint64]*sliceInfo)
	for _, ref := range res.Slices {
		if ref == nil {
			return nil, bad("empty slice ref")
		}
		si, ok := infos[ref.SliceId]
		if !ok {
			l, err := layoutFromProto(ref.Layout)
			if err != nil {
				return nil, bad("slice %d: %v", ref.SliceId, err)
			}
			if ref.SliceLength > 1<<62 {
				return nil, bad("slice %d: length %d", ref.SliceId, ref.SliceLength)
			}
			si = &sliceInfo{id: ref.SliceId, inode: inode, layout: l, length: int64(ref.SliceLength), shards: make([]*masterpb.ShardLocation, l.Shards())}
			for _, loc := range ref.Shards {
				if loc != nil && int(loc.Index) < len(si.shards) {
					si.shards[loc.Index] = loc
				}
			}
			infos[ref.SliceId] = si
		}
		if ref.Length > uint64(si.length) || ref.SliceOffset > uint64(si.length)-ref.Length || ref.FileOffset > 1<<62 {
			return nil, bad("slice %d: piece [%d, +%d) outside its %d bytes", ref.SliceId, ref.SliceOffset, ref.Length, si.length)
		}
		lay.refs = append(lay.refs, sliceRef{s: si, fileOff: int64(ref.FileOffset), sliceOff: int64(ref.SliceOffset), length: int64(ref.Length)})
	}
	return lay, nil
}

// piece is a part of a read served by one slice.
type piece struct {
	ref      *sliceRef
	from, to int64 // file offsets
}

// resolve returns the pieces of [off, end) that slices cover, newest
// first wins; what no piece covers is a hole. A chunk rewritten in small
// pieces has refs by the ten thousand, so the covered intervals are
// searched and replaced in place rather than scanned and copied per ref.
func (lay *fileLayout) resolve(off, end int64) []piece {
	var covered [][2]int64 // sorted, disjoint
	var out []piece
	for i := len(lay.refs) - 1; i >= 0; i-- {
		ref := &lay.refs[i]
		a, b := max(ref.fileOff, off), min(ref.fileOff+ref.length, end)
		if a >= b {
			continue
		}
		// Intervals j..k-1 overlap or touch [a, b): emit the gaps
		// between them within [a, b), and merge them into one.
		j := sort.Search(len(covered), func(x int) bool { return covered[x][1] >= a })
		pos, lo, hi := a, a, b
		k := j
		for ; k < len(covered) && covered[k][0] <= b; k++ {
			c := covered[k]
			if c[0] > pos {
				out = append(out, piece{ref, pos, c[0]})
			}
			pos = max(pos, c[1])
			lo, hi = min(lo, c[0]), max(hi, c[1])
		}
		if pos < b {
			out = append(out, piece{ref, pos, b})
		}
		covered = slices.Replace(covered, j, k, [2]int64{lo, hi})
	}
	return out
}

// fillHoles fills the parts of dst (file bytes [off, off+len(dst))) that
// no piece covers: from the inline bytes where they reach, zeros beyond.
// Only the holes, because clearing all of dst first costs a pass over
// every byte read.
func fillHoles(dst []byte, off int64, pieces []piece, inline []byte) {
	spans := make([][2]int64, len(pieces))
	for i, pc := range pieces {
		spans[i] = [2]int64{pc.from - off, pc.to - off}
	}
	slices.SortFunc(spans, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	fill := func(a, b int64) {
		n := 0
		if off+a < int64(len(inline)) {
			n = copy(dst[a:b], inline[off+a:])
		}
		clear(dst[a+int64(n) : b])
	}
	pos := int64(0)
	for _, sp := range spans {
		if sp[0] > pos {
			fill(pos, sp[0])
		}
		pos = max(pos, sp[1])
	}
	if pos < int64(len(dst)) {
		fill(pos, int64(len(dst)))
	}
}

// maxParallelPieces bounds the slices one read fetches at once.
const maxParallelPieces = 16

// maxSpan bounds the bytes of one slice a read fetches as one span.
const maxSpan = 8 << 20

// span is a stretch of one slice a read fetches at once, for the pieces
// that lie in it.
type span struct {
	s        *sliceInfo
	from, to int64 // slice offsets
	pieces   []piece
}

// sliceOff returns where piece pc starts in its slice.
func (pc piece) sliceOff() int64 { return pc.ref.sliceOff + (pc.from - pc.ref.fileOff) }

// spans groups pieces into spans: per slice, pieces whose slice bytes lie
// within a cell of each other share one. A chunk rewritten by scattered
// writes resolves into thousands of small pieces of a few packed slices,
// and a slice is read and verified in whole cells: read one by one, each
// piece would fetch its cell again.
func spans(pieces []piece) []span {
	bySlice := make(map[*sliceInfo][]piece)
	var order []*sliceInfo
	for _, pc := range pieces {
		if _, ok := bySlice[pc.ref.s]; !ok {
			order = append(order, pc.ref.s)
		}
		bySlice[pc.ref.s] = append(bySlice[pc.ref.s], pc)
	}
	var out []span
	for _, si := range order {
		ps := bySlice[si]
		slices.SortFunc(ps, func(a, b piece) int { return cmp.Compare(a.sliceOff(), b.sliceOff()) })
		gap := int64(si.layout.CellSize())
		for _, pc := range ps {
			from, to := pc.sliceOff(), pc.sliceOff()+(pc.to-pc.from)
			if k := len(out) - 1; k >= 0 && out[k].s == si && from <= out[k].to+gap && max(to, out[k].to)-out[k].from <= maxSpan {
				out[k].to = max(out[k].to, to)
				out[k].pieces = append(out[k].pieces, pc)
				continue
			}
			out = append(out, span{s: si, from: from, to: to, pieces: []piece{pc}})
		}
	}
	return out
}

// readRange reads file bytes [off, off+len(p)) of lay into p, holes as
// zeros, fetching the pieces' slices in parallel.
func (d *DataPath) readRange(ctx context.Context, lay *fileLayout, p []byte, off int64) (int, error) {
	if off >= lay.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), lay.size-off))
	dst := p[:n]
	pieces := lay.resolve(off, off+int64(n))
	fillHoles(dst, off, pieces, lay.inline)
	sps := spans(pieces)
	errs := make([]error, len(sps))
	sem := make(chan struct{}, maxParallelPieces)
	var wg sync.WaitGroup
	for i, sp := range sps {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if len(sp.pieces) == 1 {
				pc := sp.pieces[0]
				errs[i] = d.readSlice(ctx, sp.s, sp.from, dst[pc.from-off:pc.to-off])
				return
			}
			buf := d.bufs.get(int(sp.to - sp.from))
			defer d.bufs.put(buf)
			if errs[i] = d.readSlice(ctx, sp.s, sp.from, buf); errs[i] != nil {
				return
			}
			for _, pc := range sp.pieces {
				at := pc.sliceOff() - sp.from
				copy(dst[pc.from-off:pc.to-off], buf[at:at+(pc.to-pc.from)])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, fmt.Errorf("client: read inode %d [%d, +%d): %w", lay.inode, off, n, err)
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
