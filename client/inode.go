package client

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Inodes is the inode-level view of a Client's namespace, for front ends
// that address files by inode number, as the kernel does through FUSE.
// Get one with Client.Inodes; it holds nothing but the Client, so it is
// cheap to copy and safe for concurrent use.
//
// Every call is one master RPC (retried by the MasterConn across leader
// changes and bounded by its RetryTimeout and ctx). Errors are
// *fs.PathError values whose Path names the inode ("#12" or "#12/name")
// and whose Err is the syscall.Errno the master answered, or, for
// failures that are not the file system's answer (master unreachable,
// context ended), the underlying error.
//
// Mutations are made as the Caller stored in ctx by WithCaller, or else
// as the Client's configured UID and GID; the master checks permissions
// against that identity.
type Inodes struct {
	c *Client
}

// Inodes returns the inode-level view of c.
func (c *Client) Inodes() Inodes { return Inodes{c: c} }

// RootInode is the inode number of the namespace root.
const RootInode = rootInode

// Caller is the identity a mutation is made as.
type Caller struct {
	UID, GID uint32
	// Groups are the supplementary groups.
	Groups []uint32
}

type callerKey struct{}

// WithCaller returns a context whose Inodes calls are made as caller. A
// FUSE mount uses it to act as the process behind each request.
func WithCaller(ctx context.Context, caller Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// DirObserver is told the attributes of a directory an Inodes call
// changed (see WithDirObserver).
type DirObserver func(dir *masterpb.Attr)

type dirObserverKey struct{}

// WithDirObserver returns a context whose Inodes calls that change
// directory entries (Mkdir, Create, CreateOpen, Mknod, Unlink, Rmdir,
// Rename, Link, Symlink) call fn before they return, once for each
// directory they changed, with its attributes as they are after the
// change, when the master sends them (it does not for a retried request).
// A mount uses it to refresh the attributes it caches for the parent
// without asking the master again.
func WithDirObserver(ctx context.Context, fn DirObserver) context.Context {
	return context.WithValue(ctx, dirObserverKey{}, fn)
}

// observeDirs hands dirs to the DirObserver in ctx, if any.
func observeDirs(ctx context.Context, dirs []*masterpb.Attr) {
	fn, ok := ctx.Value(dirObserverKey{}).(DirObserver)
	if !ok || fn == nil {
		return
	}
	for _, d := range dirs {
		if d != nil && d.Type == masterpb.FileType_FILE_TYPE_DIRECTORY {
			fn(d)
		}
	}
}

// inoHeader returns a fresh RequestHeader for the caller in ctx.
func (in Inodes) inoHeader(ctx context.Context) *masterpb.RequestHeader {
	h := in.c.header()
	if caller, ok := ctx.Value(callerKey{}).(Caller); ok {
		h.Uid, h.Gid, h.Groups = caller.UID, caller.GID, caller.Groups
	}
	return h
}

// errNoAttr answers a master reply that lacks the attributes it must
// carry: a broken master, not a file system answer.
var errNoAttr = errors.New("master reply without attributes")

// checkAttr turns a missing Attr in a successful reply into an error, so
// that callers may rely on a non-nil Attr.
func checkAttr(op string, ino uint64, name string, a *masterpb.Attr) (*masterpb.Attr, error) {
	if a == nil {
		return nil, inoErr(op, ino, name, errNoAttr)
	}
	return a, nil
}

func inoErr(op string, ino uint64, name string, err error) error {
	p := fmt.Sprintf("#%d", ino)
	if name != "" {
		p += "/" + name
	}
	return pathErr(op, p, err)
}

// Lookup returns the attributes of entry name of directory parent.
func (in Inodes) Lookup(ctx context.Context, parent uint64, name string) (*masterpb.Attr, error) {
	a, err := in.c.lookup(ctx, parent, name)
	if err != nil {
		return nil, inoErr("lookup", parent, name, err)
	}
	return checkAttr("lookup", parent, name, a)
}

// GetAttr returns inode ino's attributes.
func (in Inodes) GetAttr(ctx context.Context, ino uint64) (*masterpb.Attr, error) {
	a, err := in.c.getAttr(ctx, ino)
	if err != nil {
		return nil, inoErr("getattr", ino, "", err)
	}
	return checkAttr("getattr", ino, "", a)
}

// AttrChange lists the attributes SetAttr changes; nil fields stay.
type AttrChange struct {
	// Mode is the new permission, setuid, setgid and sticky bits.
	Mode *uint32
	// UID and GID are the new owner and group (chown).
	UID, GID *uint32
	// Size truncates or extends the file (truncate).
	Size *uint64
	// Atime and Mtime are the new access and modification times.
	Atime, Mtime *time.Time
}

// update returns ch's changes but the size in wire form.
func (ch AttrChange) update() *masterpb.AttrUpdate {
	u := &masterpb.AttrUpdate{Mode: ch.Mode, Uid: ch.UID, Gid: ch.GID}
	if ch.Atime != nil {
		u.AtimeUnixNano = proto.Int64(ch.Atime.UnixNano())
	}
	if ch.Mtime != nil {
		u.MtimeUnixNano = proto.Int64(ch.Mtime.UnixNano())
	}
	return u
}

// SetAttr changes inode ino's attributes as ch says and returns the
// result. A Size change does not reach bytes other Handles still buffer;
// flush them first.
func (in Inodes) SetAttr(ctx context.Context, ino uint64, ch AttrChange) (*masterpb.Attr, error) {
	u := ch.update()
	req := &masterpb.SetAttrRequest{Header: in.inoHeader(ctx), Inode: ino, Mode: u.Mode, Uid: u.Uid, Gid: u.Gid, Size: ch.Size,
		AtimeUnixNano: u.AtimeUnixNano, MtimeUnixNano: u.MtimeUnixNano}
	resp, err := call(ctx, in.c.conn, req, masterpb.MasterClient.SetAttr)
	if err != nil {
		return nil, inoErr("setattr", ino, "", err)
	}
	return checkAttr("setattr", ino, "", resp.Attr)
}

// Mkdir creates directory name in parent with mode bits mode.
func (in Inodes) Mkdir(ctx context.Context, parent uint64, name string, mode uint32) (*masterpb.Attr, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.MkdirRequest{Header: in.inoHeader(ctx), Parent: parent, Name: name, Mode: mode}, masterpb.MasterClient.Mkdir)
	if err != nil {
		return nil, inoErr("mkdir", parent, name, err)
	}
	observeDirs(ctx, resp.Dirs)
	return checkAttr("mkdir", parent, name, resp.Attr)
}

