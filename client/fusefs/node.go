package fusefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// filesystem is what every node of one mount shares.
type filesystem struct {
	in   client.Inodes
	opts Options
	log  *slog.Logger

	// open maps the inode numbers of nodes with open handles to the
	// node, so that attributes the master sends through another path
	// (a lookup, a listing) get their unflushed size too.
	open struct {
		sync.Mutex
		nodes map[uint64]*node
	}

	locks struct {
		sync.Mutex
		// held lists the (inode, owner, kind) triples this mount was
		// granted locks for, so that a close only costs an unlock RPC
		// when its owner may hold something.
		held map[lockKey]struct{}
		// pending lists the unlocks that no master answered, retried
		// in the background (retryUnlocks, running while retrying)
		// and before any new lock request of the same key.
		pending  map[lockKey]struct{}
		retrying bool
	}
	// unlocking serialises the sends of pending unlocks, so that the
	// retrier's cannot land after a new lock that waited for it.
	unlocking sync.Mutex
	// done is closed when the mount is gone; bg tracks the goroutines
	// that must end by then (Server.Wait waits for them).
	done <-chan struct{}
	bg   *sync.WaitGroup
}

// opCtx returns the context one operation runs under: the caller's
// identity, bounded by OpTimeout. The kernel's interrupt is not passed
// on: a Go program gets interrupted by its own runtime's preemption
// signals, and abandoning a mutation midway would only leave the
// caller unsure of its outcome. (Blocking lock waits do honour it.)
func (f *filesystem) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	out := client.WithCaller(context.WithoutCancel(ctx), f.caller(ctx))
	return context.WithTimeout(out, f.opts.OpTimeout)
}

// caller returns the identity of the process behind a request.
func (f *filesystem) caller(ctx context.Context) client.Caller {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return client.Caller{}
	}
	if c.Uid == 0 && f.opts.RootSquash {
		return client.Caller{UID: f.opts.SquashUID, GID: f.opts.SquashGID}
	}
	out := client.Caller{UID: c.Uid, GID: c.Gid}
	if c.Uid != 0 {
		// FUSE requests carry no supplementary groups; the master needs
		// them for group permission checks.
		out.Groups = groupsOf(c.Pid)
	}
	return out
}

// groupsOf reads the supplementary groups of process pid (nil if it has
// gone).
func groupsOf(pid uint32) []uint32 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var out []uint32
		for _, g := range strings.Fields(rest) {
			if v, err := strconv.ParseUint(g, 10, 32); err == nil {
				out = append(out, uint32(v))
			}
		}
		return out
	}
	return nil
}

// node is every kind of file: the kernel only sends an operation to the
// kinds it applies to (it knows each inode's type from its attributes),
// and the master checks again, so one type keeps the adapter small.
type node struct {
	fs.Inode
	fsys *filesystem

	// writes counts the writes made through the node's handles, so that
	// a handle can tell whether others wrote since it last read.
	writes atomic.Uint64

	mu struct {
		sync.Mutex
		// handles are this node's open files on this mount.
		handles map[*fileHandle]struct{}
		// cachedVersion is the file version the kernel's page cache
		// holds pages of (0: none known).
		cachedVersion uint64
		// noCapsUntil: until then the node is known to have no
		// security.capability xattr (see capsXattr).
		noCapsUntil time.Time
		// attr is the node's attributes as the master last gave them
		// to this mount, at attrAt, until a commit of ours changes
		// them (nil: none). A chmod, chown or utimes deferred to a
		// handle's commit answers from it, as the kernel would answer
		// a stat from its own cache, instead of asking the master.
		attr   *masterpb.Attr
		attrAt time.Time
		// primed: attr came with the reply to an entry change of ours
		// in this directory (see primeDirs), and the next GETATTR may
		// take it.
		primed bool
	}
}

// remember records attributes the master just gave (see node.mu.attr).
func (n *node) remember(a *masterpb.Attr) {
	n.mu.Lock()
	n.mu.attr, n.mu.attrAt, n.mu.primed = a, time.Now(), false
	n.mu.Unlock()
}

// primeDirs returns ctx with a client.DirObserver that primes dirs with
// the attributes the master sends after an entry change in them.
//
// The kernel drops a directory's cached attributes whenever an entry in
// it is created or removed, and the next path walk through it checks
// permissions with a GETATTR: one more round trip after every create,
// mkdir or unlink (tar, git checkout, rm -r). The master's reply to the
// change carries the directory's attributes as the change left them, as
// fresh as that GETATTR's answer would be, so the GETATTR takes them.
func primeDirs(ctx context.Context, dirs ...*node) context.Context {
	return client.WithDirObserver(ctx, func(a *masterpb.Attr) {
		for _, d := range dirs {
			if d != nil && d.ino() == a.Inode {
				d.prime(a)
			}
		}
	})
}

