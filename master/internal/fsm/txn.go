package fsm

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

const (
	errInval    = syscall.EINVAL
	errNoEnt    = syscall.ENOENT
	errExist    = syscall.EEXIST
	errNotDir   = syscall.ENOTDIR
	errIsDir    = syscall.EISDIR
	errCanceled = syscall.ECANCELED
)

const (
	typeDir     = masterpb.FileType_FILE_TYPE_DIRECTORY
	typeRegular = masterpb.FileType_FILE_TYPE_REGULAR
	typeSymlink = masterpb.FileType_FILE_TYPE_SYMLINK
)

// txn is the state of one Apply: the batch, the meta record, and per
// command a cache of the inodes read, so that an inode seen twice (a rename
// within one directory) is one object.
//
// Every operation follows one discipline: first read and validate,
// returning an *Error before anything is written; then write, where only
// storage errors can occur (and abort the whole entry). That is what makes a
// failed command leave no trace.
type txn struct {
	b    *pebble.Batch
	meta fsmpb.Meta
	now  int64

	// floors are the scan floors of the entry (floors.go).
	floors *scanFloors

	inodes map[uint64]*fsmpb.Inode
	// dirty lists inodes to write (or delete) at flush, in first-touched
	// order so that the batch is the same on every replica.
	dirty   []uint64
	deleted map[uint64]bool
	// dirs lists the directories whose entries the command changed, in
	// first-touched order (Result.Dirs).
	dirs []uint64
}

// begin starts a command stamped now.
func (t *txn) begin(now int64) {
	t.now = now
	clear(t.inodes)
	if t.inodes == nil {
		t.inodes = make(map[uint64]*fsmpb.Inode)
		t.deleted = make(map[uint64]bool)
	}
	clear(t.deleted)
	t.dirty = t.dirty[:0]
	t.dirs = t.dirs[:0]
}

// inode returns inode ino (cached for the command), or nil if absent.
func (t *txn) inode(ino uint64) (*fsmpb.Inode, error) {
	if n, ok := t.inodes[ino]; ok {
		return n, nil
	}
	n := new(fsmpb.Inode)
	ok, err := getProto(t.b, inodeKey(ino), n, "inode")
	if err != nil {
		return nil, err
	}
	if !ok {
		n = nil
	}
	t.inodes[ino] = n
	return n, nil
}

// put marks a cached inode to be written at flush.
func (t *txn) put(ino uint64, n *fsmpb.Inode) {
	t.inodes[ino] = n
	for _, d := range t.dirty {
		if d == ino {
			return
		}
	}
	t.dirty = append(t.dirty, ino)
}

// flush writes the dirty inodes.
func (t *txn) flush() error {
	for _, ino := range t.dirty {
		if t.deleted[ino] {
			if err := t.b.Delete(inodeKey(ino), nil); err != nil {
				return err
			}
			continue
		}
		if err := setProto(t.b, inodeKey(ino), t.inodes[ino]); err != nil {
			return err
		}
	}
	t.dirty = t.dirty[:0]
	return nil
}

// touch records a change to n's attributes.
func (t *txn) touch(ino uint64, n *fsmpb.Inode) {
	n.CtimeUnixNano = t.now
	n.Version++
	t.put(ino, n)
}

// touchDir records a change to a directory's entries.
func (t *txn) touchDir(ino uint64, n *fsmpb.Inode) {
	n.MtimeUnixNano = t.now
	t.touch(ino, n)
	if !slices.Contains(t.dirs, ino) {
		t.dirs = append(t.dirs, ino)
	}
}

// dir returns directory ino for op on obj, or ENOENT/ENOTDIR.
func (t *txn) dir(op, obj string, ino uint64) (*fsmpb.Inode, error) {
	n, err := t.inode(ino)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, newErr(op, obj, errNoEnt, "no inode "+objIno(ino))
	}
	if n.Type != typeDir {
		return nil, newErr(op, obj, errNotDir, "")
	}
	return n, nil
}

// dentry looks up name in parent: the inode number and type, or 0.
func (t *txn) dentry(parent uint64, name string) (uint64, masterpb.FileType, error) {
	return getDentry(t.b, parent, name)
}

func getDentry(r reader, parent uint64, name string) (uint64, masterpb.FileType, error) {
	k := dentryKey(parent, name)
	v, c, err := r.Get(k)
	if err == pebble.ErrNotFound {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("fsm: read dentry: %w", err)
	}
	defer c.Close()
	ino, typ, err := decodeDentry(v)
	if err != nil {
		return 0, 0, corrupt("dentry", k, err)
	}
	return ino, typ, nil
}

func encodeDentry(ino uint64, typ masterpb.FileType) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 9), ino), byte(typ))
}

