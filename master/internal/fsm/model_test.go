package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// The model is a plain in-memory file system written independently of the
// Pebble code: Go maps, no keys, no encoding. The random test applies the
// same operations to both and compares every result and the final tree.

type mInode struct {
	typ    masterpb.FileType
	mode   uint32
	nlink  uint32
	size   uint64
	parent uint64            // directories
	kids   map[string]uint64 // directories
	target string
	xattrs map[string]string
	writes []mWrite // regular files, in commit order
	inline []byte   // regular files: the inline layer
}

// mWrite: bytes [off, off+n) of the file are bytes [off-base, …) of slice
// id; truncation only shortens n, so the slice offset at x is x-base.
type mWrite struct{ off, n, base, id uint64 }

type model struct {
	inodes    map[uint64]*mInode
	nextIno   uint64
	nextSlice uint64
}

func newModel() *model {
	return &model{
		inodes:    map[uint64]*mInode{RootInode: {typ: typeDir, mode: 0o755, nlink: 2, parent: RootInode, kids: map[string]uint64{}}},
		nextIno:   2,
		nextSlice: 1,
	}
}

func nameErr(name string) syscall.Errno {
	switch {
	case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00"):
		return syscall.EINVAL
	case len(name) > MaxNameLen:
		return syscall.ENAMETOOLONG
	}
	return 0
}

func (m *model) dirErr(ino uint64) syscall.Errno {
	n := m.inodes[ino]
	switch {
	case n == nil:
		return syscall.ENOENT
	case n.typ != typeDir:
		return syscall.ENOTDIR
	}
	return 0
}

func (m *model) add(parent uint64, name string, n *mInode) uint64 {
	ino := m.nextIno
	m.nextIno++
	m.inodes[ino] = n
	p := m.inodes[parent]
	p.kids[name] = ino
	if n.typ == typeDir {
		p.nlink++
		n.parent = parent
	}
	return ino
}

func (m *model) mkdir(parent uint64, name string) (uint64, syscall.Errno) {
	if e := nameErr(name); e != 0 {
		return 0, e
	}
	if e := m.dirErr(parent); e != 0 {
		return 0, e
	}
	if _, ok := m.inodes[parent].kids[name]; ok {
		return 0, syscall.EEXIST
	}
	return m.add(parent, name, &mInode{typ: typeDir, mode: 0o755, nlink: 2, kids: map[string]uint64{}}), 0
}

func (m *model) create(parent uint64, name string, excl, trunc bool) (uint64, syscall.Errno) {
	if e := nameErr(name); e != 0 {
		return 0, e
	}
	if e := m.dirErr(parent); e != 0 {
		return 0, e
	}
	if ino, ok := m.inodes[parent].kids[name]; ok {
		n := m.inodes[ino]
		switch {
		case excl:
			return 0, syscall.EEXIST
		case n.typ == typeDir:
			return 0, syscall.EISDIR
		case trunc && n.typ == typeRegular:
			m.truncate(n, 0)
		}
		return ino, 0
	}
	return m.add(parent, name, &mInode{typ: typeRegular, mode: 0o644, nlink: 1}), 0
}

func (m *model) mknod(parent uint64, name string, typ masterpb.FileType, target string) (uint64, syscall.Errno) {
	if e := nameErr(name); e != 0 {
		return 0, e
	}
	if e := m.dirErr(parent); e != 0 {
		return 0, e
	}
	if _, ok := m.inodes[parent].kids[name]; ok {
		return 0, syscall.EEXIST
	}
	n := &mInode{typ: typ, mode: 0o644, nlink: 1, target: target}
	if typ == typeSymlink {
		n.mode, n.size = 0o777, uint64(len(target))
	}
	return m.add(parent, name, n), 0
}

func (m *model) link(ino, parent uint64, name string) syscall.Errno {
	if e := nameErr(name); e != 0 {
		return e
	}
	n := m.inodes[ino]
	switch {
	case n == nil:
		return syscall.ENOENT
	case n.typ == typeDir:
		return syscall.EPERM
	}
	if e := m.dirErr(parent); e != 0 {
		return e
	}
	if _, ok := m.inodes[parent].kids[name]; ok {
		return syscall.EEXIST
	}
	m.inodes[parent].kids[name] = ino
	n.nlink++
	return 0
}

