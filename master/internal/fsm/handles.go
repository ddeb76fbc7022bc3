package fsm

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// Open handles and orphans.
//
// POSIX lets a process keep reading and writing a file after its last name
// is gone. A client records each open with OpenHandle; when the last link of
// an inode with handles goes, the inode stays as an orphan (nlink 0, no
// dentry, listed under o <inode>) and is removed with its data when its last
// handle is released. Handles belong to a client ID: when that client's
// lease lapses the leader proposes ExpireClient, which releases them all, so
// a crashed client cannot pin data forever.
//
// Keys:
//
//	h <inode> <handle>                      Handle
//	H <uvarint len(client)> <client> <inode> <handle>   empty; the client's handles
//	o <inode>                               empty; an orphan inode

const (
	tHandle       = 'h'
	tClientHandle = 'H'
	tOrphan       = 'o'
)

func handlePrefix(ino uint64) []byte { return appendU64([]byte{tHandle}, ino) }

func handleKey(ino, h uint64) []byte { return appendU64(handlePrefix(ino), h) }

// clientPrefix is the client part of the H and K index keys.
func clientPrefix(table byte, client string) []byte {
	k := binary.AppendUvarint([]byte{table}, uint64(len(client)))
	return append(k, client...)
}

func clientHandleKey(client string, ino, h uint64) []byte {
	return appendU64(appendU64(clientPrefix(tClientHandle, client), ino), h)
}

func orphanKey(ino uint64) []byte { return appendU64([]byte{tOrphan}, ino) }

func checkClient(op, obj, client string) error {
	switch {
	case client == "":
		return newErr(op, obj, errInval, "no client ID")
	case len(client) > MaxClientIDLen:
		return newErr(op, obj, errInval, "client ID too long")
	}
	return nil
}

func (t *txn) openHandle(c *fsmpb.OpenHandle) (Result, error) {
	const op = "open"
	obj := objIno(c.Inode)
	if err := checkClient(op, obj, c.ClientId); err != nil {
		return Result{}, err
	}
	n, err := t.inode(c.Inode)
	if err != nil {
		return Result{}, err
	}
	switch {
	case n == nil:
		return Result{}, newErr(op, obj, errNoEnt, "")
	case n.Type == typeDir:
		return Result{}, newErr(op, obj, errIsDir, "")
	}
	if t.meta.NextHandle == 0 {
		t.meta.NextHandle = 1
	}
	h := t.meta.NextHandle
	t.meta.NextHandle++
	if err := setProto(t.b, handleKey(c.Inode, h), &fsmpb.Handle{ClientId: c.ClientId, OpenedUnixNano: t.now, ReadOnly: c.ReadOnly}); err != nil {
		return Result{}, err
	}
	if err := t.b.Set(clientHandleKey(c.ClientId, c.Inode, h), nil, nil); err != nil {
		return Result{}, err
	}
	return Result{Attr: attrOf(c.Inode, n), Handle: h}, nil
}

func (t *txn) releaseHandle(c *fsmpb.ReleaseHandle) (Result, error) {
	if len(c.Abandoned) > 0 && (c.ClientId == "" || len(c.ClientId) > MaxClientIDLen) {
		return Result{}, newErr("release", "abandoned requests", errInval, "no or too long a client ID")
	}
	for _, id := range c.Abandoned {
		if len(id) == 0 || len(id) > MaxRequestIDLen {
			return Result{}, newErr("release", "abandoned requests", errInval, "empty or too long a request ID")
		}
	}
	if c.Handle != 0 || (len(c.More) == 0 && len(c.Abandoned) == 0) {
		if gone, err := t.releaseOne(c.Inode, c.Handle); err != nil {
			return Result{}, err
		} else if gone {
			return Result{}, newErr("release", objIno(c.Inode), errNoEnt, "no such handle")
		}
	}
	for _, h := range c.More {
		// One already gone went with a lapsed lease, or is listed twice.
		if _, err := t.releaseOne(h.Inode, h.Handle); err != nil {
			return Result{}, err
		}
	}
	for _, id := range c.Abandoned {
		if err := t.abandon(c.ClientId, id); err != nil {
			return Result{}, err
		}
	}
	return Result{}, nil
}

// abandon settles a request whose client never got its reply: if it was
// applied, the handle it opened (if any) is released; if not, it is
// recorded as abandoned, so that a copy still on its way is refused
// rather than applied after its client gave up on it.
func (t *txn) abandon(client string, id []byte) error {
	suffix := requestSuffix(client, id)
	var rec fsmpb.RequestRecord
	ok, err := getProto(t.b, requestKey(suffix), &rec, "request record")
	if err != nil {
		return err
	}
	if ok {
		if rec.Handle != 0 {
			_, err = t.releaseOne(rec.Attr.GetInode(), rec.Handle)
		}
		return err
	}
	return t.recordRequest(suffix, &fsmpb.RequestRecord{TimeUnixNano: t.now, Abandoned: true})
}

