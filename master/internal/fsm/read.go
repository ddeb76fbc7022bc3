package fsm

import (
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// ReadDir limits.
const (
	// DefaultReadDirLimit is the page size of a ReadDir asked for limit 0.
	DefaultReadDirLimit = 1024
	// MaxReadDirLimit caps a ReadDir page.
	MaxReadDirLimit = 16384
)

// The read methods below serve the leader's linearizable reads. Each may be
// called from any goroutine, concurrently with Apply, and sees the state
// after some whole applied entry (multi-key reads use a Pebble snapshot).
// A failure with an *Error is the POSIX answer (ENOENT, ENOTDIR, …); any
// other error is a storage failure or corruption.

// view is a consistent read view; close it after use.
type view struct {
	reader
	close func() error
}

func (f *FSM) view(consistent bool) (view, error) {
	if f.needsRestore.Load() {
		return view{}, ErrNeedsRestore
	}
	if !consistent {
		// A single Get is atomic with respect to batch commits.
		return view{reader: f.db, close: func() error { return nil }}, nil
	}
	s := f.db.NewSnapshot()
	return view{reader: s, close: s.Close}, nil
}

func readInode(r reader, op, obj string, ino uint64) (*fsmpb.Inode, error) {
	n := new(fsmpb.Inode)
	ok, err := getProto(r, inodeKey(ino), n, "inode")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, newErr(op, obj, errNoEnt, "")
	}
	return n, nil
}

// GetAttr returns inode ino's attributes, or ENOENT.
func (f *FSM) GetAttr(ino uint64) (*masterpb.Attr, error) {
	v, err := f.view(false)
	if err != nil {
		return nil, err
	}
	n, err := readInode(v, "getattr", objIno(ino), ino)
	if err != nil {
		return nil, err
	}
	return attrOf(ino, n), nil
}

// LayoutPolicy returns inode ino's layout: a directory's policy, or the one
// a file inherited at creation; nil means the cluster default. ENOENT if the
// inode does not exist.
func (f *FSM) LayoutPolicy(ino uint64) (*chunkpb.Layout, error) {
	v, err := f.view(false)
	if err != nil {
		return nil, err
	}
	n, err := readInode(v, "layoutpolicy", objIno(ino), ino)
	if err != nil {
		return nil, err
	}
	return n.Layout, nil
}

// Lookup returns the attributes of entry name in directory parent: EINVAL or
// ENAMETOOLONG for a bad name, ENOENT if parent or the entry is missing,
// ENOTDIR if parent is not a directory.
func (f *FSM) Lookup(parent uint64, name string) (*masterpb.Attr, error) {
	const op = "lookup"
	obj := objName(parent, name)
	if err := checkName(op, obj, name); err != nil {
		return nil, err
	}
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	ino, err := lookup(v, op, obj, parent, name)
	if err != nil {
		return nil, err
	}
	n := new(fsmpb.Inode)
	ok, err := getProto(v, inodeKey(ino), n, "inode")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, corrupt("namespace", inodeKey(ino), errDangling)
	}
	return attrOf(ino, n), nil
}

func lookup(r reader, op, obj string, parent uint64, name string) (uint64, error) {
	ino, _, err := getDentry(r, parent, name)
	if err != nil {
		return 0, err
	}
	if ino != 0 {
		return ino, nil
	}
	// Tell a missing entry from a missing or non-directory parent.
	d, err := readInode(r, op, obj, parent)
	if err != nil {
		return 0, err
	}
	if d.Type != typeDir {
		return 0, newErr(op, obj, errNotDir, "")
	}
	return 0, newErr(op, obj, errNoEnt, "")
}

