package fsm

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestScenarios runs the stories in testdata/*.txt. Each file starts from a
// fresh state machine; commands name files by path (resolved with Lookup,
// as the master would before proposing), every command is one log entry
// stamped one second after the previous, and the invariants are checked
// after each. Commands:
//
//	mkdir PATH [mode=0755] [layout=rs63|rep3]   create PATH [excl] [trunc]
//	mknod PATH type=fifo|sock|chr|blk [rdev=N]  symlink PATH target=T
//	link OLD NEW   unlink PATH   rmdir PATH     rename OLD NEW [noreplace|exchange]
//	setattr PATH [size=N] [mode=M] [uid=N] [gid=N]
//	setxattr PATH name=N value=V [create|replace]   removexattr PATH name=N
//	getxattr PATH name=N   listxattr PATH   readlink PATH   stat PATH
//	setlayout PATH layout=rs63|rep3|none
//	write PATH off=N len=N        (allocate and commit a slice)
//	allocate PATH len=N [ttl=D]   commit PATH slice=N (off=N len=N | ext=FILE:SLICE:LEN,...)
//	layout PATH [off=N] [len=N]   ls PATH [after=NAME] [limit=N] [plus]
//	tree   statfs   garbage   ack IDS...   tick D
//
// PATH may be #N to name inode N when no path reaches it.
//
//	batch  (input: one command per line, all in one entry)
//
// release also takes abandon=ID,... (requests of client=C, default c1,
// given up). Any command takes req=ID [client=C] to carry a request ID. Sizes and
// offsets accept suffixes K, M, G (binary) and C (a 64 MiB chunk).
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		s := &scenario{d: newDriver(t, true)}
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			s.d.tb = t
			return s.run(td.Cmd, td.CmdArgs, td.Input)
		})
	})
}

type scenario struct {
	d *driver
}

type args []datadriven.CmdArg

// paths returns the positional arguments (keys without values starting
// with '/').
func (a args) paths() []string {
	var out []string
	for _, x := range a {
		if len(x.Vals) == 0 && (strings.HasPrefix(x.Key, "/") || strings.HasPrefix(x.Key, "#")) {
			out = append(out, x.Key)
		}
	}
	return out
}

func (a args) has(key string) bool {
	for _, x := range a {
		if x.Key == key {
			return true
		}
	}
	return false
}

func (a args) str(key string) (string, bool) {
	for _, x := range a {
		if x.Key == key && len(x.Vals) > 0 {
			return x.Vals[0], true
		}
	}
	return "", false
}

func (a args) num(key string) (uint64, bool, error) {
	s, ok := a.str(key)
	if !ok {
		return 0, false, nil
	}
	n, err := parseSize(s)
	return n, true, err
}

func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	case strings.HasSuffix(s, "C"):
		mult = ChunkSize
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 0, 64)
	return n * mult, err
}

// extentsArg parses ext=FILE:SLICE:LEN[,FILE:SLICE:LEN...] (none: nil).
func extentsArg(a args) ([]*masterpb.Extent, error) {
	v, ok := a.str("ext")
	if !ok {
		return nil, nil
	}
	var out []*masterpb.Extent
	for _, e := range strings.Split(v, ",") {
		parts := strings.Split(e, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("extent %q is not FILE:SLICE:LEN", e)
		}
		var n [3]uint64
		for i, p := range parts {
			var err error
			if n[i], err = parseSize(p); err != nil {
				return nil, err
			}
		}
		out = append(out, &masterpb.Extent{FileOffset: n[0], SliceOffset: n[1], Length: n[2]})
	}
	return out, nil
}

func layoutArg(s string) (*chunkpb.Layout, error) {
	switch s {
	case "rs63":
		return rs63, nil
	case "rep3":
		return rep3, nil
	case "none":
		return nil, nil
	case "bad":
		return &chunkpb.Layout{Kind: chunkpb.Layout_KIND_STRIPED}, nil
	}
	return nil, fmt.Errorf("unknown layout %q", s)
}

func layoutName(l *chunkpb.Layout) string {
	switch {
	case l == nil:
		return "default"
	case l.Kind == chunkpb.Layout_KIND_STRIPED:
		return fmt.Sprintf("rs(%d,%d)", l.DataShards, l.ParityShards)
	default:
		return fmt.Sprintf("rep%d", l.Replicas)
	}
}

// resolve walks path from the root.
func (s *scenario) resolve(path string) (uint64, error) {
	if strings.HasPrefix(path, "#") {
		// #N names inode N directly, for files no path reaches any more.
		return strconv.ParseUint(path[1:], 10, 64)
	}
	ino := uint64(RootInode)
	for _, name := range strings.Split(strings.Trim(path, "/"), "/") {
		if name == "" {
			continue
		}
		a, err := s.d.f.Lookup(ino, name)
		if err != nil {
			return 0, err
		}
		ino = a.Inode
	}
	return ino, nil
}

// resolveParent resolves all but the last element of path.
func (s *scenario) resolveParent(path string) (uint64, string, error) {
	i := strings.LastIndex(path, "/")
	dir, err := s.resolve(path[:i])
	return dir, path[i+1:], err
}

func fmtType(t masterpb.FileType) string {
	return map[masterpb.FileType]string{
		masterpb.FileType_FILE_TYPE_REGULAR: "file", masterpb.FileType_FILE_TYPE_DIRECTORY: "dir",
		masterpb.FileType_FILE_TYPE_SYMLINK: "symlink", masterpb.FileType_FILE_TYPE_FIFO: "fifo",
		masterpb.FileType_FILE_TYPE_SOCKET: "sock", masterpb.FileType_FILE_TYPE_CHAR_DEVICE: "chr",
		masterpb.FileType_FILE_TYPE_BLOCK_DEVICE: "blk",
	}[t]
}

func fmtAttr(a *masterpb.Attr) string {
	s := fmt.Sprintf("ino=%d %s mode=%04o nlink=%d size=%d", a.Inode, fmtType(a.Type), a.Mode, a.Nlink, a.Size)
	if a.Type == masterpb.FileType_FILE_TYPE_CHAR_DEVICE || a.Type == masterpb.FileType_FILE_TYPE_BLOCK_DEVICE {
		s += fmt.Sprintf(" rdev=%d", a.Rdev)
	}
	return s
}

// fmtTime prints a leader time relative to the scenario's start.
func fmtTime(ns int64) string {
	if ns == 0 {
		return "0"
	}
	return "+" + time.Duration(ns-t0).String()
}

func fmtResult(r Result) string {
	if r.Err != nil {
		return fmtErr(r.Err)
	}
	var parts []string
	if r.Duplicate {
		parts = append(parts, "duplicate:")
	}
	if r.SliceID != 0 {
		parts = append(parts, fmt.Sprintf("slice=%d", r.SliceID))
	}
	if r.Handle != 0 {
		parts = append(parts, fmt.Sprintf("handle=%d", r.Handle))
	}
	if r.Attr != nil {
		parts = append(parts, fmtAttr(r.Attr))
	}
	if r.Attr == nil && r.SliceID == 0 && r.Handle == 0 {
		parts = append(parts, "ok")
	}
	return strings.Join(parts, " ")
}

func (s *scenario) run(name string, a args, input string) string {
	if name == "batch" {
		var cmds []*fsmpb.Command
		for _, line := range strings.Split(strings.TrimSpace(input), "\n") {
			n, la, err := datadriven.ParseLine(line)
			if err != nil {
				return "error: " + err.Error()
			}
			c, err := s.build(n, la)
			if err != nil {
				return fmt.Sprintf("%s: %s", line, fmtErr(err))
			}
			cmds = append(cmds, c)
		}
		var out []string
		for i, r := range s.d.entry(cmds...) {
			out = append(out, fmt.Sprintf("%d: %s", i, fmtResult(r)))
		}
		return strings.Join(out, "\n")
	}
	out, err := s.query(name, a)
	if err != nil {
		return fmtErr(err)
	}
	if out != "" {
		return out
	}
	c, err := s.build(name, a)
	if err != nil {
		return fmtErr(err)
	}
	r := s.d.do(c)
	if name == "create" && r.Err == nil && !r.Created {
		return fmtResult(r) + " (existing)"
	}
	return fmtResult(r)
}

// query runs the commands that are not one log entry; "" means name is a
// mutation for build.
func (s *scenario) query(name string, a args) (string, error) {
	p := a.paths()
	f := s.d.f
	switch name {
	case "tick":
		d, err := time.ParseDuration(a[0].Key)
		if err != nil {
			return "", err
		}
		s.d.now += int64(d)
		return "now " + fmtTime(s.d.now), nil
	case "stat":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		at, err := f.GetAttr(ino)
		if err != nil {
			return "", err
		}
		pol, err := f.LayoutPolicy(ino)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s uid=%d gid=%d v=%d\natime=%s mtime=%s ctime=%s layout=%s", fmtAttr(at), at.Uid, at.Gid,
			at.Version, fmtTime(at.AtimeUnixNano), fmtTime(at.MtimeUnixNano), fmtTime(at.CtimeUnixNano), layoutName(pol)), nil
	case "locks":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		ls, err := f.Locks(ino)
		if err != nil {
			return "", err
		}
		var out []string
		for _, l := range ls {
			kind, typ := "posix", "read"
			if l.Flock {
				kind = "flock"
			}
			if l.Write {
				typ = "write"
			}
			end := strconv.FormatUint(l.End, 10)
			if l.End == math.MaxUint64 {
				end = "eof"
			}
			out = append(out, fmt.Sprintf("%s/%d %s %s [%d,%s]", l.ClientId, l.Owner, kind, typ, l.Start, end))
		}
		if len(out) == 0 {
			return "none", nil
		}
		return strings.Join(out, "\n"), nil
	case "handles":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		n, w, err := f.OpenHandles(ino)
		return fmt.Sprintf("%d open, %d writable", n, w), err
	case "clients":
		cs, err := f.ClientsWithState()
		return fmt.Sprintf("%q", cs), err
	case "readlink":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		return f.Readlink(ino)
	case "getxattr":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		n, _ := a.str("name")
		v, err := f.GetXattr(ino, n)
		return fmt.Sprintf("%q", v), err
	case "listxattr":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		names, err := f.ListXattr(ino)
		return fmt.Sprintf("%q", names), err
	case "ls":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		after, _ := a.str("after")
		limit, _, err := a.num("limit")
		if err != nil {
			return "", err
		}
		es, more, err := f.ReadDir(ino, after, int(limit), a.has("plus"))
		if err != nil {
			return "", err
		}
		var out []string
		for _, e := range es {
			line := fmt.Sprintf("%s ino=%d %s", e.Name, e.Inode, fmtType(e.Type))
			if e.Attr != nil {
				line = e.Name + " " + fmtAttr(e.Attr)
			}
			out = append(out, line)
		}
		if more {
			out = append(out, "(more)")
		}
		if len(out) == 0 {
			return "(empty)", nil
		}
		return strings.Join(out, "\n"), nil
	case "tree":
		var out []string
		if err := s.tree(RootInode, "", &out); err != nil {
			return "", err
		}
		return strings.Join(out, "\n"), nil
	case "layout":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		off, _, _ := a.num("off")
		n, _, _ := a.num("len")
		at, refs, _, err := f.GetLayout(ino, off, n)
		if err != nil {
			return "", err
		}
		out := []string{fmt.Sprintf("size=%d v=%d", at.Size, at.Version)}
		for _, r := range refs {
			out = append(out, fmt.Sprintf("slice=%d file=[%s,%s) slice_off=%s slice_len=%s %s shards=%d",
				r.SliceId, human(r.FileOffset), human(r.FileOffset+r.Length), human(r.SliceOffset), human(r.SliceLength), layoutName(r.Layout), len(r.Shards)))
		}
		return strings.Join(out, "\n"), nil
	case "statfs":
		st, err := f.StatFS()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("inodes=%d dirs=%d files=%d bytes=%s slices: committed=%d pending=%d garbage=%d",
			st.Inodes, st.Directories, st.RegularFiles, human(st.LogicalBytes), st.CommittedSlices, st.PendingSlices, st.GarbageSlices), nil
	case "garbage":
		gs, err := f.ListGarbage(0, 0)
		if err != nil {
			return "", err
		}
		var out []string
		for _, g := range gs {
			state := "pending"
			if g.Committed {
				state = "committed"
			}
			out = append(out, fmt.Sprintf("slice=%d inode=%d len=%s %s %s shards=%d", g.Id, g.Inode, human(g.Length), state, layoutName(g.Layout), len(g.Shards)))
		}
		if len(out) == 0 {
			return "(none)", nil
		}
		return strings.Join(out, "\n"), nil
	case "write":
		ino, err := s.resolve(p[0])
		if err != nil {
			return "", err
		}
		off, _, err := a.num("off")
		if err != nil {
			return "", err
		}
		n, _, err := a.num("len")
		if err != nil {
			return "", err
		}
		r, _ := s.d.write(ino, off, n)
		return fmtResult(r), nil
	}
	return "", nil
}

func (s *scenario) tree(ino uint64, path string, out *[]string) error {
	at, err := s.d.f.GetAttr(ino)
	if err != nil {
		return err
	}
	name := path
	if name == "" {
		name = "/"
	}
	line := name + " " + fmtAttr(at)
	if at.Type == masterpb.FileType_FILE_TYPE_SYMLINK {
		tgt, err := s.d.f.Readlink(ino)
		if err != nil {
			return err
		}
		line += " -> " + tgt
	}
	*out = append(*out, line)
	if at.Type != masterpb.FileType_FILE_TYPE_DIRECTORY {
		return nil
	}
	after := ""
	for {
		es, more, err := s.d.f.ReadDir(ino, after, 2, false)
		if err != nil {
			return err
		}
		for _, e := range es {
			if err := s.tree(e.Inode, path+"/"+e.Name, out); err != nil {
				return err
			}
			after = e.Name
		}
		if !more {
			return nil
		}
	}
}

// human prints byte counts compactly: 64M, 1C+5, 100.
func human(n uint64) string {
	switch {
	case n == 0:
		return "0"
	case n%ChunkSize == 0:
		return fmt.Sprintf("%dC", n/ChunkSize)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return strconv.FormatUint(n, 10)
}

// build turns a mutation command line into a Command.
func (s *scenario) build(name string, a args) (*fsmpb.Command, error) {
	p := a.paths()
	need := func(n int) error {
		if len(p) < n {
			return fmt.Errorf("%s needs %d paths", name, n)
		}
		return nil
	}
	var c *fsmpb.Command
	switch name {
	case "mkdir", "create", "mknod", "symlink":
		if err := need(1); err != nil {
			return nil, err
		}
		dir, base, err := s.resolveParent(p[0])
		if err != nil {
			return nil, err
		}
		mode := uint64(0o644)
		if name == "mkdir" {
			mode = 0o755
		}
		if m, ok := a.str("mode"); ok {
			if mode, err = strconv.ParseUint(m, 8, 32); err != nil {
				return nil, err
			}
		}
		switch name {
		case "mkdir":
			op := &fsmpb.Mkdir{Parent: dir, Name: base, Mode: uint32(mode)}
			if l, ok := a.str("layout"); ok {
				if op.Layout, err = layoutArg(l); err != nil {
					return nil, err
				}
			}
			c = cmd(op)
		case "create":
			client, _ := a.str("open")
			c = cmd(&fsmpb.Create{Parent: dir, Name: base, Mode: uint32(mode), Exclusive: a.has("excl"), Truncate: a.has("trunc"), OpenForClient: client})
		case "mknod":
			typ, _ := a.str("type")
			rdev, _, _ := a.num("rdev")
			t := map[string]masterpb.FileType{
				"fifo": masterpb.FileType_FILE_TYPE_FIFO, "sock": masterpb.FileType_FILE_TYPE_SOCKET,
				"chr": masterpb.FileType_FILE_TYPE_CHAR_DEVICE, "blk": masterpb.FileType_FILE_TYPE_BLOCK_DEVICE,
				"file": masterpb.FileType_FILE_TYPE_REGULAR, "dir": masterpb.FileType_FILE_TYPE_DIRECTORY,
			}[typ]
			c = cmd(&fsmpb.Mknod{Parent: dir, Name: base, Type: t, Mode: uint32(mode), Rdev: uint32(rdev)})
		case "symlink":
			tgt, _ := a.str("target")
			c = cmd(&fsmpb.Symlink{Parent: dir, Name: base, Target: tgt})
		}
	case "unlink", "rmdir":
		if err := need(1); err != nil {
			return nil, err
		}
		dir, base, err := s.resolveParent(p[0])
		if err != nil {
			return nil, err
		}
		if name == "unlink" {
			c = cmd(&fsmpb.Unlink{Parent: dir, Name: base})
		} else {
			c = cmd(&fsmpb.Rmdir{Parent: dir, Name: base})
		}
	case "link":
		if err := need(2); err != nil {
			return nil, err
		}
		ino, err := s.resolve(p[0])
		if err != nil {
			return nil, err
		}
		dir, base, err := s.resolveParent(p[1])
		if err != nil {
			return nil, err
		}
		c = cmd(&fsmpb.Link{Inode: ino, NewParent: dir, NewName: base})
	case "rename":
		if err := need(2); err != nil {
			return nil, err
		}
		od, on, err := s.resolveParent(p[0])
		if err != nil {
			return nil, err
		}
		nd, nn, err := s.resolveParent(p[1])
		if err != nil {
			return nil, err
		}
		mode := masterpb.RenameRequest_MODE_REPLACE
		if a.has("noreplace") {
			mode = masterpb.RenameRequest_MODE_NOREPLACE
		}
		if a.has("exchange") {
			mode = masterpb.RenameRequest_MODE_EXCHANGE
		}
		c = cmd(&fsmpb.Rename{OldParent: od, OldName: on, NewParent: nd, NewName: nn, Mode: mode})
	case "setattr", "setxattr", "removexattr", "setlayout", "allocate", "commit":
		if err := need(1); err != nil {
			return nil, err
		}
		ino, err := s.resolve(p[0])
		if err != nil {
			return nil, err
		}
		switch name {
		case "setattr":
			op := &fsmpb.SetAttr{Inode: ino}
			if v, ok, err := a.num("size"); err != nil {
				return nil, err
			} else if ok {
				op.Size = &v
			}
			if m, ok := a.str("mode"); ok {
				v, err := strconv.ParseUint(m, 8, 32)
				if err != nil {
					return nil, err
				}
				mode := uint32(v)
				op.Mode = &mode
			}
			if v, ok, _ := a.num("uid"); ok {
				u := uint32(v)
				op.Uid = &u
			}
			if v, ok, _ := a.num("gid"); ok {
				g := uint32(v)
				op.Gid = &g
			}
			c = cmd(op)
		case "setxattr":
			n, _ := a.str("name")
			v, _ := a.str("value")
			flag := masterpb.SetXattrRequest_FLAG_ANY
			if a.has("create") {
				flag = masterpb.SetXattrRequest_FLAG_CREATE
			}
			if a.has("replace") {
				flag = masterpb.SetXattrRequest_FLAG_REPLACE
			}
			c = cmd(&fsmpb.SetXattr{Inode: ino, Name: n, Value: []byte(v), Flag: flag})
		case "removexattr":
			n, _ := a.str("name")
			c = cmd(&fsmpb.RemoveXattr{Inode: ino, Name: n})
		case "setlayout":
			l, _ := a.str("layout")
			lay, err := layoutArg(l)
			if err != nil {
				return nil, err
			}
			c = cmd(&fsmpb.SetLayout{Inode: ino, Layout: lay})
		case "allocate":
			n, _, err := a.num("len")
			if err != nil {
				return nil, err
			}
			ttl := time.Hour
			if v, ok := a.str("ttl"); ok {
				if ttl, err = time.ParseDuration(v); err != nil {
					return nil, err
				}
			}
			c = s.d.allocate(ino, n)
			c.GetAllocateSlice().ExpiresUnixNano = s.d.now + int64(ttl)
		case "commit":
			id, _, err := a.num("slice")
			if err != nil {
				return nil, err
			}
			off, _, err := a.num("off")
			if err != nil {
				return nil, err
			}
			n, _, err := a.num("len")
			if err != nil {
				return nil, err
			}
			exts, err := extentsArg(a)
			if err != nil {
				return nil, err
			}
			c = cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: id, Offset: off, Length: n, Extents: exts})
		}
	case "concat":
		if len(p) < 1 {
			return nil, fmt.Errorf("concat needs a destination")
		}
		dir, base, err := s.resolveParent(p[0])
		if err != nil {
			return nil, err
		}
		op := &fsmpb.Concat{Dst: &fsmpb.EntryName{Parent: dir, Name: base}, Mode: 0o644}
		for _, src := range p[1:] {
			sd, sb, err := s.resolveParent(src)
			if err != nil {
				return nil, err
			}
			op.Srcs = append(op.Srcs, &fsmpb.EntryName{Parent: sd, Name: sb})
		}
		c = cmd(op)
	case "open", "lock":
		if err := need(1); err != nil {
			return nil, err
		}
		ino, err := s.resolve(p[0])
		if err != nil {
			return nil, err
		}
		client, _ := a.str("client")
		if name == "open" {
			c = cmd(&fsmpb.OpenHandle{Inode: ino, ClientId: client, ReadOnly: a.has("ro")})
			break
		}
		owner, _, _ := a.num("owner")
		start, _, _ := a.num("start")
		end, ok, _ := a.num("end")
		if !ok {
			end = math.MaxUint64
		}
		c = cmd(&fsmpb.SetLock{Inode: ino, Unlock: a.has("unlock"), Lock: &fsmpb.FileLock{
			ClientId: client, Owner: owner, Flock: a.has("flock"), Write: a.has("write"), Start: start, End: end,
		}})
	case "release":
		ino, _, err := a.num("ino")
		if err != nil {
			return nil, err
		}
		h, _, err := a.num("handle")
		if err != nil {
			return nil, err
		}
		op := &fsmpb.ReleaseHandle{Inode: ino, Handle: h}
		// more=INO:HANDLE,INO:HANDLE releases a batch.
		for _, x := range a {
			if x.Key != "more" {
				continue
			}
			for _, ref := range strings.Split(strings.Join(x.Vals, ","), ",") {
				i, hh, _ := strings.Cut(ref, ":")
				iv, err1 := strconv.ParseUint(i, 10, 64)
				hv, err2 := strconv.ParseUint(hh, 10, 64)
				if err1 != nil || err2 != nil {
					return nil, fmt.Errorf("more: bad handle %q", ref)
				}
				op.More = append(op.More, &masterpb.HandleRef{Inode: iv, Handle: hv})
			}
		}
		// abandon=ID,ID gives up requests of client (default c1).
		for _, x := range a {
			if x.Key != "abandon" {
				continue
			}
			op.ClientId, _ = a.str("client")
			if op.ClientId == "" {
				op.ClientId = "c1"
			}
			for _, id := range strings.Split(strings.Join(x.Vals, ","), ",") {
				op.Abandoned = append(op.Abandoned, []byte(id))
			}
		}
		c = cmd(op)
	case "expire":
		client, _ := a.str("client")
		c = cmd(&fsmpb.ExpireClient{ClientId: client})
	case "ack":
		op := &fsmpb.AckGarbage{}
		for _, x := range a {
			n, err := strconv.ParseUint(x.Key, 10, 64)
			if err != nil {
				return nil, err
			}
			op.SliceIds = append(op.SliceIds, n)
		}
		c = cmd(op)
	default:
		return nil, fmt.Errorf("unknown command %q", name)
	}
	if id, ok := a.str("req"); ok {
		client, _ := a.str("client")
		if client == "" {
			client = "c1"
		}
		withReq(c, client, id)
	}
	return c, nil
}
