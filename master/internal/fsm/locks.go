package fsm

import (
	"cmp"
	"math"
	"slices"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// File locks.
//
// Locks live in the replicated state so that every mount sees the same
// ones and a leader change loses none. Each inode's locks are one record
// (few processes lock one file at a time), and an index per client lets
// ExpireClient drop a dead client's locks:
//
//	k <inode>                                     FileLocks
//	K <uvarint len(client)> <client> <inode>      empty; client holds locks on inode
//
// A lock's holder is (client ID, owner): the owner is the kernel's lock
// owner, unique within one mount. POSIX record locks and flocks are
// separate kinds that never conflict with each other, as on Linux. A
// holder's POSIX locks never overlap: setting a range replaces what the
// holder had there, splitting its older ranges (fcntl(2) semantics).

const (
	tLock       = 'k'
	tClientLock = 'K'
)

func lockKey(ino uint64) []byte { return appendU64([]byte{tLock}, ino) }

func clientLockKey(client string, ino uint64) []byte {
	return appendU64(clientPrefix(tClientLock, client), ino)
}

func sameHolder(a, b *fsmpb.FileLock) bool {
	return a.ClientId == b.ClientId && a.Owner == b.Owner && a.Flock == b.Flock
}

func overlaps(a, b *fsmpb.FileLock) bool { return a.Start <= b.End && b.Start <= a.End }

// LockConflict returns the first lock in held that keeps l from being
// granted, or nil. It is pure, so the master can answer F_GETLK from a
// read without a Raft round.
func LockConflict(held []*fsmpb.FileLock, l *fsmpb.FileLock) *fsmpb.FileLock {
	for _, h := range held {
		if h.Flock == l.Flock && !sameHolder(h, l) && overlaps(h, l) && (h.Write || l.Write) {
			return h
		}
	}
	return nil
}

// applyLock returns held with l set (or, if unlock, l's range released) for
// l's holder; conflicts must have been checked.
func applyLock(held []*fsmpb.FileLock, l *fsmpb.FileLock, unlock bool) []*fsmpb.FileLock {
	out := make([]*fsmpb.FileLock, 0, len(held)+2)
	for _, h := range held {
		if !sameHolder(h, l) || !overlaps(h, l) {
			out = append(out, h)
			continue
		}
		// Keep the parts of h outside l.
		if h.Start < l.Start {
			left := proto.Clone(h).(*fsmpb.FileLock)
			left.End = l.Start - 1
			out = append(out, left)
		}
		if h.End > l.End {
			right := proto.Clone(h).(*fsmpb.FileLock)
			right.Start = l.End + 1
			out = append(out, right)
		}
	}
	if !unlock {
		out = append(out, proto.Clone(l).(*fsmpb.FileLock))
	}
	// Deterministic order (every replica stores the same bytes) and
	// adjacent ranges of one holder and type merged, so a lock list does
	// not grow with every byte-by-byte lock.
	slices.SortStableFunc(out, func(a, b *fsmpb.FileLock) int {
		switch {
		case a.ClientId != b.ClientId:
			return cmp.Compare(a.ClientId, b.ClientId)
		case a.Owner != b.Owner:
			return cmp.Compare(a.Owner, b.Owner)
		case a.Flock != b.Flock:
			if a.Flock {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Start, b.Start)
	})
	merged := out[:0]
	for _, h := range out {
		if k := len(merged); k > 0 {
			p := merged[k-1]
			if sameHolder(p, h) && p.Write == h.Write && p.End != math.MaxUint64 && p.End+1 >= h.Start {
				p.End = max(p.End, h.End)
				continue
			}
		}
		merged = append(merged, h)
	}
	return merged
}

func (t *txn) setLock(c *fsmpb.SetLock) (Result, error) {
	const op = "lock"
	obj := objIno(c.Inode)
	l := c.Lock
	if l == nil {
		return Result{}, newErr(op, obj, errInval, "no lock")
	}
	if err := checkClient(op, obj, l.ClientId); err != nil {
		return Result{}, err
	}
	if l.Start > l.End {
		return Result{}, newErr(op, obj, errInval, "range ends before it starts")
	}
	if l.Flock {
		// flock(2) locks the whole file.
		l.Start, l.End = 0, math.MaxUint64
	}
	n, err := t.inode(c.Inode)
	if err != nil {
		return Result{}, err
	}
	if n == nil {
		return Result{}, newErr(op, obj, errNoEnt, "")
	}
	var fl fsmpb.FileLocks
	if _, err := getProto(t.b, lockKey(c.Inode), &fl, "locks"); err != nil {
		return Result{}, err
	}
	if !c.Unlock && LockConflict(fl.Locks, l) != nil {
		return Result{}, newErr(op, obj, syscall.EAGAIN, "")
	}

	// Write phase.
	fl.Locks = applyLock(fl.Locks, l, c.Unlock)
	return Result{}, t.writeLocks(c.Inode, &fl, l.ClientId)
}

// writeLocks stores an inode's locks and keeps client's index entry in step.
func (t *txn) writeLocks(ino uint64, fl *fsmpb.FileLocks, client string) error {
	var err error
	if len(fl.Locks) == 0 {
		err = t.b.Delete(lockKey(ino), nil)
	} else {
		err = setProto(t.b, lockKey(ino), fl)
	}
	if err != nil {
		return err
	}
	holds := false
	for _, h := range fl.Locks {
		if h.ClientId == client {
			holds = true
			break
		}
	}
	if holds {
		return t.b.Set(clientLockKey(client, ino), nil, nil)
	}
	return t.b.Delete(clientLockKey(client, ino), nil)
}

// dropClientLocks releases every lock client holds.
func (t *txn) dropClientLocks(client string) error {
	p := clientPrefix(tClientLock, client)
	var inos []uint64
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if k := it.Key(); len(k) == len(p)+8 {
			inos = append(inos, u64At(k, len(p)))
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, ino := range inos {
		var fl fsmpb.FileLocks
		if _, err := getProto(t.b, lockKey(ino), &fl, "locks"); err != nil {
			return err
		}
		fl.Locks = slices.DeleteFunc(fl.Locks, func(h *fsmpb.FileLock) bool { return h.ClientId == client })
		if err := t.writeLocks(ino, &fl, client); err != nil {
			return err
		}
	}
	return nil
}

// dropInodeLocks deletes a removed inode's locks and their index entries.
func (t *txn) dropInodeLocks(ino uint64) error {
	var fl fsmpb.FileLocks
	ok, err := getProto(t.b, lockKey(ino), &fl, "locks")
	if err != nil || !ok {
		return err
	}
	for _, h := range fl.Locks {
		if err := t.b.Delete(clientLockKey(h.ClientId, ino), nil); err != nil {
			return err
		}
	}
	return t.b.Delete(lockKey(ino), nil)
}

// Locks returns the locks held on inode ino.
func (f *FSM) Locks(ino uint64) ([]*fsmpb.FileLock, error) {
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	var fl fsmpb.FileLocks
	if _, err := getProto(v, lockKey(ino), &fl, "locks"); err != nil {
		return nil, err
	}
	return fl.Locks, nil
}
