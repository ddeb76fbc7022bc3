package fsm

import (
	"syscall"
	"testing"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// chunkRefs returns chunk idx of ino's refs as GetLayout lists them,
// converted back to chunk terms, as a compacting client sends them.
func chunkRefs(t *testing.T, f *FSM, ino, idx uint64) []*fsmpb.ChunkRef {
	t.Helper()
	_, refs, _, err := f.GetLayout(ino, idx*ChunkSize, ChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*fsmpb.ChunkRef, len(refs))
	for i, r := range refs {
		out[i] = &fsmpb.ChunkRef{SliceId: r.SliceId, ChunkOffset: uint32(r.FileOffset - idx*ChunkSize), SliceOffset: r.SliceOffset, Length: uint32(r.Length)}
	}
	return out
}

// fragmentedFile creates /f with writes small random writes in chunk 0
// (over a 1 MiB base) and one slice in chunk 1.
func fragmentedFile(t *testing.T, d *driver, writes int) uint64 {
	t.Helper()
	ino := d.mustDo(cmd(&fsmpb.Create{Parent: 1, Name: "f", Mode: 0o644})).Attr.Inode
	if r, _ := d.write(ino, 0, 1<<20); r.Err != nil {
		t.Fatal(r.Err)
	}
	for i := range writes - 1 {
		if r, _ := d.write(ino, uint64(i*37%250)*4096, 4096); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if r, _ := d.write(ino, ChunkSize, 4096); r.Err != nil {
		t.Fatal(r.Err)
	}
	return ino
}

func TestFragmentedIndex(t *testing.T) {
	d := newDriver(t, true)
	ino := fragmentedFile(t, d, FragmentedRefs-1)
	if fr, err := d.f.ListFragmented(0, 0, 0); err != nil || len(fr) != 0 {
		t.Fatalf("%d refs: listed %v, %v", FragmentedRefs-1, fr, err)
	}
	d.write(ino, 8192, 4096)
	fr, err := d.f.ListFragmented(0, 0, 0)
	if err != nil || len(fr) != 1 || fr[0] != (Fragmented{Inode: ino, Chunk: 0, Refs: FragmentedRefs, ChangedUnixNano: d.now - 1e9}) {
		t.Fatalf("listed %+v, %v", fr, err)
	}
	if more, err := d.f.ListFragmented(ino, 0, 0); err != nil || len(more) != 0 {
		t.Fatalf("after the only entry: %v, %v", more, err)
	}
	// Truncating below the refs drops the entry (Verify checks the index
	// after every entry too).
	size := uint64(4096)
	d.mustDo(cmd(&fsmpb.SetAttr{Inode: ino, Size: &size}))
	if fr, _ := d.f.ListFragmented(0, 0, 0); len(fr) != 0 {
		t.Fatalf("after truncate: %+v", fr)
	}
}

func TestCompactChunk(t *testing.T) {
	const writes = 20
	for _, tc := range []struct {
		name string
		// between runs after the refs are read, before the compaction.
		between   func(d *driver, ino uint64)
		cover     func(lo, hi uint64) (off, length uint64)
		wantErr   syscall.Errno
		wantAfter int // refs in chunk 0 afterwards
	}{
		{name: "whole chunk", wantAfter: 1},
		{name: "writes since stay on top", wantAfter: 3, between: func(d *driver, ino uint64) {
			d.write(ino, 4096, 100)
			d.write(ino, 1<<19, 100)
		}},
		{name: "truncated since", wantErr: syscall.EAGAIN, between: func(d *driver, ino uint64) {
			size := uint64(1 << 19)
			d.mustDo(cmd(&fsmpb.SetAttr{Inode: ino, Size: &size}))
		}},
		{name: "extended since", wantAfter: 1, between: func(d *driver, ino uint64) {
			size := uint64(ChunkSize * 3)
			d.mustDo(cmd(&fsmpb.SetAttr{Inode: ino, Size: &size}))
		}},
		{name: "rewritten by rename over it", wantErr: syscall.ENOENT, between: func(d *driver, ino uint64) {
			d.mustDo(cmd(&fsmpb.Create{Parent: 1, Name: "g", Mode: 0o644}))
			d.mustDo(cmd(&fsmpb.Rename{OldParent: 1, OldName: "g", NewParent: 1, NewName: "f"}))
		}},
		{name: "does not cover", wantErr: syscall.EINVAL, cover: func(lo, hi uint64) (uint64, uint64) { return lo + 1, hi - lo - 1 }},
		{name: "wider than needed", wantAfter: 1, cover: func(lo, hi uint64) (uint64, uint64) { return 0, 2 << 20 }},
		{name: "beyond the size", wantErr: syscall.EAGAIN, cover: func(lo, hi uint64) (uint64, uint64) { return 0, 2 << 20 },
			between: func(d *driver, ino uint64) {
				// Chunk 0's refs all lie below 1 MiB: they stay as they are.
				size := uint64(1 << 20)
				d.mustDo(cmd(&fsmpb.SetAttr{Inode: ino, Size: &size}))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, true)
			ino := fragmentedFile(t, d, writes)
			before, err := d.f.GetAttr(ino)
			if err != nil {
				t.Fatal(err)
			}
			refs := chunkRefs(t, d.f, ino, 0)
			if len(refs) != writes {
				t.Fatalf("%d refs, want %d", len(refs), writes)
			}
			lo, hi := uint64(ChunkSize), uint64(0)
			for _, r := range refs {
				lo, hi = min(lo, uint64(r.ChunkOffset)), max(hi, uint64(r.ChunkOffset)+uint64(r.Length))
			}
			off, length := lo, hi-lo
			if tc.cover != nil {
				off, length = tc.cover(lo, hi)
			}
			a := d.mustDo(d.allocate(ino, length))
			if tc.between != nil {
				tc.between(d, ino)
			}
			stats, _ := d.f.StatFS()
			garbage := stats.GarbageSlices
			res := d.do(cmd(&fsmpb.CompactChunk{Inode: ino, Chunk: 0, Replaced: refs, SliceId: a.SliceID, ChunkOffset: uint32(off), Length: length}))
			if errno(res.Err) != tc.wantErr {
				t.Fatalf("compact: %v, want errno %v", res.Err, tc.wantErr)
			}
			if tc.wantErr != 0 {
				return
			}
			after := chunkRefs(t, d.f, ino, 0)
			if len(after) != tc.wantAfter || after[0].SliceId != a.SliceID || after[0].ChunkOffset != uint32(off) || uint64(after[0].Length) != length {
				t.Fatalf("refs after: %v", after)
			}
			attr, _ := d.f.GetAttr(ino)
			if tc.between == nil && (attr.Size != before.Size || attr.MtimeUnixNano != before.MtimeUnixNano || attr.CtimeUnixNano != before.CtimeUnixNano || attr.Version <= before.Version) {
				t.Errorf("attributes %v -> %v: want size and times kept, version moved", before, attr)
			}
			stats, _ = d.f.StatFS()
			// Every replaced slice was referenced by chunk 0 only.
			if got := stats.GarbageSlices - garbage; got != writes {
				t.Errorf("%d slices became garbage, want %d", got, writes)
			}
			if fr, _ := d.f.ListFragmented(0, 0, 0); len(fr) != 0 {
				t.Errorf("still listed: %+v", fr)
			}
		})
	}
}

// TestCompactChunkRetry: a retried compaction (same request ID) answers
// as the first did and changes nothing more.
func TestCompactChunkRetry(t *testing.T) {
	d := newDriver(t, true)
	ino := fragmentedFile(t, d, 20)
	refs := chunkRefs(t, d.f, ino, 0)
	a := d.mustDo(d.allocate(ino, 1<<20))
	c := func() *fsmpb.Command {
		return withReq(cmd(&fsmpb.CompactChunk{Inode: ino, Chunk: 0, Replaced: refs, SliceId: a.SliceID, Length: 1 << 20}), "c1", "r1")
	}
	first := d.mustDo(c())
	again := d.mustDo(c())
	if again.SliceID != first.SliceID || again.Attr.Version != first.Attr.Version {
		t.Fatalf("retry answered %+v, first %+v", again, first)
	}
	if len(chunkRefs(t, d.f, ino, 0)) != 1 {
		t.Fatal("retry changed the chunk")
	}
}

// TestChunkBytes: a chunk's refs' bytes, and the main slice's share;
// refs overlap (the newest wins at read), so writes over the main slice
// add to the total.
func TestChunkBytes(t *testing.T) {
	d := newDriver(t, true)
	ino := fragmentedFile(t, d, 20) // 19 distinct 4 KiB writes over 1 MiB
	for _, tc := range []struct {
		idx         uint64
		total, main uint64
	}{
		{0, 1<<20 + 19*4096, 1 << 20},
		{1, 4096, 4096},
		{2, 0, 0},
	} {
		total, main, err := d.f.ChunkBytes(ino, tc.idx)
		if err != nil || total != tc.total || main != tc.main {
			t.Errorf("chunk %d: %d, %d, %v; want %d, %d", tc.idx, total, main, err, tc.total, tc.main)
		}
	}
}

// TestCommitCostFlat: a commit into a chunk writes one ref, however many
// the chunk has, so its bytes in Pebble's log stay flat as random writes
// fragment the chunk (they grew with the list when a commit rewrote it).
func TestCommitCostFlat(t *testing.T) {
	d := newDriver(t, false)
	ino := fragmentedFile(t, d, 20)
	walBytes := func() uint64 { return d.f.db.Metrics().WAL.BytesIn }
	commitCost := func() uint64 {
		before := walBytes()
		d.write(ino, 12345*4096%(1<<20), 4096)
		return walBytes() - before
	}
	early := commitCost()
	for i := range 2000 {
		if r, _ := d.write(ino, uint64(i*7919%256)*4096, 4096); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	late := commitCost()
	if late > 2*early {
		t.Fatalf("an allocate and commit cost %d log bytes at 20 refs and %d at 2000", early, late)
	}
	// The list reads back whole: every ref, the last one last.
	refs := chunkRefs(t, d.f, ino, 0)
	if len(refs) < 2000 {
		t.Fatalf("chunk 0 lists %d refs after 2000 more writes", len(refs))
	}
}
