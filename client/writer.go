package client

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Writer writes one file's bytes as slices. Open one with
// DataPath.NewWriter per open file handle.
//
// Writes are buffered, up to Config.WriteBuffer bytes, as runs of file
// bytes: a write continues the run it follows if that run was the last
// one written, overwrites buffered bytes in place, and otherwise starts a
// run of its own; a run never crosses a chunk boundary. A flush stores
// every run as one slice, packed in file order, and commits it with one
// extent per run, so that scattered small writes cost one slice and one
// commit per buffer rather than each (random 4 KiB writes had made one
// slice each, stored as m+1 copies and each a Raft commit). A flush
// happens when the buffer is full, when it holds MaxCommitExtents runs,
// when a lone run reaches the end of its chunk (so that a sequential
// writer's slices line up with chunks), and on Flush and Close; only then
// do readers see the bytes. Memory is the buffer (grown on demand,
// pooled), a copy of it while a flush of runs written out of file order
// is packed, and the parity of the rows in flight.
//
// A Writer is safe for concurrent use; calls are serialised. After an
// upload fails, the Writer is broken: the buffered bytes are dropped and
// every later call returns the same error (as bufio.Writer does), so a
// caller never mistakes a lost write for a durable one.
type Writer struct {
	d     *DataPath
	inode uint64

	mu struct {
		sync.Mutex
		// buf[:used] holds the runs' bytes, in the order written.
		buf  []byte // pooled
		used int
		// runs are the buffered file bytes, sorted by file offset and
		// disjoint.
		runs []run
		// tail is the index in runs of the run whose bytes end buf[:used]
		// (-1: none), the one a write may extend in place.
		tail   int
		err    error // sticky
		closed bool
		// noInline: flush slices only (DisableInline, or the master
		// refused inline bytes for this file once).
		noInline bool
		// attrs are attribute changes made after the buffered bytes were
		// written, committed with them (DeferAttrs); nil: none.
		attrs *masterpb.AttrUpdate
		// commits counts the commits made (see Commits).
		commits uint64
	}
}

// run is n buffered bytes of the file at off, held at buf[at:at+n].
type run struct {
	off   int64
	at, n int
}

func (r run) end() int64 { return r.off + int64(r.n) }

// NewWriter returns a Writer for inode. It makes no RPC; the first slice
// is allocated when the first buffer is uploaded.
func (d *DataPath) NewWriter(inode uint64) *Writer {
	w := &Writer{d: d, inode: inode}
	w.mu.tail = -1
	return w
}

