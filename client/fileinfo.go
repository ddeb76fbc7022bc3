package client

import (
	"io/fs"
	"time"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// FileInfo describes a file of the namespace. It implements fs.FileInfo
// and fs.DirEntry; Sys returns the master's *masterpb.Attr.
type FileInfo struct {
	name string
	attr *masterpb.Attr
}

func newFileInfo(name string, a *masterpb.Attr) *FileInfo {
	return &FileInfo{name: name, attr: a}
}

// Name is the file's base name.
func (fi *FileInfo) Name() string { return fi.name }

// Size is the file's length in bytes.
func (fi *FileInfo) Size() int64 { return int64(fi.attr.GetSize()) }

// Mode is the file's type and permission bits.
func (fi *FileInfo) Mode() fs.FileMode { return fileMode(fi.attr) }

// ModTime is the file's modification time.
func (fi *FileInfo) ModTime() time.Time { return time.Unix(0, fi.attr.GetMtimeUnixNano()) }

// IsDir reports whether the file is a directory.
func (fi *FileInfo) IsDir() bool { return fi.attr.GetType() == masterpb.FileType_FILE_TYPE_DIRECTORY }

// Sys returns the *masterpb.Attr.
func (fi *FileInfo) Sys() any { return fi.attr }

// Attr returns the master's attributes of the file.
func (fi *FileInfo) Attr() *masterpb.Attr { return fi.attr }

// Inode is the file's inode number.
func (fi *FileInfo) Inode() uint64 { return fi.attr.GetInode() }

// Type is the type bits of Mode (fs.DirEntry).
func (fi *FileInfo) Type() fs.FileMode { return fi.Mode().Type() }

// Info returns fi itself (fs.DirEntry).
func (fi *FileInfo) Info() (fs.FileInfo, error) { return fi, nil }

var (
	_ fs.FileInfo = (*FileInfo)(nil)
	_ fs.DirEntry = (*FileInfo)(nil)
)

// fileMode converts a master's type and mode bits to an fs.FileMode.
func fileMode(a *masterpb.Attr) fs.FileMode {
	m := fs.FileMode(a.GetMode() & 0o777)
	if a.GetMode()&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if a.GetMode()&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if a.GetMode()&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch a.GetType() {
	case masterpb.FileType_FILE_TYPE_DIRECTORY:
		m |= fs.ModeDir
	case masterpb.FileType_FILE_TYPE_SYMLINK:
		m |= fs.ModeSymlink
	case masterpb.FileType_FILE_TYPE_FIFO:
		m |= fs.ModeNamedPipe
	case masterpb.FileType_FILE_TYPE_SOCKET:
		m |= fs.ModeSocket
	case masterpb.FileType_FILE_TYPE_CHAR_DEVICE:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case masterpb.FileType_FILE_TYPE_BLOCK_DEVICE:
		m |= fs.ModeDevice
	}
	return m
}

// unixPerm converts permission and setuid/setgid/sticky bits to the
// master's mode bits.
func unixPerm(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
