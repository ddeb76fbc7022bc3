package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

func TestErrorFormat(t *testing.T) {
	e := newErr("mkdir", objName(1, "a"), syscall.EEXIST, "")
	if got, want := e.Error(), `fsm: mkdir 1/"a": file exists`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	var err error = e
	if !errors.Is(err, syscall.EEXIST) {
		t.Fatal("errors.Is(err, EEXIST) is false")
	}
}

func TestMalformedEntries(t *testing.T) {
	d := newDriver(t, true)
	d.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "a"}))
	before := digest(t, d.f)
	for _, data := range [][]byte{
		{0xff, 0xff, 0xff},
		[]byte("not a protobuf at all"),
		{0x0a, 0x05, 0x52, 0x03}, // a command whose op is cut short
	} {
		res := d.raw(data)
		if len(res) != 1 || errno(res[0].Err) != syscall.EINVAL {
			t.Fatalf("%x: results %v", data, res)
		}
	}
	// Commands that decode but say nothing, or nonsense.
	bad := []*fsmpb.Command{
		{},
		withReq(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "b"}), "c", strings.Repeat("x", MaxRequestIDLen+1)),
		cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "a/b"}),
		cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "nul\x00"}),
		cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "x", Layout: &chunkpb.Layout{Kind: chunkpb.Layout_KIND_REPLICATED}}),
		cmd(&fsmpb.Rename{OldParent: RootInode, OldName: "a", NewParent: RootInode, NewName: "z", Mode: 7}),
		cmd(&fsmpb.Mknod{Parent: RootInode, Name: "u", Type: masterpb.FileType_FILE_TYPE_UNSPECIFIED}),
		cmd(&fsmpb.SetXattr{Inode: RootInode, Name: "user.x", Flag: 9}),
		cmd(&fsmpb.Symlink{Parent: RootInode, Name: "s", Target: strings.Repeat("t", MaxSymlinkLen+1)}),
	}
	for i, r := range d.entry(bad...) {
		if errno(r.Err) == 0 {
			t.Errorf("command %d succeeded", i)
		}
	}
	if digest(t, d.f) != before {
		t.Fatal("rejected commands changed the state")
	}
	if a, b := d.f.AppliedIndex(), d.index; a != b {
		t.Fatalf("applied index %d, want %d", a, b)
	}
	// An empty entry is a no-op with no results; a good command among bad
	// ones succeeds.
	if res := d.entry(); len(res) != 0 {
		t.Fatalf("empty entry: %v", res)
	}
	res := d.entry(bad[2], cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "ok"}), bad[3])
	if res[0].Err == nil || res[1].Err != nil || res[2].Err == nil {
		t.Fatalf("mixed entry: %+v", res)
	}
}

func TestFailedCommandLeavesNoTrace(t *testing.T) {
	d := newDriver(t, true)
	d.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "a"}))
	d.mustDo(cmd(&fsmpb.Create{Parent: 2, Name: "f"}))
	before := digest(t, d.f)
	for _, c := range []*fsmpb.Command{
		cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "a"}),
		cmd(&fsmpb.Rmdir{Parent: RootInode, Name: "a"}),
		cmd(&fsmpb.Rename{OldParent: RootInode, OldName: "a", NewParent: 2, NewName: "b"}),
		cmd(&fsmpb.Link{Inode: 2, NewParent: RootInode, NewName: "l"}),
		cmd(&fsmpb.CommitSlice{Inode: 3, SliceId: 1, Length: 1}),
		cmd(&fsmpb.AllocateSlice{Inode: 3, Length: 1, Layout: rep3, Shards: shardsFor(rep3)[:2], ExpiresUnixNano: t0 + 1e12}),
		cmd(&fsmpb.AllocateSlice{Inode: 3, Length: MaxSliceLength + 1, Layout: rep3, Shards: shardsFor(rep3), ExpiresUnixNano: t0 + 1e12}),
		cmd(&fsmpb.SetAttr{Inode: 2, Size: proto.Uint64(0)}),
		cmd(&fsmpb.SetAttr{Inode: 3, Size: proto.Uint64(MaxFileSize + 1)}),
	} {
		if r := d.do(c); r.Err == nil {
			t.Fatalf("%v succeeded", c)
		}
		if digest(t, d.f) != before {
			t.Fatalf("%v failed but changed the state", c)
		}
	}
}

