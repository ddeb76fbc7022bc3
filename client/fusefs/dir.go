package fusefs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// dirPage is how many entries one ReadDir RPC asks for.
const dirPage = 1024

// dirHandle lists a directory page by page, attributes included, so
// that readdirplus (ls -l) costs one RPC per page rather than a lookup
// per entry. Entry offsets are positions in the listing: "." is 1, ".."
// 2, the first name 3.
type dirHandle struct {
	n *node

	mu struct {
		sync.Mutex
		started bool
		page    []*masterpb.DirEntry // the entries not yet returned come first at next
		next    int
		after   string // the last name fetched
		more    bool
		off     uint64 // offset of the last entry returned
		attrs   map[string]*masterpb.Attr
	}
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

// Readdirent implements fs.FileReaddirenter.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.mu.off {
	case 0:
		d.mu.off = 1
		return &fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: d.n.ino(), Off: 1}, 0
	case 1:
		d.mu.off = 2
		// The kernel answers ".." itself; the number here is not used.
		return &fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: d.n.ino(), Off: 2}, 0
	}
	if d.mu.next >= len(d.mu.page) {
		if d.mu.started && !d.mu.more {
			return nil, 0
		}
		if errno := d.fetchLocked(ctx); errno != 0 {
			return nil, errno
		}
		if len(d.mu.page) == 0 {
			return nil, 0
		}
	}
	e := d.mu.page[d.mu.next]
	d.mu.next++
	d.mu.off++
	return &fuse.DirEntry{Name: e.Name, Mode: typeBits(e.Type), Ino: e.Inode, Off: d.mu.off}, 0
}

// fetchLocked reads the next page of entries.
func (d *dirHandle) fetchLocked(ctx context.Context) syscall.Errno {
	ctx, cancel := d.n.fsys.opCtx(ctx)
	defer cancel()
	entries, more, err := d.n.fsys.in.ReadDir(ctx, d.n.ino(), d.mu.after, dirPage, true)
	if err != nil {
		return errnoOf(err)
	}
	d.mu.started = true
	d.mu.page, d.mu.next, d.mu.more = entries, 0, more
	d.mu.attrs = make(map[string]*masterpb.Attr, len(entries))
	for _, e := range entries {
		if e.Attr != nil {
			d.mu.attrs[e.Name] = e.Attr
		}
	}
	if len(entries) > 0 {
		d.mu.after = entries[len(entries)-1].Name
	}
	return 0
}

// Lookup implements fs.FileLookuper: readdirplus asks for each entry
// just returned, whose attributes came with the page.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	d.mu.Lock()
	a := d.mu.attrs[name]
	d.mu.Unlock()
	if a == nil {
		return d.n.Lookup(ctx, name, out)
	}
	return d.n.child(ctx, a, out), 0
}

// Seekdir implements fs.FileSeekdirer: back to the start (rewinddir),
// or to an earlier position by listing again from the start.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	d.mu.started, d.mu.page, d.mu.next, d.mu.after, d.mu.more, d.mu.off, d.mu.attrs = false, nil, 0, "", false, 0, nil
	d.mu.Unlock()
	for range off {
		e, errno := d.Readdirent(ctx)
		if errno != 0 {
			return errno
		}
		if e == nil {
			break
		}
	}
	return 0
}

// Fsyncdir implements fs.FileFsyncdirer: namespace changes are committed
// when their calls return, so there is nothing to do.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }

// Releasedir implements fs.FileReleasedirer.
func (d *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}