// prime remembers a directory's attributes from an entry change's reply,
// for the next GETATTR; an older version (replies to concurrent changes
// may arrive out of order) does not replace a newer one.
func (n *node) prime(a *masterpb.Attr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.primed && n.mu.attr != nil && n.mu.attr.Version > a.Version {
		return
	}
	n.mu.attr, n.mu.attrAt, n.mu.primed = a, time.Now(), true
}

// takePrimed returns the primed attributes, once, with how much of the
// attribute timeout they have left; nil if none or too old. Taken once
// and only for that remainder, they are never older than the kernel's
// own cache would be allowed to be.
func (n *node) takePrimed() (*masterpb.Attr, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.mu.primed || n.mu.attr == nil {
		return nil, 0
	}
	n.mu.primed = false
	left := n.fsys.opts.AttrTimeout - time.Since(n.mu.attrAt)
	if left <= 0 {
		return nil, 0
	}
	return n.mu.attr, left
}

// forgetAttr drops the remembered attributes: a commit changed them.
func (n *node) forgetAttr() {
	n.mu.Lock()
	n.mu.attr, n.mu.primed = nil, false
	n.mu.Unlock()
}

// forgetChild drops the remembered attributes of name's node, if the
// kernel has one: an unlink, rename or link changes its nlink or ctime.
func (n *node) forgetChild(name string) {
	if c := n.GetChild(name); c != nil {
		if cn, ok := c.Operations().(*node); ok {
			cn.forgetAttr()
		}
	}
}

// remembered returns the remembered attributes if they are younger than
// the attribute timeout, else nil.
func (n *node) remembered() *masterpb.Attr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.attr == nil || time.Since(n.mu.attrAt) >= n.fsys.opts.AttrTimeout {
		return nil
	}
	return n.mu.attr
}

// capsXattr is the xattr the kernel asks for before every first write
// to a file and every chown, to drop file capabilities as Linux does.
// Files almost never have it, so a node created here, or found without
// it, is remembered as having none for the attribute timeout: the same
// staleness the kernel accepts for the mode bits.
const capsXattr = "security.capability"

// noCapsFor notes that the node has no capsXattr, for the attribute
// timeout.
func (n *node) noCapsFor() {
	n.mu.Lock()
	n.mu.noCapsUntil = time.Now().Add(n.fsys.opts.AttrTimeout)
	n.mu.Unlock()
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeGetxattrer     = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeListxattrer    = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeGetlker        = (*node)(nil)
	_ fs.NodeSetlker        = (*node)(nil)
	_ fs.NodeSetlkwer       = (*node)(nil)
)

func (n *node) ino() uint64 { return n.StableAttr().Ino }

// typeBits returns the S_IFMT bits of a master file type.
func typeBits(t masterpb.FileType) uint32 {
	switch t {
	case masterpb.FileType_FILE_TYPE_DIRECTORY:
		return syscall.S_IFDIR
	case masterpb.FileType_FILE_TYPE_SYMLINK:
		return syscall.S_IFLNK
	case masterpb.FileType_FILE_TYPE_FIFO:
		return syscall.S_IFIFO
	case masterpb.FileType_FILE_TYPE_SOCKET:
		return syscall.S_IFSOCK
	case masterpb.FileType_FILE_TYPE_CHAR_DEVICE:
		return syscall.S_IFCHR
	case masterpb.FileType_FILE_TYPE_BLOCK_DEVICE:
		return syscall.S_IFBLK
	}
	return syscall.S_IFREG
}

// fillAttr converts master attributes for the kernel.
func fillAttr(a *masterpb.Attr, out *fuse.Attr) {
	out.Ino = a.GetInode()
	out.Size = a.GetSize()
	out.Blocks = (a.GetSize() + 511) / 512
	out.Blksize = 1 << 20
	out.Mode = typeBits(a.GetType()) | a.GetMode()&0o7777
	out.Nlink = a.GetNlink()
	out.Owner = fuse.Owner{Uid: a.GetUid(), Gid: a.GetGid()}
	out.Rdev = a.GetRdev()
	at, mt, ct := time.Unix(0, a.GetAtimeUnixNano()), time.Unix(0, a.GetMtimeUnixNano()), time.Unix(0, a.GetCtimeUnixNano())
	out.SetTimes(&at, &mt, &ct)
}