func (m *model) drop(ino uint64) {
	n := m.inodes[ino]
	if n.typ == typeDir {
		delete(m.inodes, ino)
		return
	}
	n.nlink--
	if n.nlink == 0 {
		delete(m.inodes, ino)
	}
}

func (m *model) unlink(parent uint64, name string) syscall.Errno {
	if e := nameErr(name); e != 0 {
		return e
	}
	if e := m.dirErr(parent); e != 0 {
		return e
	}
	p := m.inodes[parent]
	ino, ok := p.kids[name]
	if !ok {
		return syscall.ENOENT
	}
	if m.inodes[ino].typ == typeDir {
		return syscall.EISDIR
	}
	delete(p.kids, name)
	m.drop(ino)
	return 0
}

func (m *model) rmdir(parent uint64, name string) syscall.Errno {
	if e := nameErr(name); e != 0 {
		return e
	}
	if e := m.dirErr(parent); e != 0 {
		return e
	}
	p := m.inodes[parent]
	ino, ok := p.kids[name]
	switch {
	case !ok:
		return syscall.ENOENT
	case m.inodes[ino].typ != typeDir:
		return syscall.ENOTDIR
	case len(m.inodes[ino].kids) > 0:
		return syscall.ENOTEMPTY
	}
	delete(p.kids, name)
	p.nlink--
	m.drop(ino)
	return 0
}

// within reports whether directory d is a or below it.
func (m *model) within(d, a uint64) bool {
	for {
		if d == a {
			return true
		}
		if d == RootInode {
			return false
		}
		d = m.inodes[d].parent
	}
}

func (m *model) rename(op uint64, on string, np uint64, nn string, mode masterpb.RenameRequest_Mode) syscall.Errno {
	if e := nameErr(on); e != 0 {
		return e
	}
	if e := nameErr(nn); e != 0 {
		return e
	}
	if e := m.dirErr(op); e != 0 {
		return e
	}
	if e := m.dirErr(np); e != 0 {
		return e
	}
	odir, ndir := m.inodes[op], m.inodes[np]
	s, ok := odir.kids[on]
	if !ok {
		return syscall.ENOENT
	}
	d, dok := ndir.kids[nn]
	exchange := mode == masterpb.RenameRequest_MODE_EXCHANGE
	switch {
	case exchange && !dok:
		return syscall.ENOENT
	case mode == masterpb.RenameRequest_MODE_NOREPLACE && dok:
		return syscall.EEXIST
	}
	sn := m.inodes[s]
	if sn.typ == typeDir && m.within(np, s) {
		return syscall.EINVAL
	}
	if exchange && m.inodes[d].typ == typeDir && m.within(op, d) {
		return syscall.EINVAL
	}
	if dok && s == d {
		return 0
	}
	if exchange {
		dn := m.inodes[d]
		odir.kids[on], ndir.kids[nn] = d, s
		if op != np {
			if sn.typ == typeDir {
				sn.parent = np
				odir.nlink--
				ndir.nlink++
			}
			if dn.typ == typeDir {
				dn.parent = op
				ndir.nlink--
				odir.nlink++
			}
		}
		return 0
	}
	if dok {
		dn := m.inodes[d]
		switch {
		case sn.typ == typeDir && dn.typ != typeDir:
			return syscall.ENOTDIR
		case sn.typ != typeDir && dn.typ == typeDir:
			return syscall.EISDIR
		case dn.typ == typeDir && len(dn.kids) > 0:
			return syscall.ENOTEMPTY
		}
		if dn.typ == typeDir {
			ndir.nlink--
		}
		m.drop(d)
	}
	delete(odir.kids, on)
	ndir.kids[nn] = s
	if sn.typ == typeDir && op != np {
		sn.parent = np
		odir.nlink--
		ndir.nlink++
	}
	return 0
}

func (m *model) truncate(n *mInode, size uint64) {
	if size < n.size {
		kept := n.writes[:0]
		for _, w := range n.writes {
			if w.off >= size {
				continue
			}
			w.n = min(w.n, size-w.off)
			kept = append(kept, w)
		}
		n.writes = kept
		if uint64(len(n.inline)) > size {
			n.inline = n.inline[:size]
		}
	}
	n.size = size
}

