package fsm

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

func TestWriteInline(t *testing.T) {
	bs := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	size := func(n uint64) *uint64 { return &n }
	type step struct {
		write   *fsmpb.WriteInline // Inode filled in
		slice   [2]uint64          // off, len: commit a slice instead
		setSize *uint64
		wantErr syscall.Errno
	}
	for _, tc := range []struct {
		name       string
		steps      []step
		wantSize   uint64
		wantInline []byte
	}{
		{name: "new file", steps: []step{{write: &fsmpb.WriteInline{Data: bs(4096, 'a')}}},
			wantSize: 4096, wantInline: bs(4096, 'a')},
		{name: "overwrite and extend", steps: []step{
			{write: &fsmpb.WriteInline{Data: bs(100, 'a')}},
			{write: &fsmpb.WriteInline{Offset: 50, Data: bs(100, 'b')}},
		}, wantSize: 150, wantInline: append(bs(50, 'a'), bs(100, 'b')...)},
		{name: "gap reads as zeros", steps: []step{
			{write: &fsmpb.WriteInline{Data: bs(10, 'a')}},
			{write: &fsmpb.WriteInline{Offset: 20, Data: bs(10, 'b')}},
		}, wantSize: 30, wantInline: append(append(bs(10, 'a'), bs(10, 0)...), bs(10, 'b')...)},
		{name: "past the limit", steps: []step{
			{write: &fsmpb.WriteInline{Offset: InlineMax - 10, Data: bs(11, 'a')}, wantErr: syscall.E2BIG},
		}},
		{name: "empty", steps: []step{{write: &fsmpb.WriteInline{}, wantErr: syscall.EINVAL}}},
		{name: "after a slice", steps: []step{
			{slice: [2]uint64{0, 100}},
			{write: &fsmpb.WriteInline{Data: bs(10, 'a')}, wantErr: syscall.ENOTSUP},
		}, wantSize: 100},
		{name: "slice on top keeps the layer", steps: []step{
			{write: &fsmpb.WriteInline{Data: bs(100, 'a')}},
			{slice: [2]uint64{50, 1000}},
		}, wantSize: 1050, wantInline: bs(100, 'a')},
		{name: "truncate trims, extend keeps", steps: []step{
			{write: &fsmpb.WriteInline{Data: bs(100, 'a')}},
			{setSize: size(40)},
			{setSize: size(5000)},
		}, wantSize: 5000, wantInline: bs(40, 'a')},
		{name: "truncate to zero drops", steps: []step{
			{write: &fsmpb.WriteInline{Data: bs(100, 'a')}},
			{setSize: size(0)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, true)
			ino := d.mustDo(cmd(&fsmpb.Create{Parent: 1, Name: "f", Mode: 0o644})).Attr.Inode
			for i, st := range tc.steps {
				var res Result
				switch {
				case st.write != nil:
					st.write.Inode = ino
					res = d.do(cmd(st.write))
				case st.setSize != nil:
					res = d.do(cmd(&fsmpb.SetAttr{Inode: ino, Size: st.setSize}))
				default:
					res, _ = d.write(ino, st.slice[0], st.slice[1])
				}
				if errno(res.Err) != st.wantErr {
					t.Fatalf("step %d: %v, want errno %v", i, res.Err, st.wantErr)
				}
			}
			attr, _, inline, err := d.f.GetLayout(ino, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if attr.Size != tc.wantSize || !bytes.Equal(inline, tc.wantInline) {
				t.Fatalf("size %d, inline %q; want %d, %q", attr.Size, inline, tc.wantSize, tc.wantInline)
			}
		})
	}
}

// TestInlineGoesWithTheFile: unlinking a file drops its inline bytes
// (Verify, run after every entry, finds leftovers), and Concat refuses a
// source whose bytes are inline.
func TestInlineGoesWithTheFile(t *testing.T) {
	d := newDriver(t, true)
	ino := d.mustDo(cmd(&fsmpb.Create{Parent: 1, Name: "f", Mode: 0o644})).Attr.Inode
	d.mustDo(cmd(&fsmpb.WriteInline{Inode: ino, Data: []byte("hello")}))
	res := d.do(cmd(&fsmpb.Concat{Dst: &fsmpb.EntryName{Parent: 1, Name: "all"}, Srcs: []*fsmpb.EntryName{{Parent: 1, Name: "f"}}, Mode: 0o644}))
	if errno(res.Err) != syscall.EINVAL {
		t.Fatalf("concat of an inline source: %v", res.Err)
	}
	d.mustDo(cmd(&fsmpb.Unlink{Parent: 1, Name: "f"}))
	if _, err := d.f.GetAttr(ino); errno(err) != syscall.ENOENT {
		t.Fatalf("unlinked inode: %v", err)
	}
}
