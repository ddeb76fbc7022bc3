package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestPackedRunsOnCluster writes a chunk as four full commits of
// one-byte runs, every fourth byte in each, through a real master: the
// chunk then holds four times MaxCommitExtents refs, a layout answer of
// several MiB, and the file must still read back.
func TestPackedRunsOnCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: t.TempDir(), Masters: 1, Chunkservers: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	const runs = masterpb.MaxCommitExtents
	f, err := cl.Create(ctx, "/packed")
	if err != nil {
		t.Fatal(err)
	}
	const passes = 4
	want := make([]byte, passes*runs)
	for pass := range passes {
		for i := range runs {
			off := passes*i + pass
			want[off] = byte(i*7 + pass)
			if _, err := f.WriteAt(want[off:off+1], int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := cl.Open(ctx, "/packed")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, off := range []int{0, 4097, len(want) - 4096} {
		got := make([]byte, 4096)
		if _, err := r.ReadAt(got, int64(off)); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		for j := range got {
			if got[j] != want[off+j] {
				t.Fatalf("byte %d is %d, want %d", off+j, got[j], want[off+j])
			}
		}
	}
}
