package fsm

import (
	"bytes"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

var (
	errDangling = errors.New("dentry names a missing inode")
	errTooDeep  = errors.New("directory tree deeper than the walk bound")
)

func (t *txn) setAttr(c *fsmpb.SetAttr) (Result, error) {
	const op = "setattr"
	obj := objIno(c.Inode)
	n, err := t.inode(c.Inode)
	if err != nil {
		return Result{}, err
	}
	if n == nil {
		return Result{}, newErr(op, obj, errNoEnt, "")
	}
	if c.Size != nil {
		switch {
		case n.Type == typeDir:
			return Result{}, newErr(op, obj, errIsDir, "")
		case n.Type != typeRegular:
			return Result{}, newErr(op, obj, errInval, "size of a "+n.Type.String())
		case *c.Size > MaxFileSize:
			return Result{}, newErr(op, obj, syscall.EFBIG, "")
		}
	}
	if c.Size != nil {
		if err := t.setSize(c.Inode, n, *c.Size); err != nil {
			return Result{}, err
		}
		// truncate(2) updates mtime whether or not the size changed; an
		// explicit mtime in the same change wins.
		n.MtimeUnixNano = t.now
	}
	applyAttrs(n, c.Mode, c.Uid, c.Gid, c.AtimeUnixNano, c.MtimeUnixNano)
	t.touch(c.Inode, n)
	return Result{Attr: attrOf(c.Inode, n)}, nil
}

// setSize changes a regular file's size; shrinking drops the bytes beyond.
// Write phase only; the caller writes n.
func (t *txn) setSize(ino uint64, n *fsmpb.Inode, size uint64) error {
	if size < n.Size {
		if err := t.trimChunks(ino, size); err != nil {
			return err
		}
		if err := t.trimInline(ino, size); err != nil {
			return err
		}
	}
	st := t.meta.Stats
	st.LogicalBytes = st.LogicalBytes - n.Size + size
	n.Size = size
	return nil
}

// trimChunks drops or shortens the chunk refs of ino at or beyond size, and
// moves slices left without refs to the garbage list.
func (t *txn) trimChunks(ino, size uint64) error {
	lower := chunkKey(ino, size/ChunkSize)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(chunkPrefix(ino))})
	if err != nil {
		return err
	}
	type update struct {
		idx uint64
		cs  *fsmpb.ChunkSlices // no refs: delete
		had int
	}
	var updates []update
	var dropped []uint64 // slice IDs, one per dropped ref, in order
	for ok := it.First(); ok; ok = it.Next() {
		key := append([]byte(nil), it.Key()...)
		var cs fsmpb.ChunkSlices
		if err := proto.Unmarshal(it.Value(), &cs); err != nil {
			_ = it.Close()
			return corrupt("chunk", key, err)
		}
		base := u64At(key, 9) * ChunkSize
		had := len(cs.Refs)
		kept := cs.Refs[:0]
		for _, r := range cs.Refs {
			start := base + uint64(r.ChunkOffset)
			switch {
			case start >= size:
				dropped = append(dropped, r.SliceId)
				continue
			case start+uint64(r.Length) > size:
				r.Length = uint32(size - start)
			}
			kept = append(kept, r)
		}
		cs.Refs = kept
		updates = append(updates, update{idx: u64At(key, 9), cs: &cs, had: had})
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, u := range updates {
		if err := t.putChunk(ino, u.idx, u.cs, u.had); err != nil {
			return err
		}
	}
	return t.unref(dropped)
}