func TestAlreadyAppliedIndex(t *testing.T) {
	d := newDriver(t, true)
	d.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "a"}))
	before := dump(t, d.f)
	data, _ := EncodeEntry(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "b", Mode: 0o755}))
	res, err := d.f.Apply(d.index, data)
	if res != nil || err != nil {
		t.Fatalf("replayed index: %v, %v", res, err)
	}
	if !bytes.Equal(before, dump(t, d.f)) {
		t.Fatal("replayed index changed the state")
	}
}

func TestReadDirPaging(t *testing.T) {
	d := newDriver(t, true)
	var cmds []*fsmpb.Command
	for i := 0; i < 100; i++ {
		cmds = append(cmds, cmd(&fsmpb.Create{Parent: RootInode, Name: fmt.Sprintf("f%03d", 99-i)}))
	}
	d.entry(cmds...)
	var names []string
	after := ""
	pages := 0
	for {
		es, more, err := d.f.ReadDir(RootInode, after, 7, pages%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range es {
			names = append(names, e.Name)
			if (pages%2 == 1) != (e.Attr != nil) {
				t.Fatalf("page %d: attr %v", pages, e.Attr)
			}
			after = e.Name
		}
		if !more {
			break
		}
	}
	if len(names) != 100 || pages != 15 || names[0] != "f000" || names[99] != "f099" {
		t.Fatalf("%d names in %d pages: %q…%q", len(names), pages, names[0], names[len(names)-1])
	}
	if _, _, err := d.f.ReadDir(2, "", 0, false); errno(err) != syscall.ENOTDIR {
		t.Fatalf("readdir of a file: %v", err)
	}
	if _, _, err := d.f.ReadDir(9999, "", 0, false); errno(err) != syscall.ENOENT {
		t.Fatalf("readdir of nothing: %v", err)
	}
	if _, err := d.f.Lookup(2, "x"); errno(err) != syscall.ENOTDIR {
		t.Fatalf("lookup in a file: %v", err)
	}
}

func TestRequestRetention(t *testing.T) {
	d := newDriver(t, true)
	c := func() *fsmpb.Command {
		return withReq(cmd(&fsmpb.Create{Parent: RootInode, Name: "f", Exclusive: true}), "client", "req-1")
	}
	// The original and its retry in one group-committed entry.
	res := d.entry(c(), c())
	if res[0].Err != nil || !res[1].Duplicate || res[1].Attr.Inode != res[0].Attr.Inode {
		t.Fatalf("results %+v", res)
	}
	if r := d.do(c()); !r.Duplicate {
		t.Fatalf("retry: %+v", r)
	}
	key := requestKey(requestSuffix("client", []byte("req-1")))
	if ok, _ := exists(d.f.db, key); !ok {
		t.Fatal("no request record")
	}
	d.now += int64(RequestRetention)
	d.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "tick"}))
	if ok, _ := exists(d.f.db, key); ok {
		t.Fatal("request record outlived its retention")
	}
	if r := d.do(c()); errno(r.Err) != syscall.EEXIST {
		t.Fatalf("retry after retention: %+v", r)
	}
}

// build makes a state with a bit of everything: the random model run's
// first operations.
func build(t *testing.T, seed uint64, ops int) *driver {
	d := newDriver(t, false)
	g := &gen{r: rand.New(rand.NewPCG(seed, 1)), m: newModel(), d: d}
	for i := 0; i < ops; i++ {
		s := g.next()
		for _, c := range s.cmds {
			c.NowUnixNano = d.now
			if i%3 == 0 {
				withReq(c, "c", fmt.Sprint(i))
			}
		}
		d.entry(s.cmds...)
	}
	d.entry(d.allocate(2, 100)) // a pending slice, if inode 2 is a file
	return d
}

