package fusefs

import (
	"context"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairnfs/cairn/client"
)

// fileHandle is one open of a regular file: a client.Handle, whose
// Writer buffers writes into slices and whose Reader reads ahead.
// Offsets come from the kernel, which also resolves O_APPEND.
type fileHandle struct {
	n     *node
	h     *client.Handle
	wrote atomic.Bool // the kernel's cache holds writes of ours
	// seen is the node's write count (node.writes) as of this handle's
	// last read, plus the writes made through this handle since: when it
	// differs from node.writes, another handle of the node wrote and the
	// layout this handle's reader cached may be stale.
	seen atomic.Uint64

	// owners are the lock owners granted record locks through this
	// handle. An open file description lock (F_OFD_SETLK) belongs to the
	// open file, and the kernel does not tell FUSE when that goes: its
	// locks are dropped here at Release. A process's classic record
	// locks go at the FLUSH of its close instead (see forgetOwner).
	owners struct {
		sync.Mutex
		set map[uint64]struct{}
	}
}

var (
	_ fs.FileReader   = (*fileHandle)(nil)
	_ fs.FileWriter   = (*fileHandle)(nil)
	_ fs.FileFlusher  = (*fileHandle)(nil)
	_ fs.FileFsyncer  = (*fileHandle)(nil)
	_ fs.FileReleaser = (*fileHandle)(nil)
)