// unref drops one ref per listed slice ID and moves slices whose refs reach
// zero to the garbage list.
func (t *txn) unref(ids []uint64) error {
	slices := make(map[uint64]*fsmpb.Slice)
	var order []uint64
	for _, id := range ids {
		s, ok := slices[id]
		if !ok {
			s = new(fsmpb.Slice)
			found, err := getProto(t.b, sliceKey(id), s, "slice")
			if err != nil {
				return err
			}
			if !found {
				return corrupt("slice", sliceKey(id), errors.New("chunk refers to a missing slice"))
			}
			slices[id] = s
			order = append(order, id)
		}
		if s.Refs == 0 {
			return corrupt("slice", sliceKey(id), errors.New("more chunk refs than counted"))
		}
		s.Refs--
	}
	for _, id := range order {
		s := slices[id]
		if s.Refs > 0 {
			if err := setProto(t.b, sliceKey(id), s); err != nil {
				return err
			}
			continue
		}
		if err := t.toGarbage(s); err != nil {
			return err
		}
	}
	return nil
}

// toGarbage moves a pending or committed slice to the garbage list.
func (t *txn) toGarbage(s *fsmpb.Slice) error {
	st := t.meta.Stats
	if s.Committed {
		st.CommittedSlices--
	} else {
		st.PendingSlices--
		if err := t.b.Delete(expiryKey(s.ExpiresUnixNano, s.Id), nil); err != nil {
			return err
		}
	}
	st.GarbageSlices++
	if err := t.b.Delete(sliceKey(s.Id), nil); err != nil {
		return err
	}
	return setProto(t.b, garbageKey(s.Id), s)
}

// removeInode deletes an inode with its xattrs and data. Write phase only.
func (t *txn) removeInode(ino uint64, n *fsmpb.Inode) error {
	if err := t.deletePrefix(xattrPrefix(ino)); err != nil {
		return err
	}
	if err := t.dropInodeLocks(ino); err != nil {
		return err
	}
	if n.Type == typeRegular {
		if err := t.trimChunks(ino, 0); err != nil {
			return err
		}
		if err := t.trimInline(ino, 0); err != nil {
			return err
		}
	}
	st := t.meta.Stats
	st.Inodes--
	switch n.Type {
	case typeDir:
		st.Directories--
	case typeRegular:
		st.RegularFiles--
		st.LogicalBytes -= n.Size
	}
	t.deleted[ino] = true
	t.put(ino, n)
	return nil
}

// deletePrefix deletes every key with prefix p, one by one: point
// tombstones keep later scans fast where a range tombstone per removed
// inode would pile up.
func (t *txn) deletePrefix(p []byte) error {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()...))
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := t.b.Delete(k, nil); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) setXattr(c *fsmpb.SetXattr) (Result, error) {
	const op = "setxattr"
	obj := objIno(c.Inode) + " " + xattrObj(c.Name)
	if err := checkXattrName(op, obj, c.Name); err != nil {
		return Result{}, err
	}
	if len(c.Value) > MaxXattrValueLen {
		return Result{}, newErr(op, obj, syscall.E2BIG, "")
	}
	n, err := t.inode(c.Inode)
	if err != nil {
		return Result{}, err
	}
	if n == nil {
		return Result{}, newErr(op, obj, errNoEnt, "")
	}
	key := xattrKey(c.Inode, c.Name)
	had, err := exists(t.b, key)
	if err != nil {
		return Result{}, err
	}
	switch c.Flag {
	case masterpb.SetXattrRequest_FLAG_ANY:
	case masterpb.SetXattrRequest_FLAG_CREATE:
		if had {
			return Result{}, newErr(op, obj, errExist, "")
		}
	case masterpb.SetXattrRequest_FLAG_REPLACE:
		if !had {
			return Result{}, newErr(op, obj, syscall.ENODATA, "")
		}
	default:
		return Result{}, newErr(op, obj, errInval, "unknown flag")
	}
	t.touch(c.Inode, n)
	return Result{}, t.b.Set(key, c.Value, nil)
}

