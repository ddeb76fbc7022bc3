package shardstore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestLargeShardsLandInBottomLevel checks the point of the key layout: large
// shards' checksum tables, ingested among small shards' flushed tables, go
// to the bottom level and stay there (written once, never compacted), and
// their bytes are written once, to their cells files.
func TestLargeShardsLandInBottomLevel(t *testing.T) {
	s, err := Open(Options{Dir: "/s", FS: vfs.NewMem(), MemTableSize: 1 << 20, BallastSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	small := newBenchData(64<<10, 16<<10)
	large := newBenchData(2<<20, 256<<10)
	var largeBytes, largeShards uint64
	for i := range 60 {
		// Interleave IDs: small shards of slice i surround large ones.
		if _, err := small.write(s, ID{Slice: uint64(i), Index: 0}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := large.write(s, ID{Slice: uint64(i), Index: 1}); err != nil {
				t.Fatal(err)
			}
			largeBytes += uint64(len(large.data))
			largeShards++
		}
		if _, err := small.write(s, ID{Slice: uint64(i), Index: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	m := s.db.Metrics()
	bottom := m.Levels[len(m.Levels)-1]
	if got := s.fileWritten.Load(); got != largeBytes {
		t.Errorf("cells files got %d bytes, want the %d of large shards", got, largeBytes)
	}
	// Each shard ingests a checksum table and a one-key metadata table;
	// the checksum tables all land in the bottom level, only metadata
	// tables may land higher.
	var ingestedAbove uint64
	for _, l := range m.Levels[:len(m.Levels)-1] {
		ingestedAbove += l.TablesIngested
	}
	if bottom.TablesIngested < largeShards || ingestedAbove > largeShards {
		t.Errorf("%d tables ingested into the bottom level and %d above, for %d large shards\n%s", bottom.TablesIngested, ingestedAbove, largeShards, m)
	}
	t.Logf("write amplification of this mix: %.2f", float64(s.DiskBytesWritten())/float64(largeBytes+120*64<<10))
}
