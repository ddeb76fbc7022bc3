package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Verify checks the state's invariants and returns an error describing the
// first problems found, or nil:
//
//   - every dentry lies in an existing directory, has a valid name and
//     names an existing inode of the type it records;
//   - a non-directory's nlink is its number of dentries; a directory's is 2
//     plus its subdirectories, it has exactly one dentry (the root none),
//     in the directory its parent field names, and reaches the root;
//   - every chunk ref names a committed slice of the same file, lies within
//     the slice, the chunk and the file size; each committed slice's refs
//     count matches; no slice is both live and garbage; every pending slice
//     has its expiry index entry and vice versa;
//   - counters are above every ID in use, and Stats match a recount;
//   - request records and their retention index match one to one.
//
// Verify reads a consistent snapshot but holds the whole namespace's
// bookkeeping in memory: it is for tests and offline checks of modest
// states, not for a production master's hot path. Safe from any goroutine.
func (f *FSM) Verify() error {
	v, err := f.view(true)
	if err != nil {
		return err
	}
	defer v.close()
	c := &checker{
		inodes:    make(map[uint64]*fsmpb.Inode),
		links:     make(map[uint64]int),
		subdirs:   make(map[uint64]uint32),
		dirParent: make(map[uint64]uint64),
		slices:    make(map[uint64]*fsmpb.Slice),
		garbage:   make(map[uint64]bool),
		refs:      make(map[uint64]uint32),
		expiry:    make(map[string]bool),
		reqs:      make(map[string]int64),
		reqTimes:  make(map[string]int64),
		handles:   make(map[uint64]int),
		handleIdx: make(map[string]bool),
		orphans:   make(map[uint64]bool),
		locks:     make(map[uint64][]*fsmpb.FileLock),
	}
	it, err := v.NewIter(nil)
	if err != nil {
		return err
	}
	var dentries, chunks, xattrs, fragments, inline []kvPair
	for ok := it.First(); ok; ok = it.Next() {
		k := append([]byte(nil), it.Key()...)
		val := append([]byte(nil), it.Value()...)
		switch k[0] {
		case tMeta:
			if len(k) != 1 || proto.Unmarshal(val, &c.meta) != nil {
				c.fail("bad meta record %q", k)
			}
		case tInode:
			n := new(fsmpb.Inode)
			if len(k) != 9 || proto.Unmarshal(val, n) != nil {
				c.fail("bad inode record %q", k)
				continue
			}
			c.inodes[u64At(k, 1)] = n
		case tDentry:
			dentries = append(dentries, kvPair{k, val})
		case tXattr:
			xattrs = append(xattrs, kvPair{k, val})
		case tChunk:
			chunks = append(chunks, kvPair{k, val})
		case tFragment:
			fragments = append(fragments, kvPair{k, val})
		case tInline:
			inline = append(inline, kvPair{k, val})
		case tSlice, tGarbage:
			s := new(fsmpb.Slice)
			if len(k) != 9 || proto.Unmarshal(val, s) != nil || s.Id != u64At(k, 1) {
				c.fail("bad slice record %q", k)
				continue
			}
			if k[0] == tSlice {
				c.slices[s.Id] = s
			} else {
				c.garbage[s.Id] = true
			}
		case tExpiry:
			c.expiry[string(k)] = true
		case tRequest:
			var rec fsmpb.RequestRecord
			if proto.Unmarshal(val, &rec) != nil {
				c.fail("bad request record %q", k)
				continue
			}
			c.reqs[string(k[1:])] = rec.TimeUnixNano
		case tReqTime:
			if len(k) < 9 {
				c.fail("bad request time key %q", k)
				continue
			}
			c.reqTimes[string(k[9:])] = unsortableTime(u64At(k, 1))
		case tMaster:
			var rec fsmpb.MasterRecord
			if proto.Unmarshal(val, &rec) != nil || rec.Id != string(k[1:]) {
				c.fail("bad master record %q", k)
			}
		case tHandle:
			var h fsmpb.Handle
			if len(k) != 17 || proto.Unmarshal(val, &h) != nil || h.ClientId == "" {
				c.fail("bad handle record %q", k)
				continue
			}
			c.handles[u64At(k, 1)]++
			c.handleIdx[string(clientHandleKey(h.ClientId, u64At(k, 1), u64At(k, 9)))] = true
			if u64At(k, 9) >= c.meta.NextHandle {
				c.fail("handle %d not below next handle %d", u64At(k, 9), c.meta.NextHandle)
			}
		case tClientHandle:
			c.clientHandles = append(c.clientHandles, string(k))
		case tOrphan:
			if len(k) != 9 {
				c.fail("bad orphan key %q", k)
				continue
			}
			c.orphans[u64At(k, 1)] = true
		case tLock:
			var fl fsmpb.FileLocks
			if len(k) != 9 || proto.Unmarshal(val, &fl) != nil || len(fl.Locks) == 0 {
				c.fail("bad or empty lock record %q", k)
				continue
			}
			c.locks[u64At(k, 1)] = fl.Locks
		case tClientLock:
			c.clientLocks = append(c.clientLocks, string(k))
		case tDrain:
			if len(k) < 2 {
				c.fail("bad drain key %q", k)
			}
		case tChunkserver:
			var rec fsmpb.ChunkserverRecord
			if proto.Unmarshal(val, &rec) != nil || rec.Id != string(k[1:]) {
				c.fail("bad chunkserver record %q", k)
			}
		case tRestore:
			c.fail("restore marker present")
		default:
			c.fail("key %q in no table", k)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	c.checkDentries(dentries)
	c.checkChunks(chunks)
	c.checkFragments(chunks, fragments)
	c.checkInline(inline)
	for _, x := range xattrs {
		if len(x.k) < 10 || c.inodes[u64At(x.k, 1)] == nil {
			c.fail("xattr %q of a missing inode", x.k)
		}
	}
	c.checkInodes()
	c.checkSlices()
	c.checkRequests()
	c.checkHandlesAndLocks()
	return c.err()
}

type checker struct {
	meta      fsmpb.Meta
	inodes    map[uint64]*fsmpb.Inode
	links     map[uint64]int    // dentries naming each inode
	subdirs   map[uint64]uint32 // subdirectories of each directory
	dirParent map[uint64]uint64 // the directory holding each directory's dentry
	slices    map[uint64]*fsmpb.Slice
	garbage   map[uint64]bool
	refs      map[uint64]uint32 // chunk refs naming each slice
	expiry    map[string]bool
	reqs      map[string]int64
	reqTimes  map[string]int64
	// handles counts each inode's open handles; handleIdx holds the client
	// index keys the handles imply, clientHandles the ones stored.
	handles       map[uint64]int
	handleIdx     map[string]bool
	clientHandles []string
	orphans       map[uint64]bool
	locks         map[uint64][]*fsmpb.FileLock
	clientLocks   []string
	logical       uint64
	problems      []string
}

func (c *checker) fail(format string, args ...any) {
	if len(c.problems) < 20 {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	return errors.New("fsm: invariants violated:\n  " + strings.Join(c.problems, "\n  "))
}

type kvPair struct{ k, v []byte }

func (c *checker) checkDentries(ds []kvPair) {
	for _, d := range ds {
		if len(d.k) < 10 {
			c.fail("short dentry key %q", d.k)
			continue
		}
		parent, name := u64At(d.k, 1), string(d.k[9:])
		if err := checkName("verify", "", name); err != nil {
			c.fail("dentry %s: bad name", objName(parent, name))
		}
		if p := c.inodes[parent]; p == nil || p.Type != typeDir {
			c.fail("dentry %s in a missing or non-directory inode", objName(parent, name))
		}
		ino, typ, err := decodeDentry(d.v)
		if err != nil {
			c.fail("dentry %s: %v", objName(parent, name), err)
			continue
		}
		n := c.inodes[ino]
		switch {
		case n == nil:
			c.fail("dentry %s names missing inode %d", objName(parent, name), ino)
			continue
		case n.Type != typ:
			c.fail("dentry %s records type %v, inode %d is %v", objName(parent, name), typ, ino, n.Type)
		}
		c.links[ino]++
		if n.Type == typeDir {
			c.subdirs[parent]++
			c.dirParent[ino] = parent
		}
	}
}

func (c *checker) checkChunks(chunks []kvPair) {
	for _, ch := range chunks {
		if len(ch.k) != 17 {
			c.fail("bad chunk key %q", ch.k)
			continue
		}
		ino, idx := u64At(ch.k, 1), u64At(ch.k, 9)
		n := c.inodes[ino]
		if n == nil || n.Type != typeRegular {
			c.fail("chunk %d/%d of a missing or non-regular inode", ino, idx)
			continue
		}
		var cs fsmpb.ChunkSlices
		if proto.Unmarshal(ch.v, &cs) != nil || len(cs.Refs) == 0 {
			c.fail("chunk %d/%d does not decode or is empty", ino, idx)
			continue
		}
		for _, r := range cs.Refs {
			c.refs[r.SliceId]++
			s := c.slices[r.SliceId]
			end := idx*ChunkSize + uint64(r.ChunkOffset) + uint64(r.Length)
			switch {
			case s == nil || !s.Committed:
				c.fail("chunk %d/%d refers to slice %d, not committed", ino, idx, r.SliceId)
			case s.Inode != ino:
				c.fail("chunk %d/%d refers to slice %d of inode %d", ino, idx, r.SliceId, s.Inode)
			case r.Length == 0 || r.SliceOffset+uint64(r.Length) > s.Length:
				c.fail("chunk %d/%d ref to slice %d outside the slice", ino, idx, r.SliceId)
			case uint64(r.ChunkOffset)+uint64(r.Length) > ChunkSize:
				c.fail("chunk %d/%d ref to slice %d crosses the chunk end", ino, idx, r.SliceId)
			case end > n.Size:
				c.fail("chunk %d/%d ref to slice %d ends at %d beyond size %d", ino, idx, r.SliceId, end, n.Size)
			}
		}
	}
}

func (c *checker) checkInodes() {
	var st fsmpb.Stats
	for ino, n := range c.inodes {
		st.Inodes++
		if ino == 0 || ino >= c.meta.NextInode {
			c.fail("inode %d outside [1, next inode %d)", ino, c.meta.NextInode)
		}
		if n.Type < typeRegular || n.Type > masterpb.FileType_FILE_TYPE_BLOCK_DEVICE {
			c.fail("inode %d has type %v", ino, n.Type)
		}
		if (n.Type == typeSymlink) != (n.SymlinkTarget != "") || (n.Type == typeSymlink && n.Size != uint64(len(n.SymlinkTarget))) {
			c.fail("inode %d: symlink target and type or size disagree", ino)
		}
		switch n.Type {
		case typeDir:
			st.Directories++
			if want := 2 + c.subdirs[ino]; n.Nlink != want {
				c.fail("directory %d has nlink %d, want %d", ino, n.Nlink, want)
			}
			want := 1
			if ino == RootInode {
				want = 0
			}
			if c.links[ino] != want {
				c.fail("directory %d has %d dentries", ino, c.links[ino])
			}
			if ino != RootInode && c.dirParent[ino] != n.Parent {
				c.fail("directory %d says parent %d, its dentry is in %d", ino, n.Parent, c.dirParent[ino])
			}
			c.checkReachable(ino)
		default:
			if n.Type == typeRegular {
				st.RegularFiles++
				st.LogicalBytes += n.Size
			} else if n.Size != 0 && n.Type != typeSymlink {
				c.fail("inode %d of type %v has size %d", ino, n.Type, n.Size)
			}
			if int(n.Nlink) != c.links[ino] || (n.Nlink == 0 && !c.orphans[ino]) {
				c.fail("inode %d has nlink %d and %d dentries", ino, n.Nlink, c.links[ino])
			}
		}
	}
	if r := c.inodes[RootInode]; r == nil || r.Type != typeDir {
		c.fail("no root directory")
	}
	for _, s := range c.slices {
		if s.Committed {
			st.CommittedSlices++
		} else {
			st.PendingSlices++
		}
	}
	st.GarbageSlices = uint64(len(c.garbage))
	if got := c.meta.Stats; got == nil || !proto.Equal(got, &st) {
		c.fail("stats %v, recount %v", got, &st)
	}
}

// checkReachable walks from directory ino up to the root.
func (c *checker) checkReachable(ino uint64) {
	d := ino
	for i := 0; i <= len(c.inodes); i++ {
		if d == RootInode {
			return
		}
		n := c.inodes[d]
		if n == nil {
			break
		}
		d = n.Parent
	}
	c.fail("directory %d does not reach the root", ino)
}

func (c *checker) checkSlices() {
	for id, s := range c.slices {
		if id == 0 || id >= c.meta.NextSlice {
			c.fail("slice %d outside [1, next slice %d)", id, c.meta.NextSlice)
		}
		if c.garbage[id] {
			c.fail("slice %d is both live and garbage", id)
		}
		if n := c.inodes[s.Inode]; s.Committed && (n == nil || n.Type != typeRegular) {
			c.fail("committed slice %d of missing inode %d", id, s.Inode)
		}
		if layoutWidth(s.Layout) == 0 {
			c.fail("slice %d has an invalid layout", id)
		}
		if s.Committed {
			if s.Refs == 0 || s.Refs != c.refs[id] {
				c.fail("slice %d counts %d refs, chunks hold %d", id, s.Refs, c.refs[id])
			}
			continue
		}
		if s.Refs != 0 || c.refs[id] != 0 {
			c.fail("pending slice %d has refs", id)
		}
		k := string(expiryKey(s.ExpiresUnixNano, id))
		if !c.expiry[k] {
			c.fail("pending slice %d has no expiry entry", id)
		}
		delete(c.expiry, k)
	}
	for k := range c.expiry {
		c.fail("expiry entry %q for no pending slice", k)
	}
	for id := range c.garbage {
		if id == 0 || id >= c.meta.NextSlice {
			c.fail("garbage slice %d outside [1, next slice %d)", id, c.meta.NextSlice)
		}
	}
}

func (c *checker) checkRequests() {
	for k, t := range c.reqs {
		if tt, ok := c.reqTimes[k]; !ok || tt != t {
			c.fail("request %q has no matching retention entry", k)
		}
		if _, n := binary.Uvarint([]byte(k)); n <= 0 {
			c.fail("request key %q does not decode", k)
		}
	}
	for k := range c.reqTimes {
		if _, ok := c.reqs[k]; !ok {
			c.fail("retention entry %q for no request", k)
		}
	}
}

// checkHandlesAndLocks checks open handles, orphans and locks: every
// orphan is an unlinked inode still open, every handle and lock belongs to
// an existing inode, and the per-client indexes match the records.
func (c *checker) checkHandlesAndLocks() {
	for ino := range c.orphans {
		n := c.inodes[ino]
		switch {
		case n == nil:
			c.fail("orphan %d has no inode", ino)
		case n.Nlink != 0 || c.links[ino] != 0:
			c.fail("orphan %d still has links", ino)
		case c.handles[ino] == 0:
			c.fail("orphan %d is not open", ino)
		}
	}
	for ino := range c.handles {
		if c.inodes[ino] == nil {
			c.fail("handle of missing inode %d", ino)
		}
	}
	for _, k := range c.clientHandles {
		if !c.handleIdx[k] {
			c.fail("client handle index %q for no handle", k)
		}
		delete(c.handleIdx, k)
	}
	for k := range c.handleIdx {
		c.fail("handle without client index %q", k)
	}
	want := make(map[string]bool)
	for ino, ls := range c.locks {
		if c.inodes[ino] == nil {
			c.fail("locks of missing inode %d", ino)
		}
		for i, l := range ls {
			if l.Start > l.End || l.ClientId == "" {
				c.fail("inode %d has a bad lock %v", ino, l)
			}
			want[string(clientLockKey(l.ClientId, ino))] = true
			for _, o := range ls[i+1:] {
				if LockConflict([]*fsmpb.FileLock{l}, o) != nil {
					c.fail("inode %d holds conflicting locks %v and %v", ino, l, o)
				}
			}
		}
	}
	for _, k := range c.clientLocks {
		if !want[k] {
			c.fail("client lock index %q for no lock", k)
		}
		delete(want, k)
	}
	for k := range want {
		c.fail("lock without client index %q", k)
	}
}
