package client

import (
	"context"
	"io/fs"
	"time"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// setAttr resolves p (following symlinks) and changes the attributes req
// sets.
func (c *Client) setAttr(ctx context.Context, op, p string, req *masterpb.SetAttrRequest) error {
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return pathErr(op, p, err)
	}
	req.Header, req.Inode = c.header(), a.Inode
	_, err = call(ctx, c.conn, req, masterpb.MasterClient.SetAttr)
	return pathErr(op, p, err)
}

// Chmod changes the permission bits (and setuid, setgid, sticky) of p.
func (c *Client) Chmod(ctx context.Context, p string, mode fs.FileMode) error {
	m := unixPerm(mode)
	return c.setAttr(ctx, "chmod", p, &masterpb.SetAttrRequest{Mode: &m})
}

// Chown changes the owner and group of p; a negative id leaves that one
// unchanged, as os.Chown does.
func (c *Client) Chown(ctx context.Context, p string, uid, gid int) error {
	req := &masterpb.SetAttrRequest{}
	if uid >= 0 {
		u := uint32(uid)
		req.Uid = &u
	}
	if gid >= 0 {
		g := uint32(gid)
		req.Gid = &g
	}
	return c.setAttr(ctx, "chown", p, req)
}

// Chtimes changes the access and modification times of p; a zero time
// leaves that one unchanged.
func (c *Client) Chtimes(ctx context.Context, p string, atime, mtime time.Time) error {
	req := &masterpb.SetAttrRequest{}
	if !atime.IsZero() {
		a := atime.UnixNano()
		req.AtimeUnixNano = &a
	}
	if !mtime.IsZero() {
		m := mtime.UnixNano()
		req.MtimeUnixNano = &m
	}
	return c.setAttr(ctx, "chtimes", p, req)
}

// Truncate changes the size of the regular file p: shrinking drops the
// bytes beyond, growing adds a hole that reads as zeros.
func (c *Client) Truncate(ctx context.Context, p string, size int64) error {
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: p, Err: fs.ErrInvalid}
	}
	s := uint64(size)
	return c.setAttr(ctx, "truncate", p, &masterpb.SetAttrRequest{Size: &s})
}

// Link makes newname a hard link to the file oldname.
func (c *Client) Link(ctx context.Context, oldname, newname string) error {
	a, err := c.resolve(ctx, oldname, false)
	if err != nil {
		return pathErr("link", oldname, err)
	}
	dir, name, err := c.parent(ctx, newname)
	if err != nil {
		return pathErr("link", newname, err)
	}
	_, err = call(ctx, c.conn, &masterpb.LinkRequest{Header: c.header(), Inode: a.Inode, NewParent: dir.Inode, NewName: name}, masterpb.MasterClient.Link)
	return pathErr("link", newname, err)
}

// Truncate changes the file's size, after committing what was written
// before it (so a later commit cannot resurrect bytes cut off here).
func (f *File) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: fs.ErrInvalid}
	}
	ctx, cancel := f.ctx()
	defer cancel()
	if f.mu.w != nil {
		if err := f.mu.w.Flush(ctx); err != nil {
			return f.err("truncate", err)
		}
	}
	s := uint64(size)
	if _, err := call(ctx, f.c.conn, &masterpb.SetAttrRequest{Header: f.c.header(), Inode: f.inode, Size: &s}, masterpb.MasterClient.SetAttr); err != nil {
		return f.err("truncate", err)
	}
	f.mu.size = size
	f.version = 0
	if f.mu.r != nil {
		return f.err("truncate", f.mu.r.Refresh(ctx))
	}
	return nil
}
