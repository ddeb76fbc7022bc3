package client

import (
	"context"
	"io/fs"
	"path"
	"syscall"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// GetXattr returns the value of the extended attribute name of the file
// at p (symlinks followed). A missing attribute is an error wrapping
// syscall.ENODATA.
func (c *Client) GetXattr(ctx context.Context, p, name string) ([]byte, error) {
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return nil, pathErr("getxattr", p, err)
	}
	v, err := c.getXattr(ctx, a.Inode, name)
	return v, pathErr("getxattr", p, err)
}

// StatXattr returns the file at p (symlinks followed) together with the
// value of its extended attribute name, or a nil value if the file has no
// such attribute. It resolves p once, so it costs one master call more
// than Stat where Stat and GetXattr would walk the path twice.
func (c *Client) StatXattr(ctx context.Context, p, name string) (*FileInfo, []byte, error) {
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return nil, nil, pathErr("stat", p, err)
	}
	v, err := c.getXattr(ctx, a.Inode, name)
	if err != nil && masterpb.ErrnoOf(err) != syscall.ENODATA {
		return nil, nil, pathErr("getxattr", p, err)
	}
	return newFileInfo(path.Base(path.Clean("/"+p)), a), v, nil
}

func (c *Client) getXattr(ctx context.Context, inode uint64, name string) ([]byte, error) {
	resp, err := call(ctx, c.conn, &masterpb.GetXattrRequest{Inode: inode, Name: name}, masterpb.MasterClient.GetXattr)
	if err != nil {
		return nil, err
	}
	if resp.Value == nil {
		// An empty value is still a value: keep it distinguishable from
		// StatXattr's "no attribute".
		return []byte{}, nil
	}
	return resp.Value, nil
}

// SetXattr sets the extended attribute name of the file at p (symlinks
// followed) to value. flags are setxattr(2)'s: XattrFlagCreate fails with
// EEXIST if the attribute exists, XattrFlagReplace with ENODATA if it
// does not; 0 does either.
func (c *Client) SetXattr(ctx context.Context, p, name string, value []byte, flags uint32) error {
	flag := masterpb.SetXattrRequest_FLAG_ANY
	switch {
	case flags&XattrFlagCreate != 0 && flags&XattrFlagReplace != 0:
		return &fs.PathError{Op: "setxattr", Path: p, Err: syscall.EINVAL}
	case flags&XattrFlagCreate != 0:
		flag = masterpb.SetXattrRequest_FLAG_CREATE
	case flags&XattrFlagReplace != 0:
		flag = masterpb.SetXattrRequest_FLAG_REPLACE
	}
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return pathErr("setxattr", p, err)
	}
	_, err = call(ctx, c.conn, &masterpb.SetXattrRequest{Header: c.header(), Inode: a.Inode, Name: name, Value: value, Flag: flag}, masterpb.MasterClient.SetXattr)
	return pathErr("setxattr", p, err)
}

// ListXattr returns the names of the extended attributes of the file at p
// (symlinks followed).
func (c *Client) ListXattr(ctx context.Context, p string) ([]string, error) {
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return nil, pathErr("listxattr", p, err)
	}
	resp, err := call(ctx, c.conn, &masterpb.ListXattrRequest{Inode: a.Inode}, masterpb.MasterClient.ListXattr)
	if err != nil {
		return nil, pathErr("listxattr", p, err)
	}
	return resp.Names, nil
}

// RemoveXattr removes the extended attribute name of the file at p
// (symlinks followed). A missing attribute is an error wrapping
// syscall.ENODATA.
func (c *Client) RemoveXattr(ctx context.Context, p, name string) error {
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return pathErr("removexattr", p, err)
	}
	_, err = call(ctx, c.conn, &masterpb.RemoveXattrRequest{Header: c.header(), Inode: a.Inode, Name: name}, masterpb.MasterClient.RemoveXattr)
	return pathErr("removexattr", p, err)
}