func (t *txn) removeXattr(c *fsmpb.RemoveXattr) (Result, error) {
	const op = "removexattr"
	obj := objIno(c.Inode) + " " + xattrObj(c.Name)
	if err := checkXattrName(op, obj, c.Name); err != nil {
		return Result{}, err
	}
	n, err := t.inode(c.Inode)
	if err != nil {
		return Result{}, err
	}
	if n == nil {
		return Result{}, newErr(op, obj, errNoEnt, "")
	}
	key := xattrKey(c.Inode, c.Name)
	had, err := exists(t.b, key)
	if err != nil {
		return Result{}, err
	}
	if !had {
		return Result{}, newErr(op, obj, syscall.ENODATA, "")
	}
	t.touch(c.Inode, n)
	return Result{}, t.b.Delete(key, nil)
}

func xattrObj(name string) string { return "xattr " + strconv.Quote(name) }

func checkXattrName(op, obj, name string) error {
	switch {
	case name == "":
		return newErr(op, obj, errInval, "empty xattr name")
	case len(name) > MaxXattrNameLen:
		return newErr(op, obj, syscall.ERANGE, "xattr name too long")
	}
	return nil
}

func (t *txn) setLayout(c *fsmpb.SetLayout) (Result, error) {
	const op = "setlayout"
	obj := objIno(c.Inode)
	if c.Layout != nil && layoutWidth(c.Layout) == 0 {
		return Result{}, newErr(op, obj, errInval, "invalid layout")
	}
	n, err := t.dir(op, obj, c.Inode)
	if err != nil {
		return Result{}, err
	}
	n.Layout = cloneLayout(c.Layout)
	t.touch(c.Inode, n)
	return Result{Attr: attrOf(c.Inode, n)}, nil
}

// regular returns regular file ino for op, or ENOENT/EISDIR/EINVAL.
func (t *txn) regular(op, obj string, ino uint64) (*fsmpb.Inode, error) {
	n, err := t.inode(ino)
	if err != nil {
		return nil, err
	}
	switch {
	case n == nil:
		return nil, newErr(op, obj, errNoEnt, "no inode "+objIno(ino))
	case n.Type == typeDir:
		return nil, newErr(op, obj, errIsDir, "")
	case n.Type != typeRegular:
		return nil, newErr(op, obj, errInval, "not a regular file")
	}
	return n, nil
}

func (t *txn) allocateSlice(c *fsmpb.AllocateSlice) (Result, error) {
	const op = "allocate"
	obj := objIno(c.Inode)
	if c.Length == 0 || c.Length > MaxSliceLength {
		return Result{}, newErr(op, obj, errInval, "bad slice length")
	}
	w := layoutWidth(c.Layout)
	if w == 0 {
		return Result{}, newErr(op, obj, errInval, "invalid layout")
	}
	if err := checkShards(op, obj, c.Shards, w, true); err != nil {
		return Result{}, err
	}
	if c.ExpiresUnixNano <= t.now {
		return Result{}, newErr(op, obj, errInval, "expiry not after the command's time")
	}
	if _, err := t.regular(op, obj, c.Inode); err != nil {
		return Result{}, err
	}
	id := t.meta.NextSlice
	t.meta.NextSlice++
	s := &fsmpb.Slice{
		Id:              id,
		Inode:           c.Inode,
		Length:          c.Length,
		Layout:          cloneLayout(c.Layout),
		Shards:          stripTokens(c.Shards),
		ExpiresUnixNano: c.ExpiresUnixNano,
	}
	t.meta.Stats.PendingSlices++
	if err := setProto(t.b, sliceKey(id), s); err != nil {
		return Result{}, err
	}
	ek := expiryKey(c.ExpiresUnixNano, id)
	t.floors.expiry.lower(ek)
	if err := t.b.Set(ek, nil, nil); err != nil {
		return Result{}, err
	}
	return Result{SliceID: id}, nil
}

// pending returns pending slice id for op, or ENOENT (not allocated,
// expired or collected) / EEXIST (already committed).
func (t *txn) pending(op, obj string, id uint64) (*fsmpb.Slice, error) {
	s := new(fsmpb.Slice)
	ok, err := getProto(t.b, sliceKey(id), s, "slice")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, newErr(op, obj, errNoEnt, objSlice(id)+" not allocated, or expired")
	}
	if s.Committed {
		return nil, newErr(op, obj, errExist, objSlice(id)+" already committed")
	}
	return s, nil
}