// Read implements fs.FileReader. Bytes other handles of this mount wrote
// are visible to it, as on a local disk: they are committed first.
func (f *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if errno := f.n.syncHandles(f); errno != 0 {
		return nil, errno
	}
	if w := f.n.writes.Load(); f.seen.Swap(w) != w {
		f.h.Invalidate()
	}
	commits := f.h.Commits()
	n, err := f.h.ReadAt(dest, off)
	if f.h.Commits() != commits {
		// The read committed this handle's writes first.
		f.n.forgetAttr()
	}
	if err != nil && err != io.EOF {
		return nil, errnoOf(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write implements fs.FileWriter.
func (f *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.wrote.Store(true)
	commits := f.h.Commits()
	n, err := f.h.WriteAt(data, off)
	if f.h.Commits() != commits {
		// A full buffer, or a write elsewhere in the file, committed.
		f.n.forgetAttr()
	}
	f.seen.Add(1)
	f.n.writes.Add(1)
	if err != nil {
		return uint32(n), errnoOf(err)
	}
	return uint32(n), 0
}

// Flush implements fs.FileFlusher. The kernel sends it at every close(2)
// of a descriptor: committing here is what lets another mount that opens
// the file afterwards see the bytes (close-to-open), and lets close
// report a failed write.
func (f *fileHandle) Flush(ctx context.Context) syscall.Errno {
	err := f.h.Sync()
	f.n.forgetAttr()
	return errnoOf(err)
}

// Fsync implements fs.FileFsyncer: a commit is durable.
func (f *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	err := f.h.Sync()
	f.n.forgetAttr()
	return errnoOf(err)
}

// Release implements fs.FileReleaser: the last close of the open file.
func (f *fileHandle) Release(ctx context.Context) syscall.Errno {
	err := f.h.Close()
	f.owners.Lock()
	owners := f.owners.set
	f.owners.set = nil
	f.owners.Unlock()
	for o := range owners {
		f.n.fsys.dropLocks(f.n.ino(), o, client.LockPOSIX)
	}
	f.n.forget(f, f.wrote.Load())
	return errnoOf(err)
}

// lockKey names the locks one owner may hold on one inode.
type lockKey struct {
	ino, owner uint64
	kind       client.LockKind
}

// lockOf converts a kernel lock request.
func lockOf(owner uint64, lk *fuse.FileLock, flags uint32) client.Lock {
	l := client.Lock{Owner: owner, Start: lk.Start, End: lk.End, PID: lk.Pid}
	if flags&fuse.FUSE_LK_FLOCK != 0 {
		l.Kind = client.LockFlock
	}
	switch lk.Typ {
	case syscall.F_RDLCK:
		l.Type = client.LockRead
	case syscall.F_WRLCK:
		l.Type = client.LockWrite
	default:
		l.Type = client.LockUnlock
	}
	if lk.End >= math.MaxInt64 {
		l.End = client.LockEOF
	}
	return l
}

// Getlk implements fs.NodeGetlker (F_GETLK, F_OFD_GETLK).
func (n *node) Getlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	ok, conflict, err := n.fsys.in.TestLock(ctx, n.ino(), lockOf(owner, lk, flags))
	if err != nil {
		return errnoOf(err)
	}
	if ok {
		*out = fuse.FileLock{Start: lk.Start, End: lk.End, Typ: syscall.F_UNLCK}
		return 0
	}
	*out = fuse.FileLock{Start: conflict.Start, End: conflict.End, Pid: conflict.PID, Typ: syscall.F_RDLCK}
	if conflict.Type == client.LockWrite {
		out.Typ = syscall.F_WRLCK
	}
	if conflict.End == client.LockEOF {
		out.End = math.MaxInt64
	}
	return 0
}

// Setlk implements fs.NodeSetlker: take or drop a lock without waiting.
func (n *node) Setlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	ctx, cancel := n.fsys.opCtx(ctx)
	defer cancel()
	granted, errno := n.setLock(ctx, f, lockOf(owner, lk, flags))
	if errno == 0 && !granted {
		return syscall.EAGAIN
	}
	return errno
}

// Maximum pause between attempts of a blocking lock.
const lockPollMax = 500 * time.Millisecond

// Setlkw implements fs.NodeSetlkwer: wait until the lock is granted or
// the caller is interrupted (EINTR). The master does not queue waiters,
// so the wait polls with a growing pause.
func (n *node) Setlkw(ctx context.Context, f fs.FileHandle, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	l := lockOf(owner, lk, flags)
	pause := 10 * time.Millisecond
	for {
		octx, cancel := n.fsys.opCtx(ctx)
		granted, errno := n.setLock(octx, f, l)
		cancel()
		if errno != 0 || granted {
			return errno
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return syscall.EINTR
		case <-t.C:
		}
		pause = min(2*pause, lockPollMax)
	}
}

// setLock asks the master for l and records what this mount holds.
func (n *node) setLock(ctx context.Context, f fs.FileHandle, l client.Lock) (bool, syscall.Errno) {
	if err := n.fsys.unlockPending(ctx, lockKey{n.ino(), l.Owner, l.Kind}); err != nil {
		return false, errnoOf(err)
	}
	granted, _, err := n.fsys.in.SetLock(ctx, n.ino(), l)
	if err != nil {
		return false, errnoOf(err)
	}
	if granted && l.Type != client.LockUnlock {
		n.fsys.locks.Lock()
		n.fsys.locks.held[lockKey{n.ino(), l.Owner, l.Kind}] = struct{}{}
		n.fsys.locks.Unlock()
		if fh, ok := f.(*fileHandle); ok && l.Kind == client.LockPOSIX {
			fh.owners.Lock()
			if fh.owners.set == nil {
				fh.owners.set = map[uint64]struct{}{}
			}
			fh.owners.set[l.Owner] = struct{}{}
			fh.owners.Unlock()
		}
	}
	return granted, 0
}

// forgetOwner notes that a close of owner's (a process's) dropped its
// record locks on inode ino: those are not the open files' to drop again
// at their release, when the process may hold new ones.
func (f *filesystem) forgetOwner(ino, owner uint64) {
	f.open.Lock()
	n := f.open.nodes[ino]
	f.open.Unlock()
	if n == nil {
		return
	}
	n.mu.Lock()
	hs := make([]*fileHandle, 0, len(n.mu.handles))
	for h := range n.mu.handles {
		hs = append(hs, h)
	}
	n.mu.Unlock()
	for _, h := range hs {
		h.owners.Lock()
		delete(h.owners.set, owner)
		h.owners.Unlock()
	}
}

// dropLocks releases every lock of kind owner holds on inode ino, if it
// may hold any.
func (f *filesystem) dropLocks(ino, owner uint64, kind client.LockKind) {
	key := lockKey{ino, owner, kind}
	f.locks.Lock()
	_, ok := f.locks.held[key]
	delete(f.locks.held, key)
	f.locks.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.OpTimeout)
	defer cancel()
	switch err := f.unlock(ctx, key); {
	case err == nil:
	case client.Unanswered(err):
		f.log.Warn("fusefs: release locks; will retry", "inode", ino, "owner", owner, "err", err)
		f.retryUnlock(key)
	default:
		// A master's refusal, which a retry would not change; the
		// lease releases them when it runs out.
		f.log.Warn("fusefs: release locks", "inode", ino, "owner", owner, "err", err)
	}
}

