package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestResultDirs: a command that changes directory entries returns the
// changed directories' attributes exactly as a getattr right after it
// reads them, so a client may take them instead of asking; a removed
// directory and a failed command return none.
func TestResultDirs(t *testing.T) {
	d := newDriver(t, true)
	a := d.mustDo(cmd(&fsmpb.Mkdir{Parent: 1, Name: "a", Mode: 0o755})).Attr.Inode
	b := d.mustDo(cmd(&fsmpb.Mkdir{Parent: 1, Name: "b", Mode: 0o755})).Attr.Inode
	f := d.mustDo(cmd(&fsmpb.Create{Parent: a, Name: "f", Mode: 0o644})).Attr.Inode
	d.mustDo(cmd(&fsmpb.Mkdir{Parent: a, Name: "gone", Mode: 0o755}))
	for _, tc := range []struct {
		name string
		c    *fsmpb.Command
		want []uint64
	}{
		{"mkdir", cmd(&fsmpb.Mkdir{Parent: a, Name: "sub", Mode: 0o755}), []uint64{a}},
		{"create", cmd(&fsmpb.Create{Parent: b, Name: "g", Mode: 0o644}), []uint64{b}},
		{"create existing", cmd(&fsmpb.Create{Parent: b, Name: "g", Mode: 0o644}), nil},
		{"mknod", cmd(&fsmpb.Mknod{Parent: a, Name: "fifo", Type: masterpb.FileType_FILE_TYPE_FIFO, Mode: 0o644}), []uint64{a}},
		{"symlink", cmd(&fsmpb.Symlink{Parent: 1, Name: "l", Target: "a/f"}), []uint64{1}},
		{"link", cmd(&fsmpb.Link{Inode: f, NewParent: b, NewName: "f2"}), []uint64{b}},
		{"rename across", cmd(&fsmpb.Rename{OldParent: a, OldName: "f", NewParent: b, NewName: "f3"}), []uint64{a, b}},
		{"rename within", cmd(&fsmpb.Rename{OldParent: b, OldName: "f3", NewParent: b, NewName: "f4"}), []uint64{b}},
		{"unlink", cmd(&fsmpb.Unlink{Parent: b, Name: "f2"}), []uint64{b}},
		{"rmdir", cmd(&fsmpb.Rmdir{Parent: a, Name: "gone"}), []uint64{a}},
		{"failed", cmd(&fsmpb.Rmdir{Parent: a, Name: "nothing"}), nil},
		{"setattr", cmd(&fsmpb.SetAttr{Inode: a, Mode: proto.Uint32(0o700)}), nil},
	} {
		res := d.do(tc.c)
		if (res.Err != nil) != (tc.name == "failed") {
			t.Fatalf("%s: %v", tc.name, res.Err)
		}
		if len(res.Dirs) != len(tc.want) {
			t.Fatalf("%s: %d dirs %v, want %v", tc.name, len(res.Dirs), res.Dirs, tc.want)
		}
		for i, got := range res.Dirs {
			if got.Inode != tc.want[i] {
				t.Fatalf("%s: dir %d is inode %d, want %d", tc.name, i, got.Inode, tc.want[i])
			}
			now, err := d.f.GetAttr(got.Inode)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, now) {
				t.Errorf("%s: returned %v, getattr reads %v", tc.name, got, now)
			}
		}
	}
}