// Create creates regular file name in parent with mode bits mode, or
// returns the existing entry (created false) unless exclusive is set, in
// which case an existing entry is EEXIST. truncate empties an existing
// file (O_TRUNC).
func (in Inodes) Create(ctx context.Context, parent uint64, name string, mode uint32, exclusive, truncate bool) (attr *masterpb.Attr, created bool, err error) {
	resp, err := call(ctx, in.c.conn, &masterpb.CreateRequest{
		Header: in.inoHeader(ctx), Parent: parent, Name: name, Mode: mode, Exclusive: exclusive, Truncate: truncate,
	}, masterpb.MasterClient.Create)
	if err != nil {
		return nil, false, inoErr("create", parent, name, err)
	}
	observeDirs(ctx, resp.Dirs)
	a, err := checkAttr("create", parent, name, resp.Attr)
	return a, resp.Created, err
}

// Mknod creates a special file name in parent: a FIFO, a socket or a
// device (rdev).
func (in Inodes) Mknod(ctx context.Context, parent uint64, name string, typ masterpb.FileType, mode, rdev uint32) (*masterpb.Attr, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.MknodRequest{Header: in.inoHeader(ctx), Parent: parent, Name: name, Type: typ, Mode: mode, Rdev: rdev}, masterpb.MasterClient.Mknod)
	if err != nil {
		return nil, inoErr("mknod", parent, name, err)
	}
	observeDirs(ctx, resp.Dirs)
	return checkAttr("mknod", parent, name, resp.Attr)
}

// Unlink removes the non-directory entry name of parent.
func (in Inodes) Unlink(ctx context.Context, parent uint64, name string) error {
	resp, err := call(ctx, in.c.conn, &masterpb.UnlinkRequest{Header: in.inoHeader(ctx), Parent: parent, Name: name}, masterpb.MasterClient.Unlink)
	if err != nil {
		return inoErr("unlink", parent, name, err)
	}
	observeDirs(ctx, resp.Dirs)
	return nil
}

// Rmdir removes the empty directory name of parent.
func (in Inodes) Rmdir(ctx context.Context, parent uint64, name string) error {
	resp, err := call(ctx, in.c.conn, &masterpb.RmdirRequest{Header: in.inoHeader(ctx), Parent: parent, Name: name}, masterpb.MasterClient.Rmdir)
	if err != nil {
		return inoErr("rmdir", parent, name, err)
	}
	observeDirs(ctx, resp.Dirs)
	return nil
}