// ReadDir lists directory ino in byte order of names, starting after
// startAfter ("" for the start), at most limit entries (0 means
// DefaultReadDirLimit; at most MaxReadDirLimit). more is true if entries
// follow the last one returned: pass its name as startAfter to resume. With
// withAttrs each entry carries its Attr (readdirplus). "." and ".." are not
// listed. ENOENT or ENOTDIR if ino is not a directory.
func (f *FSM) ReadDir(ino uint64, startAfter string, limit int, withAttrs bool) (entries []*masterpb.DirEntry, more bool, err error) {
	const op = "readdir"
	obj := objIno(ino)
	if limit <= 0 {
		limit = DefaultReadDirLimit
	}
	limit = min(limit, MaxReadDirLimit)
	v, err := f.view(true)
	if err != nil {
		return nil, false, err
	}
	defer v.close()
	d, err := readInode(v, op, obj, ino)
	if err != nil {
		return nil, false, err
	}
	if d.Type != typeDir {
		return nil, false, newErr(op, obj, errNotDir, "")
	}
	p := dentryPrefix(ino)
	lower := p
	if startAfter != "" {
		lower = append(dentryKey(ino, startAfter), 0)
	}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		if len(entries) == limit {
			return entries, true, nil
		}
		child, typ, err := decodeDentry(it.Value())
		if err != nil {
			return nil, false, corrupt("dentry", it.Key(), err)
		}
		e := &masterpb.DirEntry{Name: string(it.Key()[len(p):]), Inode: child, Type: typ}
		if withAttrs {
			n := new(fsmpb.Inode)
			found, err := getProto(v, inodeKey(child), n, "inode")
			if err != nil {
				return nil, false, err
			}
			if !found {
				return nil, false, corrupt("namespace", inodeKey(child), errDangling)
			}
			e.Attr = attrOf(child, n)
		}
		entries = append(entries, e)
	}
	return entries, false, nil
}

// Readlink returns symlink ino's target: ENOENT if missing, EINVAL if it is
// not a symlink.
func (f *FSM) Readlink(ino uint64) (string, error) {
	v, err := f.view(false)
	if err != nil {
		return "", err
	}
	n, err := readInode(v, "readlink", objIno(ino), ino)
	if err != nil {
		return "", err
	}
	if n.Type != typeSymlink {
		return "", newErr("readlink", objIno(ino), errInval, "not a symlink")
	}
	return n.SymlinkTarget, nil
}

// GetXattr returns the value of xattr name of inode ino: ENOENT if the
// inode is missing, ENODATA if the attribute is.
func (f *FSM) GetXattr(ino uint64, name string) ([]byte, error) {
	const op = "getxattr"
	obj := objIno(ino) + " " + xattrObj(name)
	if err := checkXattrName(op, obj, name); err != nil {
		return nil, err
	}
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	val, c, err := v.Get(xattrKey(ino, name))
	if err == nil {
		defer c.Close()
		return append([]byte{}, val...), nil
	}
	if err != pebble.ErrNotFound {
		return nil, err
	}
	if _, err := readInode(v, op, obj, ino); err != nil {
		return nil, err
	}
	return nil, newErr(op, obj, syscall.ENODATA, "")
}

// ListXattr returns inode ino's xattr names in byte order, or ENOENT.
func (f *FSM) ListXattr(ino uint64) (names []string, err error) {
	const op = "listxattr"
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	if _, err := readInode(v, op, objIno(ino), ino); err != nil {
		return nil, err
	}
	p := xattrPrefix(ino)
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		names = append(names, string(it.Key()[len(p):]))
	}
	return names, it.Close()
}

