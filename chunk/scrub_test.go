package chunk

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/cairnfs/cairn/proto/chunkpb"
)

// corruptLargestCellsFile flips bytes in the middle of the largest file in
// dir's shards directory, where large shards' cells live.
func corruptLargestCellsFile(t *testing.T, dir string) {
	t.Helper()
	var path string
	var size int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && filepath.Base(filepath.Dir(p)) == "shards" && fi.Mode().IsRegular() && fi.Size() > size {
			path, size = p, fi.Size()
		}
		return nil
	})
	if path == "" {
		t.Fatal("no cells file to corrupt")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 16)
	if _, err := f.ReadAt(buf, size/2); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0x5a
	}
	if _, err := f.WriteAt(buf, size/2); err != nil {
		t.Fatal(err)
	}
}

func TestScrubFindsCorruption(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(9, 9))
	big := &chunkpb.ShardID{SliceId: 5, Index: 1}
	small := &chunkpb.ShardID{SliceId: 6, Index: 0}

	h := start(t, func(c *Config) { c.Dir = dir })
	bigData := randBytes(r, 4<<20)
	if _, err := h.write(big, bigData, 64<<10, h.writeToken(big, 4<<20), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.write(small, randBytes(r, 3000), 4096, h.writeToken(small, 3000), nil); err != nil {
		t.Fatal(err)
	}
	h.stop()
	corruptLargestCellsFile(t, dir)

	var mu sync.Mutex
	reported := map[string]int{}
	h = start(t, func(c *Config) {
		c.Dir = dir
		c.ScrubBytesPerSecond = 1 << 30
		c.ScrubInterval = 20 * time.Millisecond
		c.OnCorrupt = func(ids []*chunkpb.ShardID) {
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				reported[shardName(id)]++
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for gaugeValue(h.srv, "cairn_chunk_scrub_passes_total") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if gaugeValue(h.srv, "cairn_chunk_scrub_passes_total") < 2 {
		t.Fatal("the scrubber did not finish two passes")
	}
	mu.Lock()
	got := len(reported)
	bigReports, smallReports := reported[shardName(big)], reported[shardName(small)]
	mu.Unlock()
	if bigReports == 0 || smallReports != 0 || got != 1 {
		t.Fatalf("scrubber reported %v; want only %s", reported, shardName(big))
	}
	if v := gaugeValue(h.srv, "cairn_chunk_scrub_corrupt_shards_total"); v < 1 {
		t.Errorf("scrub_corrupt_shards_total = %v", v)
	}
	// A reader of the corrupt shard gets an error (DataLoss from the store,
	// or a checksum failure when it verifies), never wrong bytes.
	got2, err := h.read(big, 0, 0)
	if err == nil {
		t.Fatalf("read of a corrupt shard succeeded (%d bytes)", len(got2))
	}
	if c := codeOf(err); c != codes.DataLoss && !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("read of a corrupt shard: %v", err)
	}
	if _, err := h.read(small, 0, 0); err != nil {
		t.Fatalf("healthy shard: %v", err)
	}
}