func (t *txn) replaceShard(c *fsmpb.ReplaceShard) (Result, error) {
	const op = "replaceshard"
	obj := objSlice(c.SliceId)
	s, err := t.pending(op, obj, c.SliceId)
	if err != nil {
		return Result{}, err
	}
	if c.Shard == nil || int64(c.Shard.Index) >= int64(layoutWidth(s.Layout)) {
		return Result{}, newErr(op, obj, errInval, "bad shard index")
	}
	loc := stripTokens([]*masterpb.ShardLocation{c.Shard})[0]
	replaced := false
	for i, sh := range s.Shards {
		if sh.Index == loc.Index {
			s.Shards[i] = loc
			replaced = true
		}
	}
	if !replaced {
		s.Shards = append(s.Shards, loc)
	}
	return Result{SliceID: c.SliceId}, setProto(t.b, sliceKey(c.SliceId), s)
}

func (t *txn) commitSlice(c *fsmpb.CommitSlice) (Result, error) {
	const op = "commit"
	obj := objIno(c.Inode) + " " + objSlice(c.SliceId)
	exts, length, err := commitExtents(op, obj, c)
	if err != nil {
		return Result{}, err
	}
	s, n, err := t.pendingOf(op, obj, c.SliceId, c.Inode, length, c.Shards)
	if err != nil {
		return Result{}, err
	}
	for _, e := range exts {
		if e.FileOffset > MaxFileSize || e.FileOffset+e.Length > MaxFileSize {
			return Result{}, newErr(op, obj, syscall.EFBIG, "")
		}
	}
	if err := checkAfter(op, obj, c.Attrs); err != nil {
		return Result{}, err
	}

	// Write phase: one ref per chunk an extent covers, appended to each
	// chunk in the extents' order (later ones win) with one merge per
	// chunk.
	var end uint64
	var order []uint64
	byChunk := make(map[uint64][]*fsmpb.ChunkRef)
	refs := uint32(0)
	for _, e := range exts {
		eEnd := e.FileOffset + e.Length
		end = max(end, eEnd)
		for idx := e.FileOffset / ChunkSize; idx*ChunkSize < eEnd; idx++ {
			base := idx * ChunkSize
			from, to := max(e.FileOffset, base), min(eEnd, base+ChunkSize)
			if _, ok := byChunk[idx]; !ok {
				order = append(order, idx)
			}
			byChunk[idx] = append(byChunk[idx], &fsmpb.ChunkRef{
				SliceId:     c.SliceId,
				ChunkOffset: uint32(from - base),
				SliceOffset: e.SliceOffset + (from - e.FileOffset),
				Length:      uint32(to - from),
			})
			refs++
		}
	}
	for _, idx := range order {
		had, err := t.chunkRefCount(c.Inode, idx)
		if err != nil {
			return Result{}, err
		}
		if err := t.appendChunkRefs(c.Inode, idx, byChunk[idx], had); err != nil {
			return Result{}, err
		}
	}
	if err := t.markCommitted(s, length, refs, c.Shards); err != nil {
		return Result{}, err
	}
	if err := t.wrote(c.Inode, n, end, c.MtimeUnixNano, c.Attrs); err != nil {
		return Result{}, err
	}
	return Result{Attr: attrOf(c.Inode, n), SliceID: c.SliceId}, nil
}