// fillAttrOpen is fillAttr with the size this mount's unflushed writes
// give the file, so that the kernel never shrinks its idea of the file
// below bytes it has handed us (an O_APPEND write lands at that size).
func (n *node) fillAttrOpen(a *masterpb.Attr, out *fuse.Attr) {
	fillAttr(a, out)
	n.mu.Lock()
	defer n.mu.Unlock()
	for h := range n.mu.handles {
		if size, dirty := h.h.PendingSize(); dirty && uint64(size) > out.Size {
			out.Size = uint64(size)
			out.Blocks = (out.Size + 511) / 512
		}
		if u := h.h.PendingAttrs(); u != nil {
			if u.Mode != nil {
				out.Mode = out.Mode&syscall.S_IFMT | *u.Mode&0o7777
			}
			if u.Uid != nil {
				out.Uid = *u.Uid
			}
			if u.Gid != nil {
				out.Gid = *u.Gid
			}
			if u.AtimeUnixNano != nil {
				t := time.Unix(0, *u.AtimeUnixNano)
				out.SetTimes(&t, nil, nil)
			}
			if u.MtimeUnixNano != nil {
				t := time.Unix(0, *u.MtimeUnixNano)
				out.SetTimes(nil, &t, nil)
			}
		}
	}
}

// child returns the kernel-facing inode for attributes a.
func (n *node) child(ctx context.Context, a *masterpb.Attr, out *fuse.EntryOut) *fs.Inode {
	n.fsys.open.Lock()
	open := n.fsys.open.nodes[a.GetInode()]
	n.fsys.open.Unlock()
	if open != nil {
		open.fillAttrOpen(a, &out.Attr)
	} else {
		fillAttr(a, &out.Attr)
	}
	return n.NewInode(ctx, &node{fsys: n.fsys}, fs.StableAttr{Mode: typeBits(a.GetType()), Ino: a.GetInode()})
}

// Lookup implements fs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	a, err := n.fsys.in.Lookup(ctx, n.ino(), name)
	if err != nil {
		return nil, errnoOf(err)
	}
	return n.child(ctx, a, out), 0
}

// Getattr implements fs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if a, left := n.takePrimed(); a != nil {
		n.fillAttrOpen(a, &out.Attr)
		out.SetTimeout(left)
		return 0
	}
	if a := n.rememberedWhileWriting(); a != nil {
		n.fillAttrOpen(a, &out.Attr)
		return 0
	}
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	a, err := n.fsys.in.GetAttr(ctx, n.ino())
	if err != nil {
		return errnoOf(err)
	}
	n.remember(a)
	n.fillAttrOpen(a, &out.Attr)
	return 0
}

// rememberedWhileWriting returns the remembered attributes (see
// remembered) if a handle of this mount buffers writes to the node, else
// nil. The kernel asks for a file's attributes again before every chown
// (to clear setuid bits on fresh ones) even though it has them; while
// the file is being written here, what this mount knows, with its
// unflushed size and deferred changes laid over, is as fresh as the
// master's answer would be.
func (n *node) rememberedWhileWriting() *masterpb.Attr {
	a := n.remembered()
	if a == nil || len(n.buffering()) == 0 {
		return nil
	}
	return a
}

// buffering returns the node's handles on this mount that hold written
// bytes not yet committed.
func (n *node) buffering() []*fileHandle {
	n.mu.Lock()
	defer n.mu.Unlock()
	var hs []*fileHandle
	for h := range n.mu.handles {
		if h.h.Buffered() {
			hs = append(hs, h)
		}
	}
	return hs
}