func (m *model) setSize(ino, size uint64) syscall.Errno {
	n := m.inodes[ino]
	switch {
	case n == nil:
		return syscall.ENOENT
	case n.typ == typeDir:
		return syscall.EISDIR
	case n.typ != typeRegular:
		return syscall.EINVAL
	}
	m.truncate(n, size)
	return 0
}

// writeInline writes data into the file's inline layer, which only a
// file without slices may have grow.
func (m *model) writeInline(ino, off uint64, data []byte) syscall.Errno {
	f := m.inodes[ino]
	end := off + uint64(len(data))
	switch {
	case f == nil:
		return syscall.ENOENT
	case f.typ == typeDir:
		return syscall.EISDIR
	case f.typ != typeRegular:
		return syscall.EINVAL
	case len(data) == 0:
		return syscall.EINVAL
	case end > InlineMax:
		return syscall.E2BIG
	case len(f.writes) > 0:
		return syscall.ENOTSUP
	}
	if uint64(len(f.inline)) < end {
		f.inline = append(f.inline, make([]byte, end-uint64(len(f.inline)))...)
	}
	copy(f.inline[off:], data)
	f.size = max(f.size, end)
	return 0
}

// write is allocate + commit; it returns the slice ID the allocation gets.
func (m *model) write(ino, off, n uint64) (uint64, syscall.Errno) {
	f := m.inodes[ino]
	switch {
	case f == nil:
		return 0, syscall.ENOENT
	case f.typ == typeDir:
		return 0, syscall.EISDIR
	case f.typ != typeRegular:
		return 0, syscall.EINVAL
	}
	id := m.nextSlice
	m.nextSlice++
	f.writes = append(f.writes, mWrite{off: off, n: n, base: off, id: id})
	f.size = max(f.size, off+n)
	return id, 0
}

// writePacked is allocate + commit of one slice placed by extents, later
// ones over earlier ones; it returns the slice ID.
func (m *model) writePacked(ino uint64, exts []*masterpb.Extent) (uint64, syscall.Errno) {
	id, e := m.write(ino, 0, 0)
	if e != 0 {
		return 0, e
	}
	f := m.inodes[ino]
	f.writes = f.writes[:len(f.writes)-1]
	for _, x := range exts {
		// base may wrap: x - base is the slice offset all the same.
		f.writes = append(f.writes, mWrite{off: x.FileOffset, n: x.Length, base: x.FileOffset - x.SliceOffset, id: id})
		f.size = max(f.size, x.FileOffset+x.Length)
	}
	return id, 0
}

func (m *model) setXattr(ino uint64, name, value string, flag masterpb.SetXattrRequest_Flag) syscall.Errno {
	n := m.inodes[ino]
	if n == nil {
		return syscall.ENOENT
	}
	_, had := n.xattrs[name]
	switch {
	case flag == masterpb.SetXattrRequest_FLAG_CREATE && had:
		return syscall.EEXIST
	case flag == masterpb.SetXattrRequest_FLAG_REPLACE && !had:
		return syscall.ENODATA
	}
	if n.xattrs == nil {
		n.xattrs = map[string]string{}
	}
	n.xattrs[name] = value
	return 0
}

func (m *model) removeXattr(ino uint64, name string) syscall.Errno {
	n := m.inodes[ino]
	if n == nil {
		return syscall.ENOENT
	}
	if _, had := n.xattrs[name]; !had {
		return syscall.ENODATA
	}
	delete(n.xattrs, name)
	return 0
}

// gen makes random operations, mostly valid, against the model's tree.
type gen struct {
	r *rand.Rand
	m *model
	d *driver
}

func (g *gen) name() string {
	switch g.r.IntN(40) {
	case 0:
		return ""
	case 1:
		return ".."
	case 2:
		return "x/y"
	case 3:
		return strings.Repeat("n", 256)
	}
	return string(rune('a' + g.r.IntN(5)))
}