// WriteAt buffers p at file offset off, uploading (and committing) what
// is buffered whenever the buffer fills (see Writer). ctx bounds those
// uploads. It returns len(p) and nil, or the number of bytes accepted
// before an upload failed and the error. p is not retained.
func (w *Writer) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("client: write inode %d at %d: negative offset", w.inode, off)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return 0, err
	}
	if w.mu.attrs != nil && len(p) > 0 {
		// A write after utimes sets mtime anew.
		w.mu.attrs.MtimeUnixNano = nil
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if int64(w.mu.used) >= w.d.cfg.WriteBuffer {
			if err := w.flushLocked(ctx); err != nil {
				return done, err
			}
		}
		done += w.placeLocked(p[done:], pos)
		if w.fullLocked() {
			if err := w.flushLocked(ctx); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// placeLocked buffers a prefix of p at file offset pos and returns its
// length (at least 1): over a buffered run in place, at the end of the
// run last written, or as a new run up to the next run, the chunk's end
// and the buffer's room (which the caller ensured is not zero).
func (w *Writer) placeLocked(p []byte, pos int64) int {
	runs := w.mu.runs
	// i is the first run ending after pos.
	i := sort.Search(len(runs), func(j int) bool { return runs[j].end() > pos })
	if i < len(runs) && runs[i].off <= pos {
		r := runs[i]
		take := int(min(int64(len(p)), r.end()-pos))
		copy(w.mu.buf[r.at+int(pos-r.off):], p[:take])
		return take
	}
	cs := w.d.cfg.ChunkSize
	limit := min((pos/cs+1)*cs, pos+w.d.cfg.WriteBuffer-int64(w.mu.used))
	if i < len(runs) {
		limit = min(limit, runs[i].off)
	}
	take := int(min(int64(len(p)), limit-pos))
	w.growLocked(w.mu.used + take)
	copy(w.mu.buf[w.mu.used:], p[:take])
	if t := w.mu.tail; t == i-1 && t >= 0 && runs[t].end() == pos && pos%cs != 0 {
		w.mu.runs[t].n += take
	} else {
		w.mu.runs = slices.Insert(w.mu.runs, i, run{off: pos, at: w.mu.used, n: take})
		w.mu.tail = i
	}
	w.mu.used += take
	return take
}

// fullLocked reports whether the buffer must be flushed now: it is full,
// holds as many runs as a commit may place, or holds one run that reached
// the end of its chunk.
func (w *Writer) fullLocked() bool {
	runs := w.mu.runs
	switch {
	case int64(w.mu.used) >= w.d.cfg.WriteBuffer, len(runs) >= masterpb.MaxCommitExtents:
		return true
	case len(runs) == 1:
		return runs[0].end()%w.d.cfg.ChunkSize == 0
	}
	return false
}

// Flush uploads and commits the pending slice, if any. When it returns nil
// every byte written before it is committed: durable on the chunkservers
// and visible to readers that open the file afterwards (fsync).
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	return w.flushLocked(ctx)
}

// Close flushes and releases the buffer. It returns the flush's error (or
// the sticky error of an earlier failure); the Writer is closed either way.
// Closing twice returns ErrClosed.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.closed {
		return ErrClosed
	}
	err := w.mu.err
	if err == nil {
		err = w.flushLocked(ctx)
	}
	w.mu.closed = true
	w.releaseLocked()
	return err
}

func (w *Writer) usableLocked() error {
	if w.mu.closed {
		return ErrClosed
	}
	return w.mu.err
}

// growLocked makes the buffer hold at least n bytes. It grows eightfold:
// each step copies what is buffered into memory the process has likely
// never touched, and first touches are page faults, which cost more than
// the copy itself (on virtual machines, many times more). Doubling up to
// a 64 MiB buffer copied and faulted in 127 MiB before the first flush;
// eightfold, 37 MiB. A small file still gets a small buffer.
func (w *Writer) growLocked(n int) {
	if n <= len(w.mu.buf) {
		return
	}
	if n <= cap(w.mu.buf) {
		w.mu.buf = w.mu.buf[:n]
		return
	}
	size := max(n, 8*cap(w.mu.buf))
	size = int(min(int64(size), max(int64(n), w.d.cfg.WriteBuffer)))
	nb := w.d.bufs.get(size)
	copy(nb, w.mu.buf[:w.mu.used])
	w.d.bufs.put(w.mu.buf)
	w.mu.buf = nb[:n]
}

// DisableInline makes every later flush store a slice, however small:
// for files that will be composed with Concat (S3 multipart parts),
// which moves slices but cannot move inline bytes.
func (w *Writer) DisableInline() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.noInline = true
}

// DeferAttrs records attribute changes (no size change) to be committed
// with the bytes the Writer buffers, after them, and reports whether it
// did: with nothing buffered it returns false and the caller sets them
// itself. Later changes merge over earlier ones; a later write drops a
// deferred mtime, as a write after utimes sets mtime anew. If the commit
// fails the changes are lost with the bytes, and the error is the
// Writer's sticky error.
//
// A program that sets a file's owner, mode and times before closing it
// (tar, cp -p, rsync) then costs one commit instead of one per change,
// and its mtime is not overwritten by the commit of bytes written before.
func (w *Writer) DeferAttrs(ch AttrChange) bool {
	if ch.Size != nil {
		return false
	}
	return w.deferUpdate(ch.update())
}