// Setattr implements fs.NodeSetattrer.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	var ch client.AttrChange
	if m, ok := in.GetMode(); ok {
		m &= 0o7777
		ch.Mode = &m
	}
	if u, ok := in.GetUID(); ok {
		ch.UID = &u
	}
	if g, ok := in.GetGID(); ok {
		ch.GID = &g
	}
	if t, ok := in.GetATime(); ok {
		ch.Atime = &t
	}
	if t, ok := in.GetMTime(); ok {
		ch.Mtime = &t
	}
	size, truncate := in.GetSize()
	if truncate {
		ch.Size = &size
	} else if a, deferred, errno := n.deferAttrs(ctx, ch); errno != 0 || deferred {
		if errno == 0 {
			n.fillAttrOpen(a, &out.Attr)
			out.SetTimeout(n.fsys.opts.AttrTimeout)
		}
		return errno
	}
	// Bytes still buffered here must land before the change, not after
	// it: after a truncate, or with a commit's mtime over an explicit one.
	if errno := n.syncHandles(nil); errno != 0 {
		return errno
	}
	a, err := n.fsys.in.SetAttr(ctx, n.ino(), ch)
	if err != nil {
		return errnoOf(err)
	}
	n.remember(a)
	if truncate {
		n.mu.Lock()
		for h := range n.mu.handles {
			h.h.Truncated(int64(size))
		}
		n.mu.Unlock()
	}
	n.fillAttrOpen(a, &out.Attr)
	// The reply is as fresh as a GETATTR's; without a timeout the
	// kernel would ask again at once (tar: utimes, then chown).
	out.SetTimeout(n.fsys.opts.AttrTimeout)
	return 0
}

// deferAttrs hands a chmod, chown or utimes to the one handle of this
// mount that buffers writes to the node, to be committed with them (see
// client.Handle.DeferAttrs), and returns the attributes as they will be
// without them. It defers nothing (false) when no handle or several
// buffer writes, or under root squash: the kernel checked the change with
// the caller's real identity, which is not the one the master would use.
func (n *node) deferAttrs(ctx context.Context, ch client.AttrChange) (*masterpb.Attr, bool, syscall.Errno) {
	if n.fsys.opts.RootSquash {
		return nil, false, 0
	}
	hs := n.buffering()
	if len(hs) != 1 {
		return nil, false, 0
	}
	dirty := hs[0]
	a := n.remembered()
	if a == nil {
		var err error
		if a, err = n.fsys.in.GetAttr(ctx, n.ino()); err != nil {
			return nil, false, errnoOf(err)
		}
		n.remember(a)
	}
	if !dirty.h.DeferAttrs(ch) {
		return nil, false, 0
	}
	return a, true, 0
}

// syncHandles commits what this mount's open handles of the node buffer,
// but for skip's (nil: every handle's).
func (n *node) syncHandles(skip *fileHandle) syscall.Errno {
	n.mu.Lock()
	var hs []*fileHandle
	for h := range n.mu.handles {
		if _, dirty := h.h.PendingSize(); dirty && h != skip {
			hs = append(hs, h)
		}
	}
	n.mu.Unlock()
	if len(hs) > 0 {
		defer n.forgetAttr()
	}
	for _, h := range hs {
		// A handle being released commits on its own as it closes.
		if err := h.h.Sync(); err != nil && !errors.Is(err, iofs.ErrClosed) {
			return errnoOf(err)
		}
	}
	return 0
}

// Mkdir implements fs.NodeMkdirer.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	a, err := n.fsys.in.Mkdir(primeDirs(ctx, n), n.ino(), name, mode&0o7777)
	if err != nil {
		return nil, errnoOf(err)
	}
	return n.child(ctx, a, out), 0
}

// Create implements fs.NodeCreater. The kernel sends it for O_CREAT
// opens of names it has no cached entry for.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	octx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	// One commit creates (or truncates) and opens.
	h, a, created, err := n.fsys.in.CreateOpen(primeDirs(octx, n), n.ino(), name, mode&0o7777, flags&syscall.O_EXCL != 0, flags&syscall.O_TRUNC != 0)
	if err != nil {
		return nil, nil, 0, errnoOf(err)
	}
	if h == nil {
		// An existing name of another kind: let the kernel look it up
		// and open it the ordinary way.
		if a.GetType() == masterpb.FileType_FILE_TYPE_DIRECTORY {
			return nil, nil, 0, syscall.EISDIR
		}
		return nil, nil, 0, syscall.EEXIST
	}
	inode := n.child(octx, a, out)
	cn := inode.Operations().(*node)
	fh, fuseFlags := cn.attach(h, a)
	if created {
		cn.noCapsFor()
	}
	return inode, fh, fuseFlags, 0
}

// fileType returns the master type of mknod's S_IFMT bits.
func fileType(mode uint32) (masterpb.FileType, bool) {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG, 0:
		return masterpb.FileType_FILE_TYPE_REGULAR, true
	case syscall.S_IFIFO:
		return masterpb.FileType_FILE_TYPE_FIFO, true
	case syscall.S_IFSOCK:
		return masterpb.FileType_FILE_TYPE_SOCKET, true
	case syscall.S_IFCHR:
		return masterpb.FileType_FILE_TYPE_CHAR_DEVICE, true
	case syscall.S_IFBLK:
		return masterpb.FileType_FILE_TYPE_BLOCK_DEVICE, true
	}
	return 0, false
}