// RenameMode says what Rename does with an existing target, as the flags
// of renameat2(2) do.
type RenameMode int

// RenameMode values.
const (
	// RenameReplace replaces the target, as rename(2) does.
	RenameReplace RenameMode = iota
	// RenameNoReplace fails with EEXIST if the target exists.
	RenameNoReplace
	// RenameExchange swaps source and target, which must both exist.
	RenameExchange
)

// Rename moves entry oldName of oldParent to newName of newParent in one
// atomic step.
func (in Inodes) Rename(ctx context.Context, oldParent uint64, oldName string, newParent uint64, newName string, mode RenameMode) error {
	m := masterpb.RenameRequest_MODE_REPLACE
	switch mode {
	case RenameNoReplace:
		m = masterpb.RenameRequest_MODE_NOREPLACE
	case RenameExchange:
		m = masterpb.RenameRequest_MODE_EXCHANGE
	}
	resp, err := call(ctx, in.c.conn, &masterpb.RenameRequest{
		Header: in.inoHeader(ctx), OldParent: oldParent, OldName: oldName, NewParent: newParent, NewName: newName, Mode: m,
	}, masterpb.MasterClient.Rename)
	if err != nil {
		return inoErr("rename", oldParent, oldName, err)
	}
	observeDirs(ctx, resp.Dirs)
	return nil
}

// Link adds entry newName of newParent for inode ino (a hard link).
func (in Inodes) Link(ctx context.Context, ino, newParent uint64, newName string) (*masterpb.Attr, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.LinkRequest{Header: in.inoHeader(ctx), Inode: ino, NewParent: newParent, NewName: newName}, masterpb.MasterClient.Link)
	if err != nil {
		return nil, inoErr("link", newParent, newName, err)
	}
	observeDirs(ctx, resp.Dirs)
	return checkAttr("link", newParent, newName, resp.Attr)
}

// Symlink creates symbolic link name in parent pointing to target.
func (in Inodes) Symlink(ctx context.Context, parent uint64, name, target string) (*masterpb.Attr, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.SymlinkRequest{Header: in.inoHeader(ctx), Parent: parent, Name: name, Target: target}, masterpb.MasterClient.Symlink)
	if err != nil {
		return nil, inoErr("symlink", parent, name, err)
	}
	observeDirs(ctx, resp.Dirs)
	return checkAttr("symlink", parent, name, resp.Attr)
}

// Readlink returns the target of symbolic link ino.
func (in Inodes) Readlink(ctx context.Context, ino uint64) (string, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.ReadlinkRequest{Inode: ino}, masterpb.MasterClient.Readlink)
	if err != nil {
		return "", inoErr("readlink", ino, "", err)
	}
	return resp.Target, nil
}

// ReadDir returns up to limit entries (0: the master's page size) of
// directory ino whose names sort after startAfter, in byte order of
// their names, and whether more follow. withAttrs fills each entry's
// Attr (readdirplus).
func (in Inodes) ReadDir(ctx context.Context, ino uint64, startAfter string, limit int, withAttrs bool) ([]*masterpb.DirEntry, bool, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.ReadDirRequest{Inode: ino, StartAfter: startAfter, Limit: uint32(max(limit, 0)), WithAttrs: withAttrs}, masterpb.MasterClient.ReadDir)
	if err != nil {
		return nil, false, inoErr("readdir", ino, "", err)
	}
	return resp.Entries, resp.More && len(resp.Entries) > 0, nil
}

// Linux setxattr(2) flags, accepted by SetXattr.
const (
	XattrFlagCreate  = 1 // XATTR_CREATE: fail with EEXIST if present
	XattrFlagReplace = 2 // XATTR_REPLACE: fail with ENODATA if absent
)

// GetXattr returns the value of extended attribute name of ino; a
// missing attribute is ENODATA.
func (in Inodes) GetXattr(ctx context.Context, ino uint64, name string) ([]byte, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.GetXattrRequest{Inode: ino, Name: name}, masterpb.MasterClient.GetXattr)
	if err != nil {
		return nil, inoErr("getxattr", ino, name, err)
	}
	if resp.Value == nil {
		return []byte{}, nil
	}
	return resp.Value, nil
}