// releaseOne drops handle h of ino, or reports it gone.
func (t *txn) releaseOne(ino, h uint64) (gone bool, err error) {
	var rec fsmpb.Handle
	ok, err := getProto(t.b, handleKey(ino, h), &rec, "handle")
	if err != nil || !ok {
		return !ok, err
	}
	return false, t.dropHandle(ino, h, rec.ClientId)
}

// dropHandle deletes a handle and, if it was an orphan's last, the orphan.
// Write phase only.
func (t *txn) dropHandle(ino, h uint64, client string) error {
	if err := t.b.Delete(handleKey(ino, h), nil); err != nil {
		return err
	}
	if err := t.b.Delete(clientHandleKey(client, ino, h), nil); err != nil {
		return err
	}
	orphan, err := exists(t.b, orphanKey(ino))
	if err != nil || !orphan {
		return err
	}
	open, err := t.hasHandles(ino)
	if err != nil || open {
		return err
	}
	n, err := t.existing(ino)
	if err != nil {
		return err
	}
	if err := t.b.Delete(orphanKey(ino), nil); err != nil {
		return err
	}
	return t.removeInode(ino, n)
}

// hasHandles reports whether inode ino is open anywhere.
func (t *txn) hasHandles(ino uint64) (bool, error) {
	return anyUnder(t.b, handlePrefix(ino))
}

// orphanOrRemove is what happens to a non-directory inode whose last link
// went: it becomes an orphan while open, else it is removed. Write phase.
func (t *txn) orphanOrRemove(ino uint64, n *fsmpb.Inode) error {
	open, err := t.hasHandles(ino)
	if err != nil {
		return err
	}
	if !open {
		return t.removeInode(ino, n)
	}
	t.touch(ino, n)
	return t.b.Set(orphanKey(ino), nil, nil)
}

// expireClient releases every handle and lock of a client.
func (t *txn) expireClient(c *fsmpb.ExpireClient) (Result, error) {
	const op = "expireclient"
	if err := checkClient(op, "client", c.ClientId); err != nil {
		return Result{}, err
	}
	p := clientPrefix(tClientHandle, c.ClientId)
	type handle struct{ ino, h uint64 }
	var hs []handle
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return Result{}, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(p)+16 {
			continue // another client's ID with this one as a prefix cannot occur: the length leads
		}
		hs = append(hs, handle{u64At(k, len(p)), u64At(k, len(p)+8)})
	}
	if err := it.Close(); err != nil {
		return Result{}, err
	}
	for _, h := range hs {
		if err := t.dropHandle(h.ino, h.h, c.ClientId); err != nil {
			return Result{}, err
		}
	}
	return Result{}, t.dropClientLocks(c.ClientId)
}

// ClientsWithState lists the client IDs that hold open handles or locks,
// so that the leader can track their leases.
func (f *FSM) ClientsWithState() ([]string, error) {
	v, err := f.view(false)
	if err != nil {
		return nil, err
	}
	defer v.close()
	var out []string
	for _, table := range []byte{tClientHandle, tClientLock} {
		p := []byte{table}
		it, err := v.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return nil, err
		}
		for ok := it.First(); ok; {
			k := it.Key()
			l, w := binary.Uvarint(k[1:])
			if w <= 0 || uint64(len(k)) < 1+uint64(w)+l {
				ok = it.Next()
				continue
			}
			client := string(k[1+w : 1+w+int(l)])
			if len(out) == 0 || out[len(out)-1] != client {
				out = append(out, client)
			}
			// Skip the rest of this client's keys.
			ok = it.SeekGE(prefixEnd(clientPrefix(table, client)))
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OpenHandles counts inode ino's open handles, and those of them that may
// write (all but those opened read-only).
func (f *FSM) OpenHandles(ino uint64) (all, writable int, err error) {
	v, err := f.view(false)
	if err != nil {
		return 0, 0, err
	}
	defer v.close()
	p := handlePrefix(ino)
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		all++
		var h fsmpb.Handle
		if err := proto.Unmarshal(it.Value(), &h); err != nil {
			_ = it.Close()
			return 0, 0, corrupt("handle", it.Key(), err)
		}
		if !h.ReadOnly {
			writable++
		}
	}
	return all, writable, it.Close()
}