// deferUpdate is DeferAttrs for an update in wire form, which may also
// set extended attributes (at most the master's MaxUpdateXattrs, 16).
func (w *Writer) deferUpdate(u *masterpb.AttrUpdate) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.usableLocked() != nil || len(w.mu.runs) == 0 {
		return false
	}
	if w.mu.attrs == nil {
		w.mu.attrs = &masterpb.AttrUpdate{}
	}
	// Later changes win, field by field and xattr by xattr.
	proto.Merge(w.mu.attrs, u)
	return true
}

// Commits returns how many commits the Writer has made, so that a caller
// can tell whether a call committed (and so changed the file's
// attributes on the master).
func (w *Writer) Commits() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.commits
}

// Buffered reports whether the Writer holds bytes not yet committed.
func (w *Writer) Buffered() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mu.runs) > 0
}

// PendingAttrs returns the deferred attribute changes not yet committed
// (nil: none). The result is a copy.
func (w *Writer) PendingAttrs() *masterpb.AttrUpdate {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.attrs == nil || len(w.mu.runs) == 0 {
		return nil
	}
	return proto.CloneOf(w.mu.attrs)
}

func (w *Writer) flushLocked(ctx context.Context) error {
	if len(w.mu.runs) == 0 {
		return nil
	}
	after := w.mu.attrs
	w.mu.attrs = nil
	err := w.commitRunsLocked(ctx, after)
	w.mu.runs = w.mu.runs[:0]
	w.mu.used = 0
	w.mu.tail = -1
	if err != nil {
		w.mu.err = err
		w.releaseLocked()
		return err
	}
	w.mu.commits++
	return nil
}

// commitRunsLocked stores and commits the buffered runs, inline in the
// namespace if they all lie below InlineMax and the master takes them,
// else as one slice.
func (w *Writer) commitRunsLocked(ctx context.Context, after *masterpb.AttrUpdate) error {
	runs := w.mu.runs
	if !w.mu.noInline && runs[len(runs)-1].end() <= w.d.cfg.InlineMax {
		// Small files: each run is one inline write, the changes after
		// going with the last.
		for j, r := range runs {
			var with *masterpb.AttrUpdate
			if j == len(runs)-1 {
				with = after
			}
			inline, err := w.d.writeInline(ctx, w.inode, r.off, w.mu.buf[r.at:r.at+r.n], with)
			if err != nil {
				return err
			}
			if !inline {
				w.mu.noInline = true
				runs = runs[j:]
				break
			}
			if j == len(runs)-1 {
				return nil
			}
		}
	}
	data, exts, packed := w.packLocked(runs)
	err := w.d.upload(ctx, w.inode, data, exts, after)
	if packed {
		w.d.bufs.put(data)
	}
	return err
}

// packLocked lays runs out as one slice in file order and returns its
// bytes, the extents placing them (file-adjacent runs share one), and
// whether the bytes are a pooled copy rather than the buffer itself,
// which they are unless the runs were written in file order.
func (w *Writer) packLocked(runs []run) (data []byte, exts []*masterpb.Extent, packed bool) {
	total, inOrder := 0, true
	for _, r := range runs {
		if r.at != total {
			inOrder = false
		}
		total += r.n
	}
	data = w.mu.buf[:total]
	if !inOrder {
		data, packed = w.d.bufs.get(total), true
	}
	at := 0
	for _, r := range runs {
		if packed {
			copy(data[at:], w.mu.buf[r.at:r.at+r.n])
		}
		if k := len(exts) - 1; k >= 0 && int64(exts[k].FileOffset+exts[k].Length) == r.off {
			exts[k].Length += uint64(r.n)
		} else {
			exts = append(exts, &masterpb.Extent{FileOffset: uint64(r.off), SliceOffset: uint64(at), Length: uint64(r.n)})
		}
		at += r.n
	}
	return data, exts, packed
}

func (w *Writer) releaseLocked() {
	w.d.bufs.put(w.mu.buf)
	w.mu.buf = nil
	w.mu.runs = nil
	w.mu.used = 0
	w.mu.tail = -1
}
