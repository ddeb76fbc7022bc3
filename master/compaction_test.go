package master

import (
	"testing"
	"time"

	"github.com/cairnfs/cairn/master/internal/fsm"
)

// TestCompactClaims walks the leader's hand-out rules through time: a
// quiet chunk goes out, a chunk still being written waits unless it is
// past ForceRefs, a forced chunk is not forced again within ForceEvery
// (but goes out once quiet), and a claim keeps a chunk from a second
// client until it lapses or is released.
func TestCompactClaims(t *testing.T) {
	cfg := CompactionConfig{Quiet: 3 * time.Second, ForceRefs: 256, ForceEvery: 30 * time.Second, Claim: time.Minute}.withDefaults()
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	frag := func(ino uint64, refs uint32, changed time.Duration) fsm.Fragmented {
		return fsm.Fragmented{Inode: ino, Refs: refs, ChangedUnixNano: at(changed).UnixNano()}
	}
	var c compactClaims
	for i, st := range []struct {
		now     time.Duration
		list    []fsm.Fragmented
		release uint64 // release this inode's chunk 0 first
		want    uint64 // inode handed out, 0 for none
	}{
		{now: 1 * time.Second, list: []fsm.Fragmented{frag(1, 20, 0)}, want: 0},                                        // still being written
		{now: 3 * time.Second, list: []fsm.Fragmented{frag(1, 20, 0)}, want: 1},                                        // quiet now
		{now: 4 * time.Second, list: []fsm.Fragmented{frag(1, 20, 0)}, want: 0},                                        // claimed
		{now: 5 * time.Second, list: []fsm.Fragmented{frag(1, 20, 0)}, release: 1, want: 1},                            // released, still listed
		{now: 70 * time.Second, list: []fsm.Fragmented{frag(2, 300, 69*time.Second)}, want: 2},                         // too many to wait
		{now: 71 * time.Second, list: []fsm.Fragmented{frag(2, 300, 71*time.Second)}, release: 2, want: 0},             // forced just now
		{now: 99 * time.Second, list: []fsm.Fragmented{frag(2, 600, 99*time.Second)}, want: 0},                         // within ForceEvery
		{now: 99500 * time.Millisecond, list: []fsm.Fragmented{frag(2, 900, 99*time.Second), frag(3, 17, 0)}, want: 3}, // 2 waits, 3 is quiet
		{now: 100 * time.Second, list: []fsm.Fragmented{frag(2, 900, 100*time.Second)}, want: 2},                       // ForceEvery has passed
		{now: 104 * time.Second, list: []fsm.Fragmented{frag(1, 20, 0)}, want: 1},                                      // 1's claim from 5 s lapsed at 65 s
	} {
		if st.release != 0 {
			c.release(st.release, 0)
		}
		got, ok := c.claim(st.list, cfg, at(st.now))
		if !ok {
			got.Inode = 0
		}
		if got.Inode != st.want {
			t.Fatalf("step %d at %v: handed out inode %d, want %d", i, st.now, got.Inode, st.want)
		}
	}
}