// entry mostly names an existing entry of directory p.
func (g *gen) entry(p uint64) string {
	if n := g.m.inodes[p]; n != nil && len(n.kids) > 0 && g.r.IntN(3) > 0 {
		var names []string
		for k := range n.kids {
			names = append(names, k)
		}
		slices.Sort(names)
		return names[g.r.IntN(len(names))]
	}
	return g.name()
}

// file mostly picks a regular file.
func (g *gen) file() uint64 {
	var fs []uint64
	for ino, n := range g.m.inodes {
		if n.typ == typeRegular {
			fs = append(fs, ino)
		}
	}
	if len(fs) == 0 || g.r.IntN(4) == 0 {
		return g.ino()
	}
	slices.Sort(fs)
	return fs[g.r.IntN(len(fs))]
}

func (g *gen) inodes(dirs bool) []uint64 {
	var out []uint64
	for ino, n := range g.m.inodes {
		if !dirs || n.typ == typeDir {
			out = append(out, ino)
		}
	}
	slices.Sort(out)
	return out
}

// dir mostly picks a directory, sometimes any inode or a missing one.
func (g *gen) dir() uint64 {
	switch g.r.IntN(20) {
	case 0:
		return g.m.nextIno + 3
	case 1, 2:
		return g.ino()
	}
	ds := g.inodes(true)
	return ds[g.r.IntN(len(ds))]
}

func (g *gen) ino() uint64 {
	if g.r.IntN(30) == 0 {
		return g.m.nextIno + 7
	}
	all := g.inodes(false)
	return all[g.r.IntN(len(all))]
}

// offset picks file offsets around chunk boundaries.
func (g *gen) offset() uint64 {
	x := uint64(g.r.IntN(4)) * ChunkSize
	d := uint64(g.r.IntN(1 << 20))
	switch g.r.IntN(3) {
	case 0:
		return x + d
	case 1:
		if x >= d {
			return x - d
		}
		return x
	}
	return x + uint64(g.r.IntN(ChunkSize))
}

// step is one generated operation: its commands and the model's answer.
type step struct {
	desc  string
	cmds  []*fsmpb.Command
	errno syscall.Errno
	ino   uint64 // expected inode in the result, 0 if none
	// want is the expected inode's state right after the step.
	want mInode
}

func (g *gen) next() step {
	s := g.step()
	if s.ino != 0 {
		n := g.m.inodes[s.ino]
		s.want = mInode{typ: n.typ, nlink: n.nlink, size: n.size}
	}
	return s
}