// commitExtents returns where commit c places its slice's bytes and the
// slice's length: its extents, or else its first length bytes at offset.
// Check phase.
func commitExtents(op, obj string, c *fsmpb.CommitSlice) ([]*masterpb.Extent, uint64, error) {
	if len(c.Extents) == 0 {
		return []*masterpb.Extent{{FileOffset: c.Offset, Length: c.Length}}, c.Length, nil
	}
	if c.Offset != 0 || c.Length != 0 {
		return nil, 0, newErr(op, obj, errInval, "offset and length given with extents")
	}
	if len(c.Extents) > masterpb.MaxCommitExtents {
		return nil, 0, newErr(op, obj, errInval, "too many extents")
	}
	var length uint64
	for _, e := range c.Extents {
		if e.Length == 0 || e.Length > MaxSliceLength || e.SliceOffset > MaxSliceLength {
			return nil, 0, newErr(op, obj, errInval, "bad extent")
		}
		length = max(length, e.SliceOffset+e.Length)
	}
	return c.Extents, length, nil
}

// pendingOf is the check phase of committing slice id as length bytes of
// regular file ino with the acknowledged shards: the slice must be
// pending, allocated for ino and at least length long, and the shards
// valid for its layout.
func (t *txn) pendingOf(op, obj string, id, ino, length uint64, shards []*masterpb.ShardLocation) (*fsmpb.Slice, *fsmpb.Inode, error) {
	s, err := t.pending(op, obj, id)
	if err != nil {
		return nil, nil, err
	}
	if s.Inode != ino {
		return nil, nil, newErr(op, obj, errInval, "slice allocated for inode "+objIno(s.Inode))
	}
	n, err := t.regular(op, obj, ino)
	if err != nil {
		return nil, nil, err
	}
	if length == 0 || length > s.Length {
		return nil, nil, newErr(op, obj, errInval, "length 0 or beyond the allocation")
	}
	if len(shards) > 0 {
		if err := checkShards(op, obj, shards, layoutWidth(s.Layout), false); err != nil {
			return nil, nil, err
		}
	}
	return s, n, nil
}

// markCommitted turns pending slice s into a committed one of length
// bytes named by refs chunk refs, stored on shards if any are given (the
// allocated locations otherwise). Write phase only.
func (t *txn) markCommitted(s *fsmpb.Slice, length uint64, refs uint32, shards []*masterpb.ShardLocation) error {
	if err := t.b.Delete(expiryKey(s.ExpiresUnixNano, s.Id), nil); err != nil {
		return err
	}
	s.Committed = true
	s.Length = length
	s.ExpiresUnixNano = 0
	s.Refs = refs
	if len(shards) > 0 {
		s.Shards = stripTokens(shards)
	}
	if err := setProto(t.b, sliceKey(s.Id), s); err != nil {
		return err
	}
	st := t.meta.Stats
	st.PendingSlices--
	st.CommittedSlices++
	return nil
}

// wrote records a write to file ino that ends at end: the size grows to
// it, mtime becomes the writer's (0: the command's time), and then the
// attribute changes made after the write (nil: none) apply. Write phase
// only; it writes n.
func (t *txn) wrote(ino uint64, n *fsmpb.Inode, end uint64, mtime int64, after *masterpb.AttrUpdate) error {
	if end > n.Size {
		if err := t.setSize(ino, n, end); err != nil {
			return err
		}
	}
	n.MtimeUnixNano = t.now
	if mtime != 0 {
		n.MtimeUnixNano = mtime
	}
	if after != nil {
		applyAttrs(n, after.Mode, after.Uid, after.Gid, after.AtimeUnixNano, after.MtimeUnixNano)
		for _, name := range slices.Sorted(maps.Keys(after.Xattrs)) {
			if err := t.b.Set(xattrKey(ino, name), after.Xattrs[name], nil); err != nil {
				return err
			}
		}
	}
	t.touch(ino, n)
	return nil
}

// MaxUpdateXattrs bounds the extended attributes one AttrUpdate sets.
const MaxUpdateXattrs = 16

