package master

import (
	"errors"
	"strings"
	"syscall"

	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Basic POSIX permission checks, done on the leader before a mutation is
// proposed (see Permissions in the package doc). They read the leader's
// applied state without a read-index round: a concurrent chmod may race
// with them, as it may on an NFS server. A check that cannot find its inode
// passes, and the state machine then reports ENOENT itself.

// Permission bits.
const (
	permWrite = 2
	permExec  = 1

	modeSetgid = 0o2000
	modeSticky = 0o1000
)

// cred is the caller's identity from the request header.
type cred struct {
	uid, gid uint32
	groups   []uint32
}

func credOf(h *masterpb.RequestHeader) cred {
	return cred{uid: h.GetUid(), gid: h.GetGid(), groups: h.GetGroups()}
}

func (c cred) root() bool { return c.uid == 0 }

func (c cred) inGroup(gid uint32) bool {
	if c.gid == gid {
		return true
	}
	for _, g := range c.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// may reports whether c has all the permission bits in want on a.
func (c cred) may(a *masterpb.Attr, want uint32) bool {
	if c.root() {
		return true
	}
	var bits uint32
	switch {
	case c.uid == a.Uid:
		bits = a.Mode >> 6 & 7
	case c.inGroup(a.Gid):
		bits = a.Mode >> 3 & 7
	default:
		bits = a.Mode & 7
	}
	return bits&want == want
}

// attr returns inode ino's attributes from the local state, or nil if it
// is missing (the state machine reports that) or unreadable.
func (s *Server) attr(ino uint64) *masterpb.Attr {
	a, err := s.fsm.GetAttr(ino)
	if err != nil {
		return nil
	}
	return a
}

func denied(op string, ino uint64, what string) error {
	return errnoErr(syscall.EACCES, op, "inode %d: %s", ino, what)
}

// checkDirWrite checks that c may add or remove entries in directory
// dir (write and search permission), returning dir's attributes (nil if
// missing).
func (s *Server) checkDirWrite(op string, c cred, dir uint64) (*masterpb.Attr, error) {
	a := s.attr(dir)
	if a == nil || c.root() {
		return a, nil
	}
	if !c.may(a, permWrite|permExec) {
		return a, denied(op, dir, "no write and search permission on the directory")
	}
	return a, nil
}

// checkRemove checks that c may remove or replace entry name of directory
// dir: write and search on dir, and with the sticky bit set, c must own
// the entry or the directory.
func (s *Server) checkRemove(op string, c cred, dir uint64, name string) error {
	a, err := s.checkDirWrite(op, c, dir)
	if err != nil || a == nil || c.root() || a.Mode&modeSticky == 0 {
		return err
	}
	child, lerr := s.fsm.Lookup(dir, name)
	if lerr != nil {
		return nil // the state machine reports it
	}
	if child.Uid != c.uid && a.Uid != c.uid {
		return denied(op, dir, "sticky directory: not the owner of the entry or the directory")
	}
	return nil
}

// newOwnership returns the gid and mode bits a new entry in directory dir
// gets: the directory's gid, and for directories its setgid bit, when the
// directory is setgid (BSD group semantics); otherwise the caller's gid.
func newOwnership(c cred, dir *masterpb.Attr, mode uint32, isDir bool) (gid, outMode uint32) {
	gid, outMode = c.gid, mode&0o7777
	if dir != nil && dir.Mode&modeSetgid != 0 {
		gid = dir.Gid
		if isDir {
			outMode |= modeSetgid
		}
	}
	return gid, outMode
}

// checkSetAttr applies chmod, chown, truncate and utimes rules.
func (s *Server) checkSetAttr(c cred, req *masterpb.SetAttrRequest) error {
	const op = "setattr"
	if c.root() {
		return nil
	}
	a := s.attr(req.Inode)
	if a == nil {
		return nil
	}
	owner := c.uid == a.Uid
	if req.Mode != nil && !owner {
		return errnoErr(syscall.EPERM, op, "inode %d: only the owner may change the mode", req.Inode)
	}
	if req.Uid != nil && *req.Uid != a.Uid {
		return errnoErr(syscall.EPERM, op, "inode %d: only root may change the owner", req.Inode)
	}
	if req.Gid != nil && *req.Gid != a.Gid && (!owner || !c.inGroup(*req.Gid)) {
		return errnoErr(syscall.EPERM, op, "inode %d: only the owner may change the group, to one of its groups", req.Inode)
	}
	if req.Size != nil && !c.may(a, permWrite) {
		return denied(op, req.Inode, "no write permission")
	}
	if (req.AtimeUnixNano != nil || req.MtimeUnixNano != nil) && !owner && !c.may(a, permWrite) {
		return errnoErr(syscall.EPERM, op, "inode %d: only the owner or a writer may set times", req.Inode)
	}
	return nil
}

// checkAttrUpdate applies checkSetAttr's rules to attribute changes that
// ride with a write (nil: none).
func (s *Server) checkAttrUpdate(h *masterpb.RequestHeader, ino uint64, u *masterpb.AttrUpdate) error {
	if u == nil {
		return nil
	}
	return s.checkSetAttr(credOf(h), &masterpb.SetAttrRequest{
		Inode: ino, Mode: u.Mode, Uid: u.Uid, Gid: u.Gid, AtimeUnixNano: u.AtimeUnixNano, MtimeUnixNano: u.MtimeUnixNano,
	})
}

// checkXattrWrite: trusted.* and security.* need root; others need write
// permission on the inode.
func (s *Server) checkXattrWrite(op string, c cred, ino uint64, name string) error {
	if c.root() {
		return nil
	}
	if strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.") {
		return errnoErr(syscall.EPERM, op, "inode %d: %q needs root", ino, name)
	}
	a := s.attr(ino)
	if a != nil && !c.may(a, permWrite) {
		return denied(op, ino, "no write permission")
	}
	return nil
}

// checkCreate: create of an existing file is open(2) with O_CREAT
// of that file; with O_TRUNC it needs write permission on the file. It
// reports whether the entry exists.
func (s *Server) checkCreate(c cred, parent uint64, name string, truncate bool) (*masterpb.Attr, error) {
	const op = "create"
	if c.root() {
		return s.attr(parent), nil
	}
	child, err := s.fsm.Lookup(parent, name)
	var fe *fsm.Error
	if err != nil && !(errors.As(err, &fe) && fe.Errno == syscall.ENOENT) {
		return nil, nil // the state machine reports it
	}
	if err == nil {
		if truncate && !c.may(child, permWrite) {
			return nil, denied(op, child.Inode, "no write permission to truncate")
		}
		return s.attr(parent), nil
	}
	return s.checkDirWrite(op, c, parent)
}