func (g *gen) step() step {
	m := g.m
	switch k := g.r.IntN(100); {
	case k < 10:
		p, n := g.dir(), g.name()
		ino, e := m.mkdir(p, n)
		return step{desc: fmt.Sprintf("mkdir %d/%q", p, n), cmds: []*fsmpb.Command{cmd(&fsmpb.Mkdir{Parent: p, Name: n, Mode: 0o755})}, errno: e, ino: ino}
	case k < 30:
		p, n := g.dir(), g.name()
		excl, trunc := g.r.IntN(3) == 0, g.r.IntN(3) == 0
		ino, e := m.create(p, n, excl, trunc)
		return step{desc: fmt.Sprintf("create %d/%q excl=%v trunc=%v", p, n, excl, trunc), cmds: []*fsmpb.Command{cmd(&fsmpb.Create{Parent: p, Name: n, Mode: 0o644, Exclusive: excl, Truncate: trunc})}, errno: e, ino: ino}
	case k < 33:
		p, n := g.dir(), g.name()
		ino, e := m.mknod(p, n, masterpb.FileType_FILE_TYPE_FIFO, "")
		return step{desc: fmt.Sprintf("mknod %d/%q", p, n), cmds: []*fsmpb.Command{cmd(&fsmpb.Mknod{Parent: p, Name: n, Type: masterpb.FileType_FILE_TYPE_FIFO, Mode: 0o644})}, errno: e, ino: ino}
	case k < 36:
		p, n := g.dir(), g.name()
		ino, e := m.mknod(p, n, typeSymlink, "target-"+n)
		return step{desc: fmt.Sprintf("symlink %d/%q", p, n), cmds: []*fsmpb.Command{cmd(&fsmpb.Symlink{Parent: p, Name: n, Target: "target-" + n})}, errno: e, ino: ino}
	case k < 42:
		ino, p, n := g.file(), g.dir(), g.name()
		e := m.link(ino, p, n)
		exp := ino
		if e != 0 {
			exp = 0
		}
		return step{desc: fmt.Sprintf("link %d %d/%q", ino, p, n), cmds: []*fsmpb.Command{cmd(&fsmpb.Link{Inode: ino, NewParent: p, NewName: n})}, errno: e, ino: exp}
	case k < 52:
		p := g.dir()
		n := g.entry(p)
		e := m.unlink(p, n)
		return step{desc: fmt.Sprintf("unlink %d/%q", p, n), cmds: []*fsmpb.Command{cmd(&fsmpb.Unlink{Parent: p, Name: n})}, errno: e, ino: 0}
	case k < 58:
		p := g.dir()
		n := g.entry(p)
		e := m.rmdir(p, n)
		return step{desc: fmt.Sprintf("rmdir %d/%q", p, n), cmds: []*fsmpb.Command{cmd(&fsmpb.Rmdir{Parent: p, Name: n})}, errno: e, ino: 0}
	case k < 72:
		op, np := g.dir(), g.dir()
		on, nn := g.entry(op), g.entry(np)
		mode := masterpb.RenameRequest_Mode(g.r.IntN(3))
		e := m.rename(op, on, np, nn, mode)
		return step{desc: fmt.Sprintf("rename %d/%q %d/%q %v", op, on, np, nn, mode), cmds: []*fsmpb.Command{cmd(&fsmpb.Rename{OldParent: op, OldName: on, NewParent: np, NewName: nn, Mode: mode})}, errno: e, ino: 0}
	case k < 80:
		ino := g.file()
		size := g.offset()
		if g.r.IntN(4) == 0 {
			size = 0
		}
		e := m.setSize(ino, size)
		exp := ino
		if e != 0 {
			exp = 0
		}
		return step{desc: fmt.Sprintf("truncate %d %d", ino, size), cmds: []*fsmpb.Command{cmd(&fsmpb.SetAttr{Inode: ino, Size: &size})}, errno: e, ino: exp}
	case k < 84:
		ino := g.file()
		off := uint64(g.r.IntN(InlineMax))
		data := make([]byte, g.r.IntN(4096))
		for i := range data {
			data[i] = byte(g.r.IntN(256))
		}
		if g.r.IntN(10) == 0 {
			data = make([]byte, InlineMax-int(off)+g.r.IntN(2)) // at or just past the limit
		}
		e := m.writeInline(ino, off, data)
		exp := ino
		if e != 0 {
			exp = 0
		}
		return step{desc: fmt.Sprintf("writeinline %d [%d,+%d)", ino, off, len(data)), cmds: []*fsmpb.Command{cmd(&fsmpb.WriteInline{Inode: ino, Offset: off, Data: data})}, errno: e, ino: exp}
	case k < 88:
		ino := g.file()
		var exts []*masterpb.Extent
		var n uint64
		for range 1 + g.r.IntN(5) {
			l := 1 + uint64(g.r.IntN(ChunkSize/2))
			exts = append(exts, &masterpb.Extent{FileOffset: g.offset(), SliceOffset: n, Length: l})
			n += l
		}
		id, e := m.writePacked(ino, exts)
		if e != 0 {
			id = m.nextSlice
		}
		alloc := allocate(ino, n, g.d.now)
		commit := cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: id, Extents: exts})
		exp := ino
		if e != 0 {
			exp = 0
		}
		return step{desc: fmt.Sprintf("packed write %d, %d extents, slice %d", ino, len(exts), id), cmds: []*fsmpb.Command{alloc, commit}, errno: e, ino: exp}
	case k < 94:
		ino := g.file()
		off := g.offset()
		n := 1 + uint64(g.r.IntN(3*ChunkSize/2))
		id, e := m.write(ino, off, n)
		if e != 0 {
			id = m.nextSlice // what the FSM would have handed out; it does not
		}
		alloc := allocate(ino, n, g.d.now)
		commit := cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: id, Offset: off, Length: n})
		exp := ino
		if e != 0 {
			exp = 0
		}
		return step{desc: fmt.Sprintf("write %d [%d,+%d) slice %d", ino, off, n, id), cmds: []*fsmpb.Command{alloc, commit}, errno: e, ino: exp}
	case k < 98:
		ino, n := g.ino(), "user."+g.name()[:0]+string(rune('a'+g.r.IntN(3)))
		flag := masterpb.SetXattrRequest_Flag(g.r.IntN(3))
		v := fmt.Sprint(g.r.IntN(100))
		e := m.setXattr(ino, n, v, flag)
		return step{desc: fmt.Sprintf("setxattr %d %q %v", ino, n, flag), cmds: []*fsmpb.Command{cmd(&fsmpb.SetXattr{Inode: ino, Name: n, Value: []byte(v), Flag: flag})}, errno: e, ino: 0}
	default:
		ino, n := g.ino(), "user."+string(rune('a'+g.r.IntN(3)))
		e := m.removeXattr(ino, n)
		return step{desc: fmt.Sprintf("removexattr %d %q", ino, n), cmds: []*fsmpb.Command{cmd(&fsmpb.RemoveXattr{Inode: ino, Name: n})}, errno: e, ino: 0}
	}
}

