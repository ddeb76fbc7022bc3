package fsm

import (
	"testing"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// fuzzBase builds the small state every fuzz input is applied to:
//
//	1 /            2 /d (rs63 policy)   3 /d/f (one committed slice, 1)
//	4 /d/sub       5 /d/link -> f       slice 2 pending on 3
func fuzzBase(tb testing.TB) *driver {
	d := newDriver(tb, false)
	d.mustDo(cmd(&fsmpb.Mkdir{Parent: RootInode, Name: "d", Mode: 0o755, Layout: rs63}))
	d.mustDo(cmd(&fsmpb.Create{Parent: 2, Name: "f", Mode: 0o644}))
	d.mustDo(cmd(&fsmpb.Mkdir{Parent: 2, Name: "sub", Mode: 0o755}))
	d.mustDo(cmd(&fsmpb.Symlink{Parent: 2, Name: "link", Target: "f"}))
	d.write(3, ChunkSize-10, 20)
	d.mustDo(d.allocate(3, 100))
	d.check = true
	return d
}

// fuzzSeeds are entries touching every operation, valid and not.
func fuzzSeeds() [][]*fsmpb.Command {
	size := uint64(5)
	mode := uint32(0o600)
	return [][]*fsmpb.Command{
		{cmd(&fsmpb.Mkdir{Parent: 2, Name: "x", Mode: 0o755})},
		{cmd(&fsmpb.Create{Parent: 4, Name: "y", Exclusive: true}), cmd(&fsmpb.Create{Parent: 4, Name: "y", Truncate: true})},
		{cmd(&fsmpb.Mknod{Parent: 2, Name: "p", Type: masterpb.FileType_FILE_TYPE_FIFO})},
		{cmd(&fsmpb.Symlink{Parent: 4, Name: "s", Target: "../f"})},
		{cmd(&fsmpb.Link{Inode: 3, NewParent: 4, NewName: "hard"})},
		{cmd(&fsmpb.Unlink{Parent: 2, Name: "f"})},
		{cmd(&fsmpb.Rmdir{Parent: 2, Name: "sub"})},
		{cmd(&fsmpb.Rename{OldParent: 2, OldName: "sub", NewParent: RootInode, NewName: "moved"})},
		{cmd(&fsmpb.Rename{OldParent: 2, OldName: "f", NewParent: 2, NewName: "sub", Mode: masterpb.RenameRequest_MODE_EXCHANGE})},
		{cmd(&fsmpb.Rename{OldParent: RootInode, OldName: "d", NewParent: 4, NewName: "loop"})},
		{cmd(&fsmpb.SetAttr{Inode: 3, Size: &size, Mode: &mode})},
		{cmd(&fsmpb.SetXattr{Inode: 3, Name: "user.a", Value: []byte("v")}), cmd(&fsmpb.RemoveXattr{Inode: 3, Name: "user.a"})},
		{cmd(&fsmpb.SetLayout{Inode: 4, Layout: rep3})},
		{allocate(3, 10, t0+1e9), cmd(&fsmpb.CommitSlice{Inode: 3, SliceId: 3, Offset: 3 * ChunkSize, Length: 10})},
		{cmd(&fsmpb.CommitSlice{Inode: 3, SliceId: 2, Offset: 0, Length: 100})},
		{cmd(&fsmpb.ReplaceShard{SliceId: 2, Shard: &masterpb.ShardLocation{Index: 4, ChunkserverId: "z"}})},
		{cmd(&fsmpb.AckGarbage{SliceIds: []uint64{1, 2, 3}})},
		{withReq(cmd(&fsmpb.Mkdir{Parent: 1, Name: "r"}), "c", "1"), withReq(cmd(&fsmpb.Mkdir{Parent: 1, Name: "r"}), "c", "1")},
	}
}

// FuzzApply feeds arbitrary bytes to Apply as a log entry: it must never
// panic or fail with anything but a per-command *Error, and the invariants
// must hold after.
func FuzzApply(f *testing.F) {
	for _, cmds := range fuzzSeeds() {
		for _, c := range cmds {
			if c.NowUnixNano == 0 {
				c.NowUnixNano = t0 + 1e9
			}
		}
		data, err := EncodeEntry(cmds...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := fuzzBase(t)
		res := d.raw(data) // fails the test on a non-*Error, checks invariants
		for _, r := range res {
			if r.Err != nil {
				if _, ok := r.Err.(*Error); !ok {
					t.Fatalf("result error %T: %v", r.Err, r.Err)
				}
			}
		}
		// Whatever happened, the state still serves reads.
		if _, _, err := d.f.ReadDir(RootInode, "", 0, true); err != nil {
			t.Fatal(err)
		}
	})
}