// checkAfter validates the attribute changes riding with a write (nil:
// none): the extended attributes' number, names and sizes, as setxattr
// would. Validation phase.
func checkAfter(op, obj string, after *masterpb.AttrUpdate) error {
	if after == nil {
		return nil
	}
	if len(after.Xattrs) > MaxUpdateXattrs {
		return newErr(op, obj, errInval, "too many extended attributes")
	}
	for name, v := range after.Xattrs {
		if err := checkXattrName(op, obj+" "+xattrObj(name), name); err != nil {
			return err
		}
		if len(v) > MaxXattrValueLen {
			return newErr(op, obj+" "+xattrObj(name), syscall.E2BIG, "")
		}
	}
	return nil
}

// applyAttrs sets the attributes given (nil: unchanged), as chmod, chown
// and utimes do.
func applyAttrs(n *fsmpb.Inode, mode, uid, gid *uint32, atime, mtime *int64) {
	if mode != nil {
		n.Mode = *mode & 0o7777
	}
	if uid != nil {
		n.Uid = *uid
	}
	if gid != nil {
		n.Gid = *gid
	}
	if atime != nil {
		n.AtimeUnixNano = *atime
	}
	if mtime != nil {
		n.MtimeUnixNano = *mtime
	}
}

func (t *txn) ackGarbage(c *fsmpb.AckGarbage) (Result, error) {
	var gone []uint64
	for _, id := range c.SliceIds {
		ok, err := exists(t.b, garbageKey(id))
		if err != nil {
			return Result{}, err
		}
		if ok && !containsU64(gone, id) {
			gone = append(gone, id)
		}
	}
	for _, id := range gone {
		if err := t.b.Delete(garbageKey(id), nil); err != nil {
			return Result{}, err
		}
		t.meta.Stats.GarbageSlices--
	}
	return Result{}, nil
}

func containsU64(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// expireSlices moves at most budget pending slices whose expiry is at or
// before now to the garbage list: their shards may have been written.
func (t *txn) expireSlices(now int64, budget int) error {
	fl := &t.floors.expiry
	if !fl.due(func(exp int64) bool { return exp <= now }) {
		return nil
	}
	p := []byte{tExpiry}
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: fl.start(p), UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	var ids []uint64
	var next []byte // the first key left: the new floor
	for ok := it.First(); ok; ok = it.Next() {
		if len(ids) >= budget || unsortableTime(u64At(it.Key(), 1)) > now {
			next = bytes.Clone(it.Key())
			break
		}
		ids = append(ids, u64At(it.Key(), 9))
	}
	if err := it.Close(); err != nil {
		return err
	}
	fl.known, fl.key = true, next
	for _, id := range ids {
		s := new(fsmpb.Slice)
		ok, err := getProto(t.b, sliceKey(id), s, "slice")
		if err != nil {
			return err
		}
		if !ok || s.Committed {
			return corrupt("expiry index", sliceKey(id), errors.New("no pending slice"))
		}
		if err := t.toGarbage(s); err != nil {
			return err
		}
	}
	return nil
}

// pruneRequests forgets at most budget request records older than
// RequestRetention before now.
func (t *txn) pruneRequests(now int64, budget int) error {
	if now < math.MinInt64+int64(RequestRetention) {
		return nil
	}
	cutoff := now - int64(RequestRetention)
	fl := &t.floors.reqTime
	if !fl.due(func(at int64) bool { return at < cutoff }) {
		return nil
	}
	p := []byte{tReqTime}
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: fl.start(p), UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	var keys [][]byte
	var next []byte // the first key left: the new floor
	for ok := it.First(); ok; ok = it.Next() {
		if len(keys) >= budget || len(it.Key()) < 9 || unsortableTime(u64At(it.Key(), 1)) >= cutoff {
			next = bytes.Clone(it.Key())
			break
		}
		keys = append(keys, append([]byte(nil), it.Key()...))
	}
	if err := it.Close(); err != nil {
		return err
	}
	fl.known, fl.key = true, next
	for _, k := range keys {
		if err := t.b.Delete(k, nil); err != nil {
			return err
		}
		if err := t.b.Delete(requestKey(k[9:]), nil); err != nil {
			return err
		}
	}
	return nil
}