// TestRandomAgainstModel applies thousands of random operations to the FSM
// and to the model, in entries of one or several commands, and compares
// every result, the invariants after every entry, that failed commands
// change nothing, and the final trees. The same log replayed into a second
// FSM must give byte-identical Pebble contents.
func TestRandomAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			ops := 3000
			if testing.Short() {
				ops = 300
			}
			runModel(t, seed, ops)
		})
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	outcomes := map[string]int{}
	defer func() { t.Logf("outcomes: %v", outcomes) }()
	d := newDriver(t, true)
	g := &gen{r: rand.New(rand.NewPCG(seed, 0)), m: newModel(), d: d}
	for i := 0; i < ops; {
		// An entry of one step (checked for no side effects on failure)
		// or of several.
		n := 1
		if g.r.IntN(2) == 0 {
			n = 1 + g.r.IntN(6)
		}
		var steps []step
		var cmds []*fsmpb.Command
		for j := 0; j < n; j++ {
			s := g.next()
			for _, c := range s.cmds {
				c.NowUnixNano = d.now
			}
			steps = append(steps, s)
			cmds = append(cmds, s.cmds...)
		}
		var before [32]byte
		if n == 1 {
			before = digest(t, d.f)
		}
		res := d.entry(cmds...)
		k := 0
		for _, s := range steps {
			r := res[k+len(s.cmds)-1]
			if len(s.cmds) == 2 && res[k].Err != nil {
				r = res[k] // the allocation failed; the commit then fails too
			}
			k += len(s.cmds)
			outcomes[strings.Fields(s.desc)[0]+":"+errnoName(s.errno)]++
			if got := errno(r.Err); got != s.errno {
				t.Fatalf("op %d: %s: got %v (%v), model says %v", i, s.desc, errnoName(got), r.Err, errnoName(s.errno))
			}
			if s.ino != 0 {
				if r.Attr == nil || r.Attr.Inode != s.ino {
					t.Fatalf("op %d: %s: attr %v, model says inode %d", i, s.desc, r.Attr, s.ino)
				}
				mn := s.want
				if r.Attr.Nlink != mn.nlink || r.Attr.Size != mn.size || r.Attr.Type != mn.typ {
					t.Fatalf("op %d: %s: attr %v, model has %+v", i, s.desc, r.Attr, mn)
				}
			}
			i++
		}
		if n == 1 && steps[0].errno != 0 && len(steps[0].cmds) == 1 {
			if after := digest(t, d.f); after != before {
				t.Fatalf("op %d: %s failed but changed the state", i, steps[0].desc)
			}
		}
		if g.r.IntN(200) == 0 {
			compareTree(t, d.f, g.m)
		}
	}
	compareTree(t, d.f, g.m)

	// Determinism: replaying the log elsewhere gives the same bytes.
	d2 := newDriver(t, false)
	for _, e := range d.log {
		d2.raw(e)
	}
	if !bytes.Equal(dump(t, d.f), dump(t, d2.f)) {
		t.Fatal("replayed log gives different Pebble contents")
	}
}