// Mknod implements fs.NodeMknoder.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	typ, ok := fileType(mode)
	if !ok {
		return nil, syscall.EINVAL
	}
	var a *masterpb.Attr
	var err error
	pctx := primeDirs(ctx, n)
	if typ == masterpb.FileType_FILE_TYPE_REGULAR {
		a, _, err = n.fsys.in.Create(pctx, n.ino(), name, mode&0o7777, true, false)
	} else {
		a, err = n.fsys.in.Mknod(pctx, n.ino(), name, typ, mode&0o7777, dev)
	}
	if err != nil {
		return nil, errnoOf(err)
	}
	return n.child(ctx, a, out), 0
}

// Unlink implements fs.NodeUnlinker.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	defer n.forgetChild(name)
	return errnoOf(n.fsys.in.Unlink(primeDirs(ctx, n), n.ino(), name))
}

// Rmdir implements fs.NodeRmdirer.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	return errnoOf(n.fsys.in.Rmdir(primeDirs(ctx, n), n.ino(), name))
}

// renameExchange and renameNoReplace are renameat2(2)'s flags.
const (
	renameNoReplace = 0x1
	renameExchange  = 0x2
)

// Rename implements fs.NodeRenamer.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	mode := client.RenameReplace
	switch {
	case flags&^uint32(renameNoReplace|renameExchange) != 0, flags == renameNoReplace|renameExchange:
		return syscall.EINVAL
	case flags&renameNoReplace != 0:
		mode = client.RenameNoReplace
	case flags&renameExchange != 0:
		mode = client.RenameExchange
	}
	np := newParent.EmbeddedInode().StableAttr().Ino
	defer n.forgetChild(name)
	p, _ := newParent.(*node)
	if p != nil {
		defer p.forgetChild(newName)
	}
	return errnoOf(n.fsys.in.Rename(primeDirs(ctx, n, p), n.ino(), name, np, newName, mode))
}

// Link implements fs.NodeLinker.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	if t, ok := target.(*node); ok {
		defer t.forgetAttr()
	}
	a, err := n.fsys.in.Link(primeDirs(ctx, n), target.EmbeddedInode().StableAttr().Ino, n.ino(), name)
	if err != nil {
		return nil, errnoOf(err)
	}
	return n.child(ctx, a, out), 0
}

// Symlink implements fs.NodeSymlinker.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	a, err := n.fsys.in.Symlink(primeDirs(ctx, n), n.ino(), name, target)
	if err != nil {
		return nil, errnoOf(err)
	}
	return n.child(ctx, a, out), 0
}

// Readlink implements fs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	t, err := n.fsys.in.Readlink(ctx, n.ino())
	if err != nil {
		return nil, errnoOf(err)
	}
	return []byte(t), 0
}

// Open implements fs.NodeOpener.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	return n.open(ctx, flags)
}

// open opens the file and decides whether the kernel may keep the pages
// it cached: only if the file's version is the one they were cached at.
// That check at every open is what makes close-to-open consistency hold
// across mounts.
func (n *node) open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h, a, err := n.fsys.in.Open(ctx, n.ino(), int(flags))
	if err != nil {
		return nil, 0, errnoOf(err)
	}
	fh, fuseFlags := n.attach(h, a)
	return fh, fuseFlags, 0
}

// attach makes h, just opened with attributes a, a handle of this node,
// and returns it with the open flags for the kernel.
func (n *node) attach(h *client.Handle, a *masterpb.Attr) (*fileHandle, uint32) {
	fh := &fileHandle{n: n, h: h}
	var fuseFlags uint32
	n.mu.Lock()
	if n.mu.handles == nil {
		n.mu.handles = map[*fileHandle]struct{}{}
	}
	if len(n.mu.handles) > 0 || (n.mu.cachedVersion != 0 && n.mu.cachedVersion == a.GetVersion()) {
		// Unchanged since cached, or open here already (our own
		// writes are in the cache).
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	n.mu.cachedVersion = a.GetVersion()
	n.mu.handles[fh] = struct{}{}
	n.mu.attr, n.mu.attrAt, n.mu.primed = a, time.Now(), false
	n.mu.Unlock()
	n.fsys.open.Lock()
	n.fsys.open.nodes[n.ino()] = n
	n.fsys.open.Unlock()
	return fh, fuseFlags
}

// forget drops a closed handle. If it wrote, the version the kernel's
// cached pages match is unknown (our commits changed it, and so may
// others have meanwhile): the next open starts from a clean cache.
func (n *node) forget(fh *fileHandle, wrote bool) {
	// Lock order: fsys.open before n.mu.
	n.fsys.open.Lock()
	defer n.fsys.open.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.mu.handles, fh)
	if wrote {
		n.mu.cachedVersion = 0
	}
	if len(n.mu.handles) == 0 && n.fsys.open.nodes[n.ino()] == n {
		delete(n.fsys.open.nodes, n.ino())
	}
}

