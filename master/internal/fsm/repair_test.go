package fsm

import (
	"slices"
	"syscall"
	"testing"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

func moveCmd(slice uint64, index uint32, to, from string) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_MoveShard{MoveShard: &fsmpb.MoveShard{
		SliceId: slice, From: from,
		Shard: &masterpb.ShardLocation{Index: index, ChunkserverId: to, Address: to + ":1"},
	}}}
}

func drainCmd(id string, on bool) *fsmpb.Command {
	return &fsmpb.Command{Op: &fsmpb.Command_SetDrain{SetDrain: &fsmpb.SetDrain{ChunkserverId: id, Draining: on}}}
}

func TestMoveShard(t *testing.T) {
	d := newDriver(t, true)
	ino := d.mustDo(cmd(&fsmpb.Create{Parent: RootInode, Name: "f", Mode: 0o644})).Attr.Inode
	pending := d.mustDo(d.allocate(ino, 100)).SliceID
	_, id := d.write(ino, 0, 100)

	tests := []struct {
		name  string
		cmd   *fsmpb.Command
		errno syscall.Errno
		want  string // chunkserver of shard 1 afterwards
	}{
		{"pending slice", moveCmd(pending, 1, "cs-9", "cs-1"), syscall.EINVAL, "cs-1"},
		{"missing slice", moveCmd(999, 1, "cs-9", "cs-1"), syscall.ENOENT, "cs-1"},
		{"index out of range", moveCmd(id, 3, "cs-9", "cs-1"), syscall.EINVAL, "cs-1"},
		{"onto a holder of another shard", moveCmd(id, 1, "cs-2", "cs-1"), syscall.EINVAL, "cs-1"},
		{"stale from", moveCmd(id, 1, "cs-9", "cs-7"), syscall.ESTALE, "cs-1"},
		{"moves", moveCmd(id, 1, "cs-9", "cs-1"), 0, "cs-9"},
		{"replayed order is stale", moveCmd(id, 1, "cs-8", "cs-1"), syscall.ESTALE, "cs-9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := d.do(tc.cmd)
			if got := errno(r.Err); got != tc.errno {
				t.Fatalf("errno %v, want %v (%v)", got, tc.errno, r.Err)
			}
			s, err := d.f.GetSlice(id)
			if err != nil {
				t.Fatal(err)
			}
			for _, sh := range s.Shards {
				if sh.Index == 1 && sh.ChunkserverId != tc.want {
					t.Fatalf("shard 1 on %s, want %s", sh.ChunkserverId, tc.want)
				}
			}
		})
	}
}

func TestMoveShardFillsMissingIndex(t *testing.T) {
	d := newDriver(t, true)
	ino := d.mustDo(cmd(&fsmpb.Create{Parent: RootInode, Name: "f", Mode: 0o644})).Attr.Inode
	a := d.mustDo(d.allocate(ino, 100)).SliceID
	// Committed with two of three copies.
	d.mustDo(cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: a, Length: 100, Shards: shardsFor(rep3)[:2]}))
	if r := d.do(moveCmd(a, 2, "cs-5", "cs-2")); errno(r.Err) != syscall.ESTALE {
		t.Fatalf("move from a server never recorded: %v", r.Err)
	}
	d.mustDo(moveCmd(a, 2, "cs-5", ""))
	s, err := d.f.GetSlice(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Shards) != 3 || s.Shards[2].ChunkserverId != "cs-5" || s.Shards[2].Address == "" {
		t.Fatalf("shards after filling index 2: %v", s.Shards)
	}
}

func TestSetDrain(t *testing.T) {
	d := newDriver(t, true)
	d.mustDo(drainCmd("cs-2", true))
	d.mustDo(drainCmd("cs-1", true))
	d.mustDo(drainCmd("cs-1", true))
	if r := d.do(drainCmd("", true)); errno(r.Err) != syscall.EINVAL {
		t.Fatalf("empty ID: %v", r.Err)
	}
	got, err := d.f.Drains()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"cs-1", "cs-2"}) {
		t.Fatalf("drains %v", got)
	}
	d.mustDo(drainCmd("cs-1", false))
	got, _ = d.f.Drains()
	if !slices.Equal(got, []string{"cs-2"}) {
		t.Fatalf("drains after undrain %v", got)
	}
}

func TestListSlices(t *testing.T) {
	d := newDriver(t, true)
	ino := d.mustDo(cmd(&fsmpb.Create{Parent: RootInode, Name: "f", Mode: 0o644})).Attr.Inode
	var ids []uint64
	for i := range 5 {
		_, id := d.write(ino, uint64(i)*100, 100)
		ids = append(ids, id)
	}
	var got []uint64
	for after := uint64(0); ; {
		page, err := d.f.ListSlices(after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, s := range page {
			got = append(got, s.Id)
		}
		after = page[len(page)-1].Id
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("listed %v, want %v", got, ids)
	}
}

func TestChunkserverDirectory(t *testing.T) {
	d := newDriver(t, true)
	set := func(id, addr string, remove bool) Result {
		return d.do(&fsmpb.Command{Op: &fsmpb.Command_SetChunkserver{SetChunkserver: &fsmpb.SetChunkserver{Id: id, Address: addr, Remove: remove}}})
	}
	for _, r := range []Result{set("cs-2", "b:1", false), set("cs-1", "a:1", false), set("cs-1", "a:2", false)} {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r := set("", "x", false); errno(r.Err) != syscall.EINVAL {
		t.Fatalf("empty ID: %v", r.Err)
	}
	got, err := d.f.Chunkservers()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Id != "cs-1" || got[0].Address != "a:2" || got[1].Id != "cs-2" {
		t.Fatalf("directory %v", got)
	}
	set("cs-1", "", true)
	if got, _ = d.f.Chunkservers(); len(got) != 1 || got[0].Id != "cs-2" {
		t.Fatalf("directory after removal %v", got)
	}
}