// compareTree walks the FSM from the root and compares it with the model.
func compareTree(t *testing.T, f *FSM, m *model) {
	t.Helper()
	seen := map[uint64]bool{}
	var walk func(ino uint64, path string)
	walk = func(ino uint64, path string) {
		mn := m.inodes[ino]
		at, err := f.GetAttr(ino)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if mn == nil || at.Type != mn.typ || at.Nlink != mn.nlink || at.Size != mn.size || at.Mode != mn.mode {
			t.Fatalf("%s: fsm %v, model %+v", path, at, mn)
		}
		if seen[ino] {
			return
		}
		seen[ino] = true
		names, err := f.ListXattr(ino)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != len(mn.xattrs) {
			t.Fatalf("%s: xattrs %q, model %v", path, names, mn.xattrs)
		}
		for _, n := range names {
			v, err := f.GetXattr(ino, n)
			if err != nil || string(v) != mn.xattrs[n] {
				t.Fatalf("%s: xattr %q = %q (%v), model %q", path, n, v, err, mn.xattrs[n])
			}
		}
		switch mn.typ {
		case typeSymlink:
			if tgt, err := f.Readlink(ino); err != nil || tgt != mn.target {
				t.Fatalf("%s: readlink %q %v, model %q", path, tgt, err, mn.target)
			}
		case typeRegular:
			compareData(t, f, ino, mn, path)
		case typeDir:
			var names []string
			after := ""
			for {
				es, more, err := f.ReadDir(ino, after, 3, true)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					names = append(names, e.Name)
					if want := mn.kids[e.Name]; e.Inode != want || e.Attr.Inode != want {
						t.Fatalf("%s/%s: inode %d, model %d", path, e.Name, e.Inode, want)
					}
					after = e.Name
				}
				if !more {
					break
				}
			}
			var want []string
			for n := range mn.kids {
				want = append(want, n)
			}
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Fatalf("%s: entries %q, model %q", path, names, want)
			}
			for _, n := range names {
				walk(mn.kids[n], path+"/"+n)
			}
		}
	}
	walk(RootInode, "")
	if len(seen) != len(m.inodes) {
		t.Fatalf("reached %d inodes, model has %d", len(seen), len(m.inodes))
	}
	st, err := f.StatFS()
	if err != nil {
		t.Fatal(err)
	}
	if st.Inodes != uint64(len(m.inodes)) {
		t.Fatalf("statfs counts %d inodes, model %d", st.Inodes, len(m.inodes))
	}
}

// compareData checks that the FSM's layout resolves every byte of the file
// to the same slice byte (or hole) as the model's writes do.
func compareData(t *testing.T, f *FSM, ino uint64, mn *mInode, path string) {
	t.Helper()
	_, refs, inline, err := f.GetLayout(ino, 0, 0)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !bytes.Equal(inline, mn.inline) {
		t.Fatalf("%s: %d inline bytes, model has %d (or other bytes)", path, len(inline), len(mn.inline))
	}
	cuts := []uint64{0, mn.size}
	for _, w := range mn.writes {
		cuts = append(cuts, w.off, w.off+w.n)
	}
	for _, r := range refs {
		cuts = append(cuts, r.FileOffset, r.FileOffset+r.Length)
	}
	for c := uint64(ChunkSize); c < mn.size; c += ChunkSize {
		cuts = append(cuts, c)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	for _, x := range cuts {
		if x >= mn.size {
			break
		}
		var wantID, wantOff uint64
		for i := len(mn.writes) - 1; i >= 0; i-- {
			if w := mn.writes[i]; x >= w.off && x < w.off+w.n {
				wantID, wantOff = w.id, x-w.base
				break
			}
		}
		var gotID, gotOff uint64
		for _, r := range refs {
			if r.FileOffset/ChunkSize == x/ChunkSize && x >= r.FileOffset && x < r.FileOffset+r.Length {
				gotID, gotOff = r.SliceId, r.SliceOffset+(x-r.FileOffset)
			}
		}
		if gotID != wantID || gotOff != wantOff {
			t.Fatalf("%s: byte %d is slice %d+%d, model says slice %d+%d", path, x, gotID, gotOff, wantID, wantOff)
		}
	}
}