// GetLayout returns regular file ino's attributes and the committed slice
// pieces overlapping [offset, offset+length) (length 0: to the end of the
// file). Pieces come chunk by chunk and, within a chunk, in commit order; a
// piece never crosses a chunk boundary, so newest-wins per byte within each
// chunk resolves the file's contents. inline is the file's inline bytes,
// a layer under every piece (inline.go). Bytes covered by neither are zeros
// (a hole, or beyond a write). ENOENT if missing, EISDIR for a directory,
// EINVAL for other types.
func (f *FSM) GetLayout(ino, offset, length uint64) (attr *masterpb.Attr, refs []*masterpb.SliceRef, inline []byte, err error) {
	const op = "getlayout"
	obj := objIno(ino)
	v, err := f.view(true)
	if err != nil {
		return nil, nil, nil, err
	}
	defer v.close()
	n, err := readInode(v, op, obj, ino)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case n.Type == typeDir:
		return nil, nil, nil, newErr(op, obj, errIsDir, "")
	case n.Type != typeRegular:
		return nil, nil, nil, newErr(op, obj, errInval, "not a regular file")
	}
	attr = attrOf(ino, n)
	if inline, err = readInline(v, ino); err != nil {
		return nil, nil, nil, err
	}
	end := n.Size
	if length != 0 && offset <= n.Size && length < n.Size-offset {
		end = offset + length
	}
	if offset >= end {
		return attr, nil, inline, nil
	}
	it, err := v.NewIter(&pebble.IterOptions{
		LowerBound: chunkKey(ino, offset/ChunkSize),
		UpperBound: chunkKey(ino, (end-1)/ChunkSize+1),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	slices := make(map[uint64]*fsmpb.Slice)
	for ok := it.First(); ok; ok = it.Next() {
		var cs fsmpb.ChunkSlices
		if err := proto.Unmarshal(it.Value(), &cs); err != nil {
			return nil, nil, nil, corrupt("chunk", it.Key(), err)
		}
		base := u64At(it.Key(), 9) * ChunkSize
		for _, r := range cs.Refs {
			from := base + uint64(r.ChunkOffset)
			if from >= end || from+uint64(r.Length) <= offset {
				continue
			}
			s, ok := slices[r.SliceId]
			if !ok {
				s = new(fsmpb.Slice)
				found, err := getProto(v, sliceKey(r.SliceId), s, "slice")
				if err != nil {
					return nil, nil, nil, err
				}
				if !found {
					return nil, nil, nil, corrupt("slice", sliceKey(r.SliceId), errDangling)
				}
				slices[r.SliceId] = s
			}
			refs = append(refs, &masterpb.SliceRef{
				SliceId:     r.SliceId,
				FileOffset:  from,
				SliceOffset: r.SliceOffset,
				Length:      uint64(r.Length),
				SliceLength: s.Length,
				Layout:      s.Layout,
				Shards:      s.Shards,
			})
		}
	}
	return attr, refs, inline, nil
}

// GetSlice returns a pending or committed slice (ENOENT if neither: never
// allocated, expired, or garbage).
func (f *FSM) GetSlice(id uint64) (*fsmpb.Slice, error) {
	v, err := f.view(false)
	if err != nil {
		return nil, err
	}
	s := new(fsmpb.Slice)
	ok, err := getProto(v, sliceKey(id), s, "slice")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, newErr("getslice", objSlice(id), errNoEnt, "")
	}
	return s, nil
}

// ListGarbage returns up to limit garbage slices with IDs above after, in
// ID order: slices no file refers to any more (truncated, deleted, or
// expired before commit) whose shards GC must delete and then acknowledge
// with an AckGarbage command.
func (f *FSM) ListGarbage(after uint64, limit int) (out []*fsmpb.Slice, err error) {
	if limit <= 0 {
		limit = DefaultReadDirLimit
	}
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	lower := garbageKey(after + 1)
	if after == ^uint64(0) {
		return nil, nil
	}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd([]byte{tGarbage})})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		s := new(fsmpb.Slice)
		if err := proto.Unmarshal(it.Value(), s); err != nil {
			_ = it.Close()
			return nil, corrupt("garbage slice", it.Key(), err)
		}
		out = append(out, s)
	}
	return out, it.Close()
}

// StatFS returns the namespace totals (capacity and free space come from
// the chunkserver registry, not from here).
func (f *FSM) StatFS() (*fsmpb.Stats, error) {
	v, err := f.view(false)
	if err != nil {
		return nil, err
	}
	var m fsmpb.Meta
	if _, err := getProto(v, metaKey(), &m, "meta"); err != nil {
		return nil, err
	}
	if m.Stats == nil {
		return &fsmpb.Stats{}, nil
	}
	return m.Stats, nil
}