// SetXattr sets extended attribute name of ino to value; flags are
// setxattr(2)'s (XattrFlagCreate, XattrFlagReplace).
func (in Inodes) SetXattr(ctx context.Context, ino uint64, name string, value []byte, flags uint32) error {
	f := masterpb.SetXattrRequest_FLAG_ANY
	switch {
	case flags&XattrFlagCreate != 0 && flags&XattrFlagReplace != 0:
		return inoErr("setxattr", ino, name, syscall.EINVAL)
	case flags&XattrFlagCreate != 0:
		f = masterpb.SetXattrRequest_FLAG_CREATE
	case flags&XattrFlagReplace != 0:
		f = masterpb.SetXattrRequest_FLAG_REPLACE
	}
	_, err := call(ctx, in.c.conn, &masterpb.SetXattrRequest{Header: in.inoHeader(ctx), Inode: ino, Name: name, Value: value, Flag: f}, masterpb.MasterClient.SetXattr)
	return inoErr("setxattr", ino, name, err)
}

// ListXattr returns the names of ino's extended attributes.
func (in Inodes) ListXattr(ctx context.Context, ino uint64) ([]string, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.ListXattrRequest{Inode: ino}, masterpb.MasterClient.ListXattr)
	if err != nil {
		return nil, inoErr("listxattr", ino, "", err)
	}
	return resp.Names, nil
}

// RemoveXattr removes extended attribute name of ino; a missing one is
// ENODATA.
func (in Inodes) RemoveXattr(ctx context.Context, ino uint64, name string) error {
	_, err := call(ctx, in.c.conn, &masterpb.RemoveXattrRequest{Header: in.inoHeader(ctx), Inode: ino, Name: name}, masterpb.MasterClient.RemoveXattr)
	return inoErr("removexattr", ino, name, err)
}

// StatFS returns the cluster's capacity and use.
func (in Inodes) StatFS(ctx context.Context) (*masterpb.StatFSResponse, error) {
	resp, err := call(ctx, in.c.conn, &masterpb.StatFSRequest{}, masterpb.MasterClient.StatFS)
	if err != nil {
		return nil, inoErr("statfs", rootInode, "", err)
	}
	return resp, nil
}

// LockKind tells POSIX record locks from flock(2) locks, which never
// conflict with each other.
type LockKind int

// LockKind values.
const (
	LockPOSIX LockKind = iota
	LockFlock
)

// LockType is what a Lock call asks for.
type LockType int

// LockType values; they equal F_RDLCK, F_WRLCK and F_UNLCK on Linux.
const (
	LockRead LockType = iota
	LockWrite
	LockUnlock
)

// LockEOF as a Lock's End means to the end of the file and beyond.
const LockEOF = ^uint64(0)

// Lock is a byte-range lock: Owner (unique within this Client; the
// master tells owners of different Clients apart) holds bytes
// [Start, End] of a file.
type Lock struct {
	Kind  LockKind
	Type  LockType
	Owner uint64
	Start uint64
	End   uint64 // inclusive; LockEOF for the whole rest of the file
	PID   uint32
}

func (l Lock) proto() (masterpb.LockRequest_Kind, masterpb.LockRequest_Type) {
	k := masterpb.LockRequest_KIND_POSIX
	if l.Kind == LockFlock {
		k = masterpb.LockRequest_KIND_FLOCK
	}
	t := masterpb.LockRequest_TYPE_READ
	switch l.Type {
	case LockWrite:
		t = masterpb.LockRequest_TYPE_WRITE
	case LockUnlock:
		t = masterpb.LockRequest_TYPE_UNLOCK
	}
	return k, t
}

func lockFromProto(r *masterpb.LockRequest) Lock {
	l := Lock{Owner: r.GetOwner(), Start: r.GetStart(), End: r.GetEnd(), PID: r.GetPid()}
	if r.GetKind() == masterpb.LockRequest_KIND_FLOCK {
		l.Kind = LockFlock
	}
	switch r.GetType() {
	case masterpb.LockRequest_TYPE_WRITE:
		l.Type = LockWrite
	case masterpb.LockRequest_TYPE_UNLOCK:
		l.Type = LockUnlock
	}
	return l
}

// SetLock acquires, converts or releases (LockUnlock) lock l on ino
// without waiting. It reports false and the conflicting lock when
// another owner holds a conflicting one. Locks are held under this
// Client's lease, which the Client renews while it is open.
func (in Inodes) SetLock(ctx context.Context, ino uint64, l Lock) (granted bool, conflict Lock, err error) {
	return in.lock(ctx, ino, l, false)
}