func TestSnapshotRestore(t *testing.T) {
	a := build(t, 7, 400)
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if snap.Index() != a.index {
		t.Fatalf("snapshot index %d, want %d", snap.Index(), a.index)
	}
	// The snapshot is a point in time: later entries do not change it.
	a.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "later"}))
	var again bytes.Buffer
	if _, err := snap.WriteTo(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("snapshot changed after a later apply")
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}

	// Restore over a state with other contents.
	b := build(t, 8, 50)
	if err := b.f.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if b.f.AppliedIndex() != snap.Index() {
		t.Fatalf("restored applied index %d, want %d", b.f.AppliedIndex(), snap.Index())
	}
	if err := b.f.Verify(); err != nil {
		t.Fatal(err)
	}
	// Apply the same later entry: both must agree byte for byte.
	b.index = snap.Index()
	b.raw(a.log[len(a.log)-1])
	if !bytes.Equal(dump(t, a.f), dump(t, b.f)) {
		t.Fatal("restored state differs")
	}
}

func TestRestoreRejectsDamage(t *testing.T) {
	a := build(t, 9, 100)
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)-9],
		"flipped":   flipped,
		"empty":     nil,
		"trailing":  append(append([]byte(nil), good...), 0),
	} {
		t.Run(name, func(t *testing.T) {
			fs := vfs.NewMem()
			f, err := Open("db", fs)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Restore(bytes.NewReader(data)); err == nil {
				t.Fatal("restore of a damaged snapshot succeeded")
			}
			if _, err := f.Apply(1, nil); !errors.Is(err, ErrNeedsRestore) {
				t.Fatalf("apply after a failed restore: %v", err)
			}
			if _, err := f.GetAttr(RootInode); !errors.Is(err, ErrNeedsRestore) {
				t.Fatalf("read after a failed restore: %v", err)
			}
			// Reopening remembers the failed restore.
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if f, err = Open("db", fs); err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.GetAttr(RootInode); !errors.Is(err, ErrNeedsRestore) {
				t.Fatalf("read after reopening: %v", err)
			}
			if err := f.Restore(bytes.NewReader(good)); err != nil {
				t.Fatal(err)
			}
			if err := f.Verify(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dump(t, a.f), dump(t, f)) {
				t.Fatal("state differs after a good restore")
			}
		})
	}
}

// TestCrashReplay: Apply does not sync, so a crash may lose the latest
// entries; Raft replays them from AppliedIndex+1 and the state ends the
// same. Snapshot syncs, so a crash after it loses nothing before it.
func TestCrashReplay(t *testing.T) {
	fs := vfs.NewCrashableMem()
	f, err := Open("db", fs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := &driver{tb: t, f: f, now: t0, meta: &fsmpb.Meta{}}
	for i := 0; i < 40; i++ {
		d.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: fmt.Sprint("d", i)}))
		if i == 19 {
			s, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
		}
	}
	want := dump(t, f)
	for _, pct := range []int{0, 50} {
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(uint64(pct), 2))})
		g, err := Open("db", clone)
		if err != nil {
			t.Fatal(err)
		}
		applied := g.AppliedIndex()
		if applied < 20 {
			t.Fatalf("crash lost entries before the snapshot: applied %d", applied)
		}
		if err := g.Verify(); err != nil {
			t.Fatal(err)
		}
		for i := applied + 1; i <= d.index; i++ {
			if _, err := g.Apply(i, d.log[i-1]); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(want, dump(t, g)) {
			t.Fatalf("replay after a crash (%d%% unsynced kept, applied %d) differs", pct, applied)
		}
		_ = g.Close()
	}
}

