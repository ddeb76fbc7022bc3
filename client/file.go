package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"syscall"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// File is an open file of a Client. Writes go through a Writer and become
// visible to others at Sync or Close (close-to-open); reads through a
// Reader that sees the file as of the open, the last Sync, or this File's
// own writes (a read after a write flushes them first). File calls take no
// context; ClientConfig.IOTimeout bounds each one.
//
// A File is safe for concurrent use; calls are serialised.
type File struct {
	c     *Client
	name  string
	inode uint64
	flag  int
	isDir bool
	// version is the file's version when opened, for the layout cache.
	version uint64

	mu struct {
		sync.Mutex
		pos    int64
		size   int64 // the larger of the size at open and the end of our writes
		w      *Writer
		r      *Reader
		dirty  bool // written since the Reader last saw the file
		closed bool
		// noInline: store even small writes as slices (DisableInline).
		noInline bool
	}
}

// DisableInline makes the File store its bytes as slices on chunkservers
// however few they are, never inline in the namespace. Files that will be
// sources of Concat need it: Concat moves slices and refuses a source
// whose bytes are inline. Call it before the first write.
func (f *File) DisableInline() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.noInline = true
	if f.mu.w != nil {
		f.mu.w.DisableInline()
	}
}

// Create creates or truncates the file p (mode 0666) and opens it for
// reading and writing, as os.Create does.
func (c *Client) Create(ctx context.Context, p string) (*File, error) {
	return c.OpenFile(ctx, p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open opens the file p for reading.
func (c *Client) Open(ctx context.Context, p string) (*File, error) {
	return c.OpenFile(ctx, p, os.O_RDONLY, 0)
}

// OpenFile opens p as os.OpenFile does. Supported flags: O_RDONLY,
// O_WRONLY, O_RDWR, O_CREATE, O_EXCL, O_TRUNC, O_APPEND; others are
// ignored. perm applies when the file is created.
func (c *Client) OpenFile(ctx context.Context, p string, flag int, perm fs.FileMode) (*File, error) {
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	var attr *masterpb.Attr
	if flag&os.O_CREATE != 0 {
		dir, name, err := c.parent(ctx, p)
		if err != nil {
			return nil, pathErr("open", p, err)
		}
		resp, err := call(ctx, c.conn, &masterpb.CreateRequest{
			Header: c.header(), Parent: dir.Inode, Name: name, Mode: unixPerm(perm),
			Exclusive: flag&os.O_EXCL != 0, Truncate: flag&os.O_TRUNC != 0 && writable,
		}, masterpb.MasterClient.Create)
		if err != nil {
			return nil, pathErr("open", p, err)
		}
		attr = resp.Attr
		if attr.Type == masterpb.FileType_FILE_TYPE_SYMLINK {
			// An existing symlink: open what it points to.
			if attr, err = c.resolve(ctx, p, true); err != nil {
				return nil, pathErr("open", p, err)
			}
		}
	} else {
		var err error
		if attr, err = c.resolve(ctx, p, true); err != nil {
			return nil, pathErr("open", p, err)
		}
		if writable && flag&os.O_TRUNC != 0 && attr.Type == masterpb.FileType_FILE_TYPE_REGULAR && attr.Size > 0 {
			zero := uint64(0)
			resp, err := call(ctx, c.conn, &masterpb.SetAttrRequest{Header: c.header(), Inode: attr.Inode, Size: &zero}, masterpb.MasterClient.SetAttr)
			if err != nil {
				return nil, pathErr("truncate", p, err)
			}
			attr = resp.Attr
		}
	}
	isDir := attr.Type == masterpb.FileType_FILE_TYPE_DIRECTORY
	if isDir && writable {
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
	}
	f := &File{c: c, name: p, inode: attr.Inode, flag: flag, isDir: isDir}
	f.mu.size = int64(attr.Size)
	f.version = attr.Version
	return f, nil
}

// Name returns the path the File was opened with.
func (f *File) Name() string { return f.name }

func (f *File) ctx() (context.Context, context.CancelFunc) {
	if f.c.cfg.IOTimeout > 0 {
		return context.WithTimeout(context.Background(), f.c.cfg.IOTimeout)
	}
	return context.WithCancel(context.Background())
}

func (f *File) err(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return pathErr(op, f.name, err)
}

func (f *File) checkLocked(op string, write bool) error {
	if f.mu.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	if f.isDir {
		return &fs.PathError{Op: op, Path: f.name, Err: syscall.EISDIR}
	}
	acc := f.flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	if (write && acc == os.O_RDONLY) || (!write && acc == os.O_WRONLY) {
		return &fs.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

// Write writes p at the current offset (at the end with O_APPEND).
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked("write", true); err != nil {
		return 0, err
	}
	if f.flag&os.O_APPEND != 0 {
		f.mu.pos = f.mu.size
	}
	n, err := f.writeAtLocked(p, f.mu.pos)
	f.mu.pos += int64(n)
	return n, err
}

// WriteAt writes p at offset off.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked("write", true); err != nil {
		return 0, err
	}
	if f.flag&os.O_APPEND != 0 {
		return 0, &fs.PathError{Op: "writeat", Path: f.name, Err: errors.New("invalid use of WriteAt on file opened with O_APPEND")}
	}
	return f.writeAtLocked(p, off)
}

func (f *File) writeAtLocked(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: syscall.EINVAL}
	}
	if f.mu.w == nil {
		f.mu.w = f.c.data.NewWriter(f.inode)
		if f.mu.noInline {
			f.mu.w.DisableInline()
		}
	}
	ctx, cancel := f.ctx()
	defer cancel()
	n, err := f.mu.w.WriteAt(ctx, p, off)
	if n > 0 {
		f.version = 0 // the version seen at open no longer describes the file
		f.mu.dirty = true
		f.mu.size = max(f.mu.size, off+int64(n))
	}
	return n, f.err("write", err)
}

