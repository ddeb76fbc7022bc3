package cluster_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/cairnfs/cairn/client"
)

// TestInlineFiles: a file of a few KiB lives in the namespace, not on
// chunkservers, and reads back even with every chunkserver down; fsck
// says it has no shards. Growing it past the inline limit puts the new
// bytes in a slice over the inline ones, and the whole file reads back.
func TestInlineFiles(t *testing.T) {
	c := startRepair(t, 3, nil)
	ctx := context.Background()
	cl := dial(t, c)
	small := bytes.Repeat([]byte("inline "), 4096/7)
	writeFile(t, cl, "/small", small)
	grown := bytes.Repeat([]byte{'g'}, 3000)
	writeFile(t, cl, "/grown", grown)

	stored := 0
	for _, cs := range c.Chunkservers() {
		stored += len(storedShards(t, cs.Addr))
	}
	if stored != 0 {
		t.Fatalf("%d shards stored for two small files", stored)
	}
	rs := fsck(t, cl, "/small")
	if len(rs) != 1 || !rs[0].NoShards || unhealthy(rs) != "" {
		t.Fatalf("fsck of an inline file: %v", rs)
	}

	// Append past the limit: a slice on top of the inline bytes.
	f, err := cl.OpenFile(ctx, "/grown", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	tail := bytes.Repeat([]byte{'t'}, client.DefaultInlineMax)
	if _, err := f.WriteAt(tail, int64(len(grown))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	grown = append(grown, tail...)
	// A small write into a file that has slices: the master refuses it
	// inline, and it lands as a slice on top.
	f, err = cl.OpenFile(ctx, "/grown", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("head"), 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	copy(grown[10:], "head")
	checkFiles(t, cl, map[string][]byte{"/small": small, "/grown": grown})
	if rs := fsck(t, cl, "/grown"); len(rs) != 1 || rs[0].NoShards || unhealthy(rs) != "" {
		t.Fatalf("fsck of a grown file: %v", rs)
	}

	for i := range c.Chunkservers() {
		if err := c.KillChunkserver(i); err != nil {
			t.Fatal(err)
		}
	}
	checkFiles(t, cl, map[string][]byte{"/small": small})
}