// unlock drops every lock of key's kind its owner holds on its inode.
func (f *filesystem) unlock(ctx context.Context, key lockKey) error {
	l := client.Lock{Kind: key.kind, Type: client.LockUnlock, Owner: key.owner, Start: 0, End: client.LockEOF}
	_, _, err := f.in.SetLock(ctx, key.ino, l)
	return err
}

// Unlocks that fail.
//
// An unlock that no master answered (an outage longer than the operation
// timeout) cannot be left to the lease: the mount lives on and keeps its
// lease, so the lock would stand, and block every other mount, until the
// mount ends (a master's refusal is, as a retry would not change it). It
// is retried in the background instead, with a pause
// growing to unlockRetryMax, until it goes through or the mount is gone.
// A new lock request of the same inode, owner and kind first completes
// the pending unlock, so that the unlock cannot land after it and drop
// the new lock.

// unlockRetryMin and unlockRetryMax bound the pause between retries.
const (
	unlockRetryMin = time.Second
	unlockRetryMax = 30 * time.Second
)

// retryUnlock records key's unlock as pending and starts the retrier if
// it is not running.
func (f *filesystem) retryUnlock(key lockKey) {
	f.locks.Lock()
	defer f.locks.Unlock()
	if f.locks.pending == nil {
		f.locks.pending = map[lockKey]struct{}{}
	}
	f.locks.pending[key] = struct{}{}
	if f.locks.retrying || f.bg == nil {
		return
	}
	f.locks.retrying = true
	f.bg.Add(1)
	go f.retryUnlocks()
}

// retryUnlocks sends the pending unlocks until none is left or the mount
// is gone.
func (f *filesystem) retryUnlocks() {
	defer f.bg.Done()
	pause := unlockRetryMin
	for {
		t := time.NewTimer(pause)
		select {
		case <-f.done:
			t.Stop()
			f.locks.Lock()
			f.locks.retrying = false
			f.locks.Unlock()
			return
		case <-t.C:
		}
		f.locks.Lock()
		keys := make([]lockKey, 0, len(f.locks.pending))
		for k := range f.locks.pending {
			keys = append(keys, k)
		}
		f.locks.Unlock()
		for _, k := range keys {
			ctx, cancel := context.WithTimeout(context.Background(), f.opts.OpTimeout)
			err := f.unlockPending(ctx, k)
			cancel()
			if err != nil {
				f.log.Warn("fusefs: release locks; will retry", "inode", k.ino, "owner", k.owner, "err", err)
				break
			}
		}
		f.locks.Lock()
		if len(f.locks.pending) == 0 {
			f.locks.retrying = false
			f.locks.Unlock()
			return
		}
		f.locks.Unlock()
		pause = min(2*pause, unlockRetryMax)
	}
}

// unlockPending sends key's pending unlock, if there is one, and returns
// its error if no master answered; otherwise (done, or refused, which a
// retry would not change) it is no longer pending. Lock requests of key
// call it first.
func (f *filesystem) unlockPending(ctx context.Context, key lockKey) error {
	isPending := func() bool {
		f.locks.Lock()
		defer f.locks.Unlock()
		_, ok := f.locks.pending[key]
		return ok
	}
	if !isPending() {
		return nil
	}
	f.unlocking.Lock()
	defer f.unlocking.Unlock()
	if !isPending() {
		return nil // the retrier sent it meanwhile
	}
	if err := f.unlock(ctx, key); client.Unanswered(err) {
		return err
	} else if err != nil {
		f.log.Warn("fusefs: release locks", "inode", key.ino, "owner", key.owner, "err", err)
	}
	f.locks.Lock()
	delete(f.locks.pending, key)
	f.locks.Unlock()
	return nil
}
