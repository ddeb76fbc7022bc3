package fsm

import (
	"testing"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestWriteCarriesAttrs: attribute changes riding with a write apply
// after it, so an explicit mtime beats the writer's and the mode is
// masked as chmod masks it.
func TestWriteCarriesAttrs(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	const writerMtime = 5_000
	for _, tc := range []struct {
		name   string
		inline bool
		attrs  *masterpb.AttrUpdate
		want   func(*masterpb.Attr) bool
	}{
		{name: "none", attrs: nil, want: func(a *masterpb.Attr) bool {
			return a.Mode == 0o644 && a.MtimeUnixNano == writerMtime
		}},
		{name: "slice: all", attrs: &masterpb.AttrUpdate{
			Mode: u32(0o104755), Uid: u32(7), Gid: u32(8), AtimeUnixNano: i64(11), MtimeUnixNano: i64(12),
		}, want: func(a *masterpb.Attr) bool {
			return a.Mode == 0o4755 && a.Uid == 7 && a.Gid == 8 && a.AtimeUnixNano == 11 && a.MtimeUnixNano == 12
		}},
		{name: "inline: all", inline: true, attrs: &masterpb.AttrUpdate{
			Mode: u32(0o600), Uid: u32(7), Gid: u32(8), AtimeUnixNano: i64(11), MtimeUnixNano: i64(12),
		}, want: func(a *masterpb.Attr) bool {
			return a.Mode == 0o600 && a.Uid == 7 && a.Gid == 8 && a.AtimeUnixNano == 11 && a.MtimeUnixNano == 12
		}},
		{name: "mode only keeps the writer's mtime", attrs: &masterpb.AttrUpdate{Mode: u32(0o444)},
			want: func(a *masterpb.Attr) bool { return a.Mode == 0o444 && a.MtimeUnixNano == writerMtime && a.Uid == 0 }},
		{name: "inline: times only", inline: true, attrs: &masterpb.AttrUpdate{MtimeUnixNano: i64(99)},
			want: func(a *masterpb.Attr) bool { return a.Mode == 0o644 && a.MtimeUnixNano == 99 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, true)
			ino := d.mustDo(cmd(&fsmpb.Create{Parent: 1, Name: "f", Mode: 0o644})).Attr.Inode
			var res Result
			if tc.inline {
				res = d.do(cmd(&fsmpb.WriteInline{Inode: ino, Data: []byte("hello"), MtimeUnixNano: writerMtime, Attrs: tc.attrs}))
			} else {
				a := d.mustDo(d.allocate(ino, 100))
				res = d.do(cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: a.SliceID, Length: 100, MtimeUnixNano: writerMtime, Attrs: tc.attrs}))
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			got, err := d.f.GetAttr(ino)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(got) || !tc.want(res.Attr) {
				t.Fatalf("attr after the write %v, reply %v", got, res.Attr)
			}
			if got.Size == 0 {
				t.Fatalf("the write was lost: %v", got)
			}
		})
	}
}

// TestWriteCarriesXattrs: extended attributes riding with a write are set
// with it (created or replaced); bad ones fail the write, which then
// leaves the file as it was.
func TestWriteCarriesXattrs(t *testing.T) {
	for _, inline := range []bool{true, false} {
		t.Run(map[bool]string{true: "inline", false: "slice"}[inline], func(t *testing.T) {
			d := newDriver(t, true)
			ino := d.mustDo(cmd(&fsmpb.Create{Parent: 1, Name: "f", Mode: 0o644})).Attr.Inode
			d.mustDo(cmd(&fsmpb.SetXattr{Inode: ino, Name: "user.old", Value: []byte("1")}))
			write := func(x map[string][]byte) Result {
				after := &masterpb.AttrUpdate{Xattrs: x}
				if inline {
					return d.do(cmd(&fsmpb.WriteInline{Inode: ino, Data: []byte("hello"), Attrs: after}))
				}
				a := d.mustDo(d.allocate(ino, 100))
				return d.do(cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: a.SliceID, Length: 100, Attrs: after}))
			}
			for name, x := range map[string]map[string][]byte{
				"no name": {"": []byte("x")},
				"too big": {"user.big": make([]byte, MaxXattrValueLen+1)},
			} {
				if res := write(x); res.Err == nil {
					t.Fatalf("%s: accepted", name)
				}
			}
			if a, err := d.f.GetAttr(ino); err != nil || a.Size != 0 {
				t.Fatalf("a refused write changed the file: %v %v", a, err)
			}
			if res := write(map[string][]byte{"user.new": []byte("2"), "user.old": []byte("3")}); res.Err != nil {
				t.Fatal(res.Err)
			}
			for name, want := range map[string]string{"user.new": "2", "user.old": "3"} {
				if v, err := d.f.GetXattr(ino, name); err != nil || string(v) != want {
					t.Errorf("xattr %s = %q, %v; want %q", name, v, err, want)
				}
			}
		})
	}
}