// Read reads from the current offset.
func (f *File) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked("read", false); err != nil {
		return 0, err
	}
	n, err := f.readAtLocked(p, f.mu.pos)
	f.mu.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// ReadAt reads len(p) bytes at off, as io.ReaderAt does.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked("read", false); err != nil {
		return 0, err
	}
	return f.readAtLocked(p, off)
}

func (f *File) readAtLocked(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: syscall.EINVAL}
	}
	if len(p) == 0 {
		return 0, nil
	}
	ctx, cancel := f.ctx()
	defer cancel()
	if f.mu.dirty {
		// Our own writes must be visible to our reads.
		if err := f.mu.w.Flush(ctx); err != nil {
			return 0, f.err("read", err)
		}
		f.mu.dirty = false
		if f.mu.r != nil {
			if err := f.mu.r.Refresh(ctx); err != nil {
				return 0, f.err("read", err)
			}
		}
	}
	if f.mu.r == nil {
		r, err := f.c.data.OpenReaderAt(ctx, f.inode, f.version)
		if err != nil {
			return 0, f.err("read", err)
		}
		f.mu.r = r
	}
	n, err := f.mu.r.ReadAt(ctx, p, off)
	return n, f.err("read", err)
}

// Seek sets the offset for the next Read or Write, as io.Seeker does.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrClosed}
	}
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = f.mu.pos + offset
	case io.SeekEnd:
		pos = f.mu.size + offset
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: syscall.EINVAL}
	}
	if pos < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: syscall.EINVAL}
	}
	f.mu.pos = pos
	return pos, nil
}

// DeferAttrs arranges for ch (its mode, owner and times; not a size) and
// the extended attributes xattrs (at most 16) to be set with the next
// commit of the bytes written, in the same commit, and reports whether it
// did: false when no written byte waits for a commit (the caller sets
// them itself). A later write drops a deferred mtime, as a write after
// utimes sets mtime anew. An S3 object's metadata, known only once its
// last byte is read, then costs no commit of its own.
func (f *File) DeferAttrs(ch AttrChange, xattrs map[string][]byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed || f.mu.w == nil || ch.Size != nil {
		return false
	}
	u := ch.update()
	u.Xattrs = xattrs
	return f.mu.w.deferUpdate(u)
}

// Sync commits every byte written so far: when it returns nil they are
// durable and visible to files opened afterwards.
func (f *File) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return &fs.PathError{Op: "sync", Path: f.name, Err: fs.ErrClosed}
	}
	if f.mu.w == nil {
		return nil
	}
	ctx, cancel := f.ctx()
	defer cancel()
	return f.err("sync", f.mu.w.Flush(ctx))
}

// Stat returns the file's attributes, with the size including bytes
// written and not yet committed.
func (f *File) Stat() (*FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return nil, &fs.PathError{Op: "stat", Path: f.name, Err: fs.ErrClosed}
	}
	ctx, cancel := f.ctx()
	defer cancel()
	a, err := f.c.getAttr(ctx, f.inode)
	if err != nil {
		return nil, f.err("stat", err)
	}
	if f.mu.dirty && int64(a.Size) < f.mu.size {
		a.Size = uint64(f.mu.size)
	}
	return newFileInfo(path.Base(path.Clean("/"+f.name)), a), nil
}

// Close commits what was written and releases the File. It returns the
// commit's error: a nil error means every write is durable and visible.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.mu.closed = true
	var errs []error
	if f.mu.w != nil {
		ctx, cancel := f.ctx()
		if err := f.mu.w.Close(ctx); err != nil {
			errs = append(errs, f.err("close", err))
		}
		cancel()
	}
	if f.mu.r != nil {
		if err := f.mu.r.Close(); err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, f.err("close", err))
		}
	}
	return errors.Join(errs...)
}

var (
	_ io.ReadWriteSeeker = (*File)(nil)
	_ io.ReaderAt        = (*File)(nil)
	_ io.WriterAt        = (*File)(nil)
	_ io.Closer          = (*File)(nil)
)

// String describes the File for logs.
func (f *File) String() string { return fmt.Sprintf("client.File(%s, inode %d)", f.name, f.inode) }
