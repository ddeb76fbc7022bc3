package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/master"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// fileRefs returns the slice refs of file p as the master lists them.
func fileRefs(t *testing.T, cl *client.Client, p string) []*masterpb.SliceRef {
	t.Helper()
	ctx := context.Background()
	fi, err := cl.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var refs []*masterpb.SliceRef
	err = cl.Conn().Do(ctx, func(ctx context.Context, mc masterpb.MasterClient) error {
		res, err := mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: fi.Inode()})
		if err == nil {
			refs = res.Slices
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

// createSynced creates p with data committed as one slice and returns it
// open: the base that random writes then fragment.
func createSynced(t *testing.T, cl *client.Client, p string, data []byte) *client.File {
	t.Helper()
	f, err := cl.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return f
}

// randomWrites makes n random writes of up to 64 KiB within the first
// span bytes of f, each committed as its own slice, and applies them to
// model.
func randomWrites(t *testing.T, f *client.File, model []byte, rng *rand.Rand, n, span int) {
	t.Helper()
	for range n {
		size := 1 + rng.IntN(64<<10)
		off := rng.IntN(span - size)
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
}

// TestCompaction fragments a file with random writes until it has 100
// slices; a client that compacts in the background brings it back to one
// slice with the same bytes, and GC then deletes every replaced slice's
// shards. Writes made after the compacting client joined are kept (the
// master holds the chunk back until they stop; a swap racing newer
// writes is fsm's TestCompactChunk "writes since stay on top"), and a
// reader opened before the compaction still reads the file after the
// slices it knew were deleted.
func TestCompaction(t *testing.T) {
	c := startRepair(t, 6, func(cfg *cluster.Config) {
		cfg.Compaction = master.CompactionConfig{Quiet: 500 * time.Millisecond}
	})
	ctx := context.Background()
	writer := dial(t, c)
	const size = 6 << 20
	rng := rand.New(rand.NewPCG(7, 11))
	model := make([]byte, size)
	for i := range model {
		model[i] = byte(rng.Uint32())
	}
	f := createSynced(t, writer, "/frag", model)
	defer f.Close()
	randomWrites(t, f, model, rng, 99, size)
	if refs := fileRefs(t, writer, "/frag"); len(refs) != 100 {
		t.Fatalf("%d slice refs after 100 writes, want 100", len(refs))
	}
	if st, err := writer.Status(ctx); err != nil || st.FragmentedChunks != 1 {
		t.Fatalf("status: %d chunks to compact, %v; want 1", st.GetFragmentedChunks(), err)
	}
	old, err := writer.Open(ctx, "/frag")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := old.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}

	compactor, err := client.Dial(ctx, client.ClientConfig{
		Masters: c.MasterAddrs(), IOTimeout: 30 * time.Second, Compaction: true, CompactionPoll: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer compactor.Close()
	// Keep writing after the compactor joined: the chunk is handed out
	// once these stop, and the compacted slice must include them.
	randomWrites(t, f, model, rng, 30, size)

	var sliceID uint64
	waitFor(t, 60*time.Second, "compaction to one slice", func() (bool, string) {
		refs := fileRefs(t, writer, "/frag")
		if len(refs) == 1 {
			sliceID = refs[0].SliceId
		}
		return len(refs) == 1, fmt.Sprintf("%d refs", len(refs))
	})
	checkFiles(t, writer, map[string][]byte{"/frag": model})
	if st, err := writer.Status(ctx); err != nil || st.FragmentedChunks != 0 {
		t.Fatalf("status after compaction: %d chunks to compact, %v", st.GetFragmentedChunks(), err)
	}
	// Every other slice's shards go: only the compacted slice's remain.
	waitFor(t, 60*time.Second, "garbage collection of replaced slices", func() (bool, string) {
		var others int
		for _, cs := range c.Chunkservers() {
			for _, sh := range storedShards(t, cs.Addr) {
				if sh.GetShard().GetSliceId() != sliceID {
					others++
				}
			}
		}
		return others == 0, fmt.Sprintf("%d shards of replaced slices left", others)
	})
	got := make([]byte, size)
	if n, err := old.ReadAt(got, 0); n != size || err != nil {
		t.Fatalf("reader opened before compaction: read %d bytes: %v", n, err)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("reader opened before compaction reads other bytes")
	}
	waitHealthy(t, writer, "/")
}

// TestCompactNow: Client.Compact (dfs compact) rewrites a chunk with a
// few slices at once, below the threshold the master lists chunks at.
func TestCompactNow(t *testing.T) {
	c := startRepair(t, 6, nil)
	ctx := context.Background()
	cl := dial(t, c)
	rng := rand.New(rand.NewPCG(3, 5))
	model := make([]byte, 1<<20)
	f := createSynced(t, cl, "/few", model)
	defer f.Close()
	randomWrites(t, f, model, rng, 4, len(model))
	if refs := fileRefs(t, cl, "/few"); len(refs) != 5 {
		t.Fatalf("%d refs, want 5", len(refs))
	}
	n, err := cl.Compact(ctx, "/few")
	if err != nil || n != 1 {
		t.Fatalf("Compact: %d chunks, %v", n, err)
	}
	if refs := fileRefs(t, cl, "/few"); len(refs) != 1 {
		t.Fatalf("%d refs after Compact, want 1", len(refs))
	}
	checkFiles(t, cl, map[string][]byte{"/few": model})
}

// TestCompactionPacked: random writes buffered and committed at Close go
// to one packed slice, placed by an extent per run in two chunks; the
// background compactor rewrites each chunk as one slice, and GC then
// deletes the packed slice's shards, which only the last chunk's
// compaction frees.
func TestCompactionPacked(t *testing.T) {
	c := startRepair(t, 6, func(cfg *cluster.Config) {
		cfg.Compaction = master.CompactionConfig{Quiet: 300 * time.Millisecond}
	})
	ctx := context.Background()
	cl := dial(t, c)
	const chunk, span = 64 << 20, 1 << 20
	rng := rand.New(rand.NewPCG(13, 17))
	model := make([]byte, chunk+span)
	for _, base := range []int{0, chunk} {
		for i := base; i < base+span; i++ {
			model[i] = byte(rng.Uint32())
		}
	}
	f, err := cl.Create(ctx, "/packed")
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []int{0, chunk} {
		if _, err := f.WriteAt(model[base:base+span], int64(base)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		base := (i % 2) * chunk
		off := base + rng.IntN(span-4096)
		p := make([]byte, 4096)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	refs := fileRefs(t, cl, "/packed")
	ids := map[uint64]bool{}
	perChunk := map[uint64]int{}
	for _, r := range refs {
		ids[r.SliceId] = true
		perChunk[r.FileOffset/chunk]++
	}
	if len(ids) != 3 || perChunk[0] < 16 || perChunk[1] < 16 {
		t.Fatalf("%d slices, refs per chunk %v; want the two bases and one packed slice, and both chunks fragmented", len(ids), perChunk)
	}
	checkFiles(t, cl, map[string][]byte{"/packed": model})

	compactor, err := client.Dial(ctx, client.ClientConfig{
		Masters: c.MasterAddrs(), IOTimeout: 30 * time.Second, Compaction: true, CompactionPoll: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer compactor.Close()
	kept := map[uint64]bool{}
	waitFor(t, 60*time.Second, "compaction of both chunks", func() (bool, string) {
		refs := fileRefs(t, cl, "/packed")
		clear(kept)
		for _, r := range refs {
			kept[r.SliceId] = true
		}
		return len(refs) == 2, fmt.Sprintf("%d refs", len(refs))
	})
	checkFiles(t, cl, map[string][]byte{"/packed": model})
	waitFor(t, 60*time.Second, "garbage collection of the bases and the packed slice", func() (bool, string) {
		var others int
		for _, cs := range c.Chunkservers() {
			for _, sh := range storedShards(t, cs.Addr) {
				if !kept[sh.GetShard().GetSliceId()] {
					others++
				}
			}
		}
		return others == 0, fmt.Sprintf("%d shards of replaced slices left", others)
	})
	waitHealthy(t, cl, "/")
}

// TestCompactionReadOnlyHandle: a chunk of a file open only for reading
// is compacted once quiet, as if closed: a reader adds no slices. (A
// handle that may write makes it wait; see master's TestCompactClaims.)
func TestCompactionReadOnlyHandle(t *testing.T) {
	c := startRepair(t, 6, func(cfg *cluster.Config) {
		cfg.Compaction = master.CompactionConfig{Quiet: 500 * time.Millisecond}
	})
	ctx := context.Background()
	cl := dial(t, c)
	rng := rand.New(rand.NewPCG(13, 17))
	model := make([]byte, 1<<20)
	f := createSynced(t, cl, "/read", model)
	randomWrites(t, f, model, rng, 40, len(model))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := cl.Stat(ctx, "/read")
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := cl.Inodes().Open(ctx, st.Inode(), os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	compactor, err := client.Dial(ctx, client.ClientConfig{
		Masters: c.MasterAddrs(), IOTimeout: 30 * time.Second, Compaction: true, CompactionPoll: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer compactor.Close()
	waitFor(t, 60*time.Second, "compaction of the file open for reading", func() (bool, string) {
		refs := fileRefs(t, cl, "/read")
		return len(refs) == 1, fmt.Sprintf("%d refs", len(refs))
	})
	checkFiles(t, cl, map[string][]byte{"/read": model})
}