func TestGarbageAndLayoutReads(t *testing.T) {
	d := newDriver(t, true)
	f := d.mustDo(cmd(&fsmpb.Create{Parent: RootInode, Name: "f"})).Attr.Inode
	_, s1 := d.write(f, 0, 3*ChunkSize)
	_, s2 := d.write(f, ChunkSize+5, 10)
	at, refs, _, err := d.f.GetLayout(f, ChunkSize, 10)
	if err != nil {
		t.Fatal(err)
	}
	if at.Size != 3*ChunkSize || len(refs) != 2 || refs[0].SliceId != s1 || refs[1].SliceId != s2 {
		t.Fatalf("layout %v %v", at, refs)
	}
	if _, refs, _, _ := d.f.GetLayout(f, 5*ChunkSize, 0); len(refs) != 0 {
		t.Fatalf("layout beyond EOF: %v", refs)
	}
	if s, err := d.f.GetSlice(s1); err != nil || !s.Committed || s.Refs != 3 {
		t.Fatalf("slice %v %v", s, err)
	}
	d.mustDo(cmd(&fsmpb.Unlink{Parent: RootInode, Name: "f"}))
	gs, err := d.f.ListGarbage(0, 1)
	if err != nil || len(gs) != 1 || gs[0].Id != s1 {
		t.Fatalf("garbage page 1: %v %v", gs, err)
	}
	gs, _ = d.f.ListGarbage(gs[0].Id, 10)
	if len(gs) != 1 || gs[0].Id != s2 {
		t.Fatalf("garbage page 2: %v", gs)
	}
	if _, err := d.f.GetSlice(s1); errno(err) != syscall.ENOENT {
		t.Fatalf("slice of a deleted file: %v", err)
	}
	d.mustDo(cmd(&fsmpb.AckGarbage{SliceIds: []uint64{s1, s2, s2}}))
	if gs, _ := d.f.ListGarbage(0, 0); len(gs) != 0 {
		t.Fatalf("garbage after ack: %v", gs)
	}
}

func TestReplaceShard(t *testing.T) {
	d := newDriver(t, true)
	f := d.mustDo(cmd(&fsmpb.Create{Parent: RootInode, Name: "f"})).Attr.Inode
	id := d.mustDo(d.allocate(f, 10)).SliceID
	loc := &masterpb.ShardLocation{Index: 1, ChunkserverId: "cs-9", Address: "10.0.0.9:7000"}
	d.mustDo(cmd(&fsmpb.ReplaceShard{SliceId: id, Shard: loc}))
	s, err := d.f.GetSlice(id)
	if err != nil || s.Shards[1].ChunkserverId != "cs-9" {
		t.Fatalf("slice %v %v", s, err)
	}
	if r := d.do(cmd(&fsmpb.ReplaceShard{SliceId: id, Shard: &masterpb.ShardLocation{Index: 3}})); errno(r.Err) != syscall.EINVAL {
		t.Fatalf("shard index beyond the layout: %v", r.Err)
	}
	d.mustDo(cmd(&fsmpb.CommitSlice{Inode: f, SliceId: id, Length: 10}))
	if r := d.do(cmd(&fsmpb.ReplaceShard{SliceId: id, Shard: loc})); errno(r.Err) != syscall.EEXIST {
		t.Fatalf("replace in a committed slice: %v", r.Err)
	}
}

// TestConcurrentReads runs the read methods on other goroutines while
// entries apply (run with -race): each read sees whole entries, so a
// directory listing's size only grows and every listed entry resolves.
func TestConcurrentReads(t *testing.T) {
	d := newDriver(t, false)
	dir := d.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "d"})).Attr.Inode
	done := make(chan struct{})
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		go func() {
			last := 0
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				es, _, err := d.f.ReadDir(dir, "", MaxReadDirLimit, true)
				if err != nil {
					errs <- err
					return
				}
				if len(es) < last {
					errs <- fmt.Errorf("listing shrank from %d to %d", last, len(es))
					return
				}
				last = len(es)
				for _, e := range es {
					if _, _, _, err := d.f.GetLayout(e.Inode, 0, 0); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		f := d.mustDo(cmd(&fsmpb.Create{Parent: dir, Name: fmt.Sprint("f", i)})).Attr.Inode
		d.write(f, 0, 10)
	}
	close(done)
	for g := 0; g < 2; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