// TestLock reports whether lock l could be granted on ino now and, if
// not, a lock that conflicts with it (F_GETLK).
func (in Inodes) TestLock(ctx context.Context, ino uint64, l Lock) (ok bool, conflict Lock, err error) {
	return in.lock(ctx, ino, l, true)
}

func (in Inodes) lock(ctx context.Context, ino uint64, l Lock, test bool) (bool, Lock, error) {
	k, t := l.proto()
	resp, err := call(ctx, in.c.conn, &masterpb.LockRequest{
		Header: in.inoHeader(ctx), Inode: ino, Owner: l.Owner, Kind: k, Type: t, Start: l.Start, End: l.End, Test: test, Pid: l.PID,
	}, masterpb.MasterClient.Lock)
	if err != nil {
		return false, Lock{}, inoErr("lock", ino, "", err)
	}
	if resp.Granted {
		return true, Lock{}, nil
	}
	return false, lockFromProto(resp.Conflict), nil
}

// Handle is a File opened by inode number. Besides File's calls it
// registers the open with the master, so that a file unlinked while open
// keeps its bytes until the last Handle of it closes.
type Handle struct {
	*File
	in     Inodes
	handle uint64
}

// Open opens inode ino for reading and writing. flag's O_TRUNC empties
// the file first; other flags are the caller's business (a FUSE mount
// leaves access checks to the kernel and append offsets to it too), so
// the File is always opened O_RDWR. flag's access mode is told to the
// master, though: the chunks of a file open for writing are not
// compacted while it is quiet (a writer may soon add more slices), and
// an O_RDONLY handle does not hold them back. Close the Handle to release
// it.
func (in Inodes) Open(ctx context.Context, ino uint64, flag int) (*Handle, *masterpb.Attr, error) {
	var attr *masterpb.Attr
	var handle uint64
	readOnly := flag&(syscall.O_WRONLY|syscall.O_RDWR) == 0
	req := &masterpb.OpenRequest{Header: in.inoHeader(ctx), Inode: ino, ReadOnly: readOnly}
	resp, err := call(ctx, in.c.conn, req, masterpb.MasterClient.Open)
	in.abandonIfUnanswered(req.Header, err)
	switch {
	case err == nil:
		attr, handle = resp.Attr, resp.Handle
	case masterpb.ErrnoOf(err) == syscall.ENOSYS:
		// A master without open-handle tracking: the file is still
		// readable, only open-unlinked semantics are lost.
		if attr, err = in.c.getAttr(ctx, ino); err != nil {
			return nil, nil, inoErr("open", ino, "", err)
		}
	default:
		return nil, nil, inoErr("open", ino, "", err)
	}
	if attr == nil {
		if attr, err = in.c.getAttr(ctx, ino); err != nil {
			in.release(ino, handle)
			return nil, nil, inoErr("open", ino, "", err)
		}
	}
	switch attr.GetType() {
	case masterpb.FileType_FILE_TYPE_REGULAR:
	case masterpb.FileType_FILE_TYPE_DIRECTORY:
		in.release(ino, handle)
		return nil, nil, inoErr("open", ino, "", syscall.EISDIR)
	default:
		in.release(ino, handle)
		return nil, nil, inoErr("open", ino, "", syscall.EINVAL)
	}
	if flag&syscall.O_TRUNC != 0 && attr.GetSize() > 0 {
		zero := uint64(0)
		if attr, err = in.SetAttr(ctx, ino, AttrChange{Size: &zero}); err != nil {
			in.release(ino, handle)
			return nil, nil, err
		}
	}
	return in.newHandle(ino, attr, handle), attr, nil
}

// newHandle wraps open handle handle of regular file ino, whose attributes
// are attr, in a Handle.
func (in Inodes) newHandle(ino uint64, attr *masterpb.Attr, handle uint64) *Handle {
	f := &File{c: in.c, name: fmt.Sprintf("#%d", ino), inode: ino, flag: syscall.O_RDWR}
	f.mu.size = int64(attr.GetSize())
	f.version = attr.GetVersion()
	return &Handle{File: f, in: in, handle: handle}
}

