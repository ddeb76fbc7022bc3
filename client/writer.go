package client

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Writer writes one file's bytes as slices. Open one with
// DataPath.NewWriter per open file handle.
//
// Writes are buffered: contiguous writes (and rewrites of bytes still in
// the buffer) accumulate into one pending slice of up to Config.WriteBuffer
// bytes that never crosses a chunk boundary. A pending slice is uploaded
// and committed when it is full, when a write lands elsewhere in the file,
// and on Flush and Close; only then do readers see its bytes. Memory is the
// buffer (grown on demand, pooled) plus the parity of the rows in flight.
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
		buf    []byte // pooled; buf[:n] holds file bytes [off, off+n)
		off    int64
		n      int
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

// NewWriter returns a Writer for inode. It makes no RPC; the first slice
// is allocated when the first buffer is uploaded.
func (d *DataPath) NewWriter(inode uint64) *Writer {
	return &Writer{d: d, inode: inode}
}

// WriteAt buffers p at file offset off, uploading (and committing) the
// pending slice first if p does not continue it, and whenever the buffer
// fills. ctx bounds those uploads. It returns len(p) and nil, or the number
// of bytes accepted before an upload failed and the error. p is not
// retained.
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
		// A write continues the pending slice if it starts within it or
		// right at its end and stays within the slice's limit.
		if w.mu.n > 0 && (pos < w.mu.off || pos > w.mu.off+int64(w.mu.n) || pos >= w.limitLocked()) {
			if err := w.flushLocked(ctx); err != nil {
				return done, err
			}
		}
		if w.mu.n == 0 {
			w.mu.off = pos
		}
		limit := w.limitLocked()
		rel := int(pos - w.mu.off)
		take := int(min(int64(len(p)-done), limit-pos))
		w.growLocked(rel + take)
		copy(w.mu.buf[rel:], p[done:done+take])
		w.mu.n = max(w.mu.n, rel+take)
		done += take
		if w.mu.off+int64(w.mu.n) >= limit {
			if err := w.flushLocked(ctx); err != nil {
				return done, err
			}
		}
	}
	return done, nil
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

// limitLocked is the file offset the pending slice may not reach: the end
// of its chunk or the buffer bound, whichever comes first.
func (w *Writer) limitLocked() int64 {
	cs := w.d.cfg.ChunkSize
	chunkEnd := (w.mu.off/cs + 1) * cs
	return min(chunkEnd, w.mu.off+w.d.cfg.WriteBuffer)
}

// growLocked makes the buffer hold at least n bytes, doubling so that a
// sequential writer copies each byte about once more in total.
func (w *Writer) growLocked(n int) {
	if n <= len(w.mu.buf) {
		return
	}
	if n <= cap(w.mu.buf) {
		w.mu.buf = w.mu.buf[:n]
		return
	}
	size := max(n, 2*cap(w.mu.buf))
	size = int(min(int64(size), max(int64(n), w.d.cfg.WriteBuffer)))
	nb := w.d.bufs.get(size)
	copy(nb, w.mu.buf[:w.mu.n])
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
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.usableLocked() != nil || w.mu.n == 0 || ch.Size != nil {
		return false
	}
	if w.mu.attrs == nil {
		w.mu.attrs = &masterpb.AttrUpdate{}
	}
	// Later changes win, field by field.
	proto.Merge(w.mu.attrs, ch.update())
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
	return w.mu.n > 0
}

// PendingAttrs returns the deferred attribute changes not yet committed
// (nil: none). The result is a copy.
func (w *Writer) PendingAttrs() *masterpb.AttrUpdate {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.attrs == nil || w.mu.n == 0 {
		return nil
	}
	return proto.CloneOf(w.mu.attrs)
}

func (w *Writer) flushLocked(ctx context.Context) error {
	if w.mu.n == 0 {
		return nil
	}
	data := w.mu.buf[:w.mu.n]
	after := w.mu.attrs
	w.mu.attrs = nil
	var err error
	if !w.mu.noInline && w.mu.off+int64(w.mu.n) <= w.d.cfg.InlineMax {
		var inline bool
		inline, err = w.d.writeInline(ctx, w.inode, w.mu.off, data, after)
		if !inline && err == nil {
			w.mu.noInline = true
			err = w.d.upload(ctx, w.inode, w.mu.off, data, after)
		}
	} else {
		err = w.d.upload(ctx, w.inode, w.mu.off, data, after)
	}
	w.mu.n = 0
	if err != nil {
		w.mu.err = err
		w.releaseLocked()
		return err
	}
	w.mu.commits++
	return nil
}

func (w *Writer) releaseLocked() {
	w.d.bufs.put(w.mu.buf)
	w.mu.buf = nil
	w.mu.n = 0
}