func decodeDentry(v []byte) (uint64, masterpb.FileType, error) {
	if len(v) != 9 {
		return 0, 0, fmt.Errorf("dentry value of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), masterpb.FileType(v[8]), nil
}

func (t *txn) setDentry(parent uint64, name string, ino uint64, typ masterpb.FileType) error {
	return t.b.Set(dentryKey(parent, name), encodeDentry(ino, typ), nil)
}

func (t *txn) delDentry(parent uint64, name string) error {
	return t.b.Delete(dentryKey(parent, name), nil)
}

// dirEmpty reports whether directory ino has no entries.
func dirEmpty(r reader, ino uint64) (bool, error) {
	found, err := anyUnder(r, dentryPrefix(ino))
	return !found, err
}

// anyUnder reports whether some key starts with prefix p.
func anyUnder(r reader, p []byte) (bool, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return false, err
	}
	found := it.First()
	if err := it.Close(); err != nil {
		return false, err
	}
	return found, nil
}

// newInode allocates an inode number; write phase only.
func (t *txn) newInode(n *fsmpb.Inode) uint64 {
	ino := t.meta.NextInode
	t.meta.NextInode++
	n.AtimeUnixNano, n.MtimeUnixNano, n.CtimeUnixNano = t.now, t.now, t.now
	n.Version = 1
	t.inodes[ino] = n
	t.put(ino, n)
	st := t.meta.Stats
	st.Inodes++
	switch n.Type {
	case typeDir:
		st.Directories++
	case typeRegular:
		st.RegularFiles++
	}
	return ino
}

// checkName validates a directory entry name.
func checkName(op, obj, name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return newErr(op, obj, errInval, "invalid name")
	case strings.ContainsAny(name, "/\x00"):
		return newErr(op, obj, errInval, "name contains '/' or NUL")
	case len(name) > MaxNameLen:
		return newErr(op, obj, syscall.ENAMETOOLONG, "")
	}
	return nil
}

// layoutWidth returns the number of shards of a valid layout, or 0 if l is
// not valid.
func layoutWidth(l *chunkpb.Layout) int {
	if l == nil {
		return 0
	}
	switch l.Kind {
	case chunkpb.Layout_KIND_STRIPED:
		if l.DataShards < 1 || l.DataShards > 64 || l.ParityShards > 64 || l.CellSize == 0 || l.Replicas != 0 {
			return 0
		}
		return int(l.DataShards + l.ParityShards)
	case chunkpb.Layout_KIND_REPLICATED:
		if l.Replicas < 1 || l.Replicas > 16 || l.DataShards != 0 || l.ParityShards != 0 {
			return 0
		}
		return int(l.Replicas)
	}
	return 0
}

// checkShards validates shard locations against a layout of width w.
func checkShards(op, obj string, shards []*masterpb.ShardLocation, w int, all bool) error {
	if all && len(shards) != w {
		return newErr(op, obj, errInval, fmt.Sprintf("%d shard locations for a layout of %d", len(shards), w))
	}
	if len(shards) > w {
		return newErr(op, obj, errInval, "more shard locations than the layout has")
	}
	seen := make([]bool, w)
	for _, s := range shards {
		if s == nil || int64(s.Index) >= int64(w) || seen[s.Index] {
			return newErr(op, obj, errInval, "bad or repeated shard index")
		}
		seen[s.Index] = true
	}
	return nil
}

// stripTokens copies shard locations without their tokens: tokens are
// minted by the leader per request, not state.
func stripTokens(shards []*masterpb.ShardLocation) []*masterpb.ShardLocation {
	out := make([]*masterpb.ShardLocation, len(shards))
	for i, s := range shards {
		out[i] = &masterpb.ShardLocation{Index: s.Index, ChunkserverId: s.ChunkserverId, Address: s.Address}
	}
	return out
}

// attrOf converts a stored inode to the wire Attr.
func attrOf(ino uint64, n *fsmpb.Inode) *masterpb.Attr {
	return &masterpb.Attr{
		Inode:         ino,
		Type:          n.Type,
		Mode:          n.Mode,
		Uid:           n.Uid,
		Gid:           n.Gid,
		Size:          n.Size,
		AtimeUnixNano: n.AtimeUnixNano,
		MtimeUnixNano: n.MtimeUnixNano,
		CtimeUnixNano: n.CtimeUnixNano,
		Nlink:         n.Nlink,
		Version:       n.Version,
		Rdev:          n.Rdev,
	}
}

func cloneLayout(l *chunkpb.Layout) *chunkpb.Layout {
	if l == nil {
		return nil
	}
	return proto.Clone(l).(*chunkpb.Layout)
}