// CreateOpen is Create followed by Open, in one commit on the master: it
// creates regular file name in parent (or finds it, as Create does) and
// opens it. When name exists but is not a regular file, it returns that
// entry's attributes and a nil Handle, for the caller to deal with.
func (in Inodes) CreateOpen(ctx context.Context, parent uint64, name string, mode uint32, exclusive, truncate bool) (h *Handle, attr *masterpb.Attr, created bool, err error) {
	req := &masterpb.CreateRequest{
		Header: in.inoHeader(ctx), Parent: parent, Name: name, Mode: mode, Exclusive: exclusive, Truncate: truncate, Open: true,
	}
	resp, err := call(ctx, in.c.conn, req, masterpb.MasterClient.Create)
	in.abandonIfUnanswered(req.Header, err)
	if err != nil {
		return nil, nil, false, inoErr("create", parent, name, err)
	}
	observeDirs(ctx, resp.Dirs)
	if attr, err = checkAttr("create", parent, name, resp.Attr); err != nil {
		in.release(resp.Attr.GetInode(), resp.Handle)
		return nil, nil, false, err
	}
	if attr.GetType() != masterpb.FileType_FILE_TYPE_REGULAR {
		return nil, attr, resp.Created, nil
	}
	if resp.Handle == 0 {
		// A master that does not open on create: open separately.
		h, attr, err = in.Open(ctx, attr.Inode, syscall.O_RDWR)
		return h, attr, resp.Created, err
	}
	return in.newHandle(attr.Inode, attr, resp.Handle), attr, resp.Created, nil
}

// abandonIfUnanswered gives up a request that opens (an open, or a create
// that opens) when err says no reply came: it may have been applied and
// left a handle this client would never release (see releaser).
func (in Inodes) abandonIfUnanswered(h *masterpb.RequestHeader, err error) {
	if err != nil && (Unanswered(err) || errors.Is(err, context.Canceled)) {
		in.c.rel.abandon(h.GetRequestId())
	}
}

// release tells the master a handle is closed, soon and in a batch with
// others (releaser); best effort, since the lease ends it anyway should
// the call fail.
func (in Inodes) release(ino, handle uint64) {
	if handle == 0 {
		return
	}
	in.c.rel.release(ino, handle)
}

// Inode returns the number of the Handle's inode.
func (h *Handle) Inode() uint64 { return h.File.inode }

// Close commits what was written, as File.Close does, then queues the
// handle's release at the master (sent within ClientConfig.ReleaseDelay,
// and by Client.Close). It returns the commit's error.
func (h *Handle) Close() error {
	err := h.File.Close()
	h.in.release(h.File.inode, h.handle)
	return err
}

// PendingSize returns the file's size including bytes this Handle has
// written and not yet committed, and whether there are such bytes: the
// master's size is then not yet the whole truth.
func (h *Handle) PendingSize() (int64, bool) {
	f := h.File
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.size, f.mu.dirty
}

// DeferAttrs records attribute changes (not the size) to be committed
// with the bytes the Handle buffers, after them (see Writer.DeferAttrs).
// It returns false when the Handle buffers nothing: the caller then calls
// SetAttr. The master applies the changes with the data path's
// credentials, so the caller checks permissions first (a FUSE mount's
// kernel does, with default_permissions).
func (h *Handle) DeferAttrs(ch AttrChange) bool {
	f := h.File
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.closed || f.mu.w == nil {
		return false
	}
	return f.mu.w.DeferAttrs(ch)
}

// Commits returns how many commits the Handle's writes have made: a
// write or read that changes it committed buffered bytes (and any
// deferred attribute changes).
func (h *Handle) Commits() uint64 {
	f := h.File
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.w == nil {
		return 0
	}
	return f.mu.w.Commits()
}

// Buffered reports whether the Handle holds written bytes not yet
// committed.
func (h *Handle) Buffered() bool {
	f := h.File
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.w != nil && f.mu.w.Buffered()
}

// PendingAttrs returns the attribute changes DeferAttrs recorded that
// are not yet committed (nil: none), so that attributes shown meanwhile
// include them.
func (h *Handle) PendingAttrs() *masterpb.AttrUpdate {
	f := h.File
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.w == nil {
		return nil
	}
	return f.mu.w.PendingAttrs()
}

// Truncated tells the Handle that the file's size was set to size by
// someone else (a SetAttr): cached layout and read-ahead are dropped, so
// later reads see the truncation, and the size it tracks follows. Flush
// the Handle before truncating, or buffered bytes land after the fact.
func (h *Handle) Truncated(size int64) {
	f := h.File
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.size = size
	f.version = 0
	if f.mu.r != nil {
		f.mu.r.Close()
		f.mu.r = nil
	}
}

// Invalidate drops the Handle's cached layout so that the next read
// fetches the file's committed state afresh.
func (h *Handle) Invalidate() {
	f := h.File
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version = 0
	if f.mu.r != nil {
		f.mu.r.Close()
		f.mu.r = nil
	}
}