// OpendirHandle implements fs.NodeOpendirHandler.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, 0, 0
}

// aclXattr reports whether name is a POSIX ACL attribute. Cairn keeps
// no ACLs (the kernel would not enforce stored ones: the mount does not
// ask for FUSE_POSIX_ACL), so they are EOPNOTSUPP, as on an ext4 mounted
// noacl. Answering here also spares ls -l, which asks for them on every
// entry, a master round trip per entry.
func aclXattr(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// Getxattr implements fs.NodeGetxattrer.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if aclXattr(attr) {
		return 0, syscall.EOPNOTSUPP
	}
	if attr == capsXattr {
		n.mu.Lock()
		none := time.Now().Before(n.mu.noCapsUntil)
		n.mu.Unlock()
		if none {
			return 0, syscall.ENODATA
		}
	}
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	v, err := n.fsys.in.GetXattr(ctx, n.ino(), attr)
	if err != nil {
		errno := errnoOf(err)
		if errno == syscall.ENODATA && attr == capsXattr {
			n.noCapsFor()
		}
		return 0, errno
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Setxattr implements fs.NodeSetxattrer.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if aclXattr(attr) {
		return syscall.EOPNOTSUPP
	}
	if attr == capsXattr {
		n.mu.Lock()
		n.mu.noCapsUntil = time.Time{}
		n.mu.Unlock()
	}
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	defer n.forgetAttr()
	return errnoOf(n.fsys.in.SetXattr(ctx, n.ino(), attr, data, flags))
}

// Listxattr implements fs.NodeListxattrer.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	names, err := n.fsys.in.ListXattr(ctx, n.ino())
	if err != nil {
		return 0, errnoOf(err)
	}
	size := 0
	for _, nm := range names {
		size += len(nm) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, nm := range names {
		off += copy(dest[off:], nm)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

// Removexattr implements fs.NodeRemovexattrer.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if aclXattr(attr) {
		return syscall.EOPNOTSUPP
	}
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	defer n.forgetAttr()
	return errnoOf(n.fsys.in.RemoveXattr(ctx, n.ino(), attr))
}

// statfsBlock is the block size statfs reports capacity in.
const statfsBlock = 4096

// Statfs implements fs.NodeStatfser: the cluster's capacity.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	st, err := n.fsys.in.StatFS(ctx)
	if err != nil {
		return errnoOf(err)
	}
	out.Bsize = statfsBlock
	out.Frsize = statfsBlock
	out.Blocks = st.TotalBytes / statfsBlock
	out.Bfree = st.FreeBytes / statfsBlock
	out.Bavail = out.Bfree
	// Inodes are not a limited resource: report plenty free.
	out.Files = st.Inodes + 1<<32
	out.Ffree = 1 << 32
	out.NameLen = 255
	return 0
}

// fallocate(2) modes Allocate accepts.
const fallocKeepSize = 0x1 // FALLOC_FL_KEEP_SIZE

// Allocate implements fs.NodeAllocater. Cairn stores no bytes for holes
// and reserves no space ahead, so allocation only sets the size that
// plain fallocate promises; punching holes and the like are EOPNOTSUPP.
func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	if mode&^uint32(fallocKeepSize) != 0 {
		return syscall.EOPNOTSUPP
	}
	if mode&fallocKeepSize != 0 {
		return 0
	}
	if errno := n.syncHandles(nil); errno != 0 {
		return errno
	}
	octx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	a, err := n.fsys.in.GetAttr(octx, n.ino())
	if err != nil {
		return errnoOf(err)
	}
	end := off + size
	if end <= a.Size {
		return 0
	}
	if _, err := n.fsys.in.SetAttr(octx, n.ino(), client.AttrChange{Size: &end}); err != nil {
		return errnoOf(err)
	}
	n.mu.Lock()
	for h := range n.mu.handles {
		h.h.Truncated(int64(end))
	}
	n.mu.Unlock()
	return 0
}
