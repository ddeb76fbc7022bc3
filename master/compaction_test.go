package master

import (
	"errors"
	"testing"
	"time"

	"github.com/cairnfs/cairn/master/internal/fsm"
)

// TestCompactClaims walks the leader's hand-out rules through time: a
// quiet chunk goes out, a chunk still being written (changed recently, or
// of an open file) waits unless it is past ForceRefs and its writes added
// 1/ForceShare of its bytes (or it is past the ceiling), a forced chunk is not forced again within ForceEvery
// (but goes out once quiet), and a claim keeps a chunk from a second
// client until it lapses or is released.
func TestCompactClaims(t *testing.T) {
	cfg := CompactionConfig{Quiet: 3 * time.Second, ForceRefs: 256, ForceEvery: 30 * time.Second, Claim: time.Minute}.withDefaults()
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	frag := func(ino uint64, refs uint32, changed time.Duration) fsm.Fragmented {
		return fsm.Fragmented{Inode: ino, Refs: refs, ChangedUnixNano: at(changed).UnixNano()}
	}
	// Chunks of inode 4 gained little over their main slice; inode 5's
	// cannot be read; inode 6's gained little when first weighed and
	// their size since; the others' writes added their size. Inode 7 is
	// open.
	weighed6 := 0
	weigh := func(f fsm.Fragmented) (uint64, uint64, error) {
		switch f.Inode {
		case 4:
			return 64<<20 + 1<<20, 64 << 20, nil
		case 5:
			return 0, 0, errors.New("unreadable")
		case 6:
			if weighed6++; weighed6 == 1 {
				return 64<<20 + 1<<20, 64 << 20, nil
			}
		}
		return 128 << 20, 64 << 20, nil
	}
	probe := chunkProbe{weigh: weigh, open: func(ino uint64) bool { return ino == 7 }}
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
		{now: 200 * time.Second, list: []fsm.Fragmented{frag(4, 1000, 200*time.Second)}, want: 0},                      // many refs, few bytes
		{now: 201 * time.Second, list: []fsm.Fragmented{frag(5, 1000, 201*time.Second)}, want: 0},                      // cannot weigh: wait
		{now: 202 * time.Second, list: []fsm.Fragmented{frag(4, 256*forceCeiling, 202*time.Second)}, want: 4},          // past the ceiling
		{now: 210 * time.Second, list: []fsm.Fragmented{frag(5, 1000, 200*time.Second)}, want: 5},                      // quiet: no weighing
		{now: 300 * time.Second, list: []fsm.Fragmented{frag(6, 1000, 300*time.Second)}, want: 0},                      // light
		{now: 310 * time.Second, list: []fsm.Fragmented{frag(6, 1000, 310*time.Second)}, want: 0},                      // not weighed again yet
		{now: 330 * time.Second, list: []fsm.Fragmented{frag(6, 1000, 330*time.Second)}, want: 6},                      // ForceEvery on: heavy now
		{now: 400 * time.Second, list: []fsm.Fragmented{frag(7, 20, 0)}, want: 0},                                      // quiet but open
		{now: 401 * time.Second, list: []fsm.Fragmented{frag(7, 300, 0)}, want: 7},                                     // open, but heavy
	} {
		if st.release != 0 {
			c.release(st.release, 0)
		}
		got, ok := c.claim(st.list, probe, cfg, at(st.now))
		if !ok {
			got.Inode = 0
		}
		if got.Inode != st.want {
			t.Fatalf("step %d at %v: handed out inode %d, want %d", i, st.now, got.Inode, st.want)
		}
	}
	if weighed6 != 2 {
		t.Fatalf("inode 6 weighed %d times, want 2 (once light, once after ForceEvery)", weighed6)
	}
}

// TestCompactFind: the search pages on past chunks that are not due, so
// a chunk beyond a full page of them is found; the cursor stays at the
// page where it found one, and wraps to the start at the end.
func TestCompactFind(t *testing.T) {
	cfg := CompactionConfig{}.withDefaults()
	now := time.Unix(1_700_000_000, 0)
	var index []fsm.Fragmented
	for ino := uint64(1); ino <= 10; ino++ {
		changed := now // still being written: not due
		if ino == 8 || ino == 2 {
			changed = now.Add(-time.Minute) // quiet
		}
		index = append(index, fsm.Fragmented{Inode: ino, Refs: 20, ChangedUnixNano: changed.UnixNano()})
	}
	var reads int
	list := func(after chunkID, limit int) ([]fsm.Fragmented, error) {
		reads++
		var out []fsm.Fragmented
		for _, f := range index {
			if (f.Inode > after.inode || (f.Inode == after.inode && f.Chunk > after.chunk)) && len(out) < limit {
				out = append(out, f)
			}
		}
		return out, nil
	}
	var c compactClaims
	c.claims = map[chunkID]time.Time{{2, 0}: now.Add(time.Minute)} // 2 is someone else's
	for i, want := range []uint64{8, 0, 0} {
		reads = 0
		f, ok, err := c.find(list, chunkProbe{}, 3, 8, cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			f.Inode = 0
		}
		if f.Inode != want {
			t.Fatalf("search %d: found inode %d, want %d (cursor %v)", i, f.Inode, want, c.cursor)
		}
		switch i {
		case 0:
			if c.cursor != (chunkID{6, 0}) {
				t.Fatalf("cursor %v after finding 8, want the start of its page (after 6)", c.cursor)
			}
		case 1:
			// From 6 to the end, then the whole index again: 2 pages, 4.
			if reads != 6 || c.cursor != (chunkID{}) {
				t.Fatalf("fruitless search read %d pages, cursor %v; want 6 and the start", reads, c.cursor)
			}
		}
	}
	// A search bounded to fewer pages stops where it got to.
	c.cursor = chunkID{}
	if _, ok, _ := c.find(list, chunkProbe{}, 3, 2, cfg, now); ok || c.cursor != (chunkID{6, 0}) {
		t.Fatalf("bounded search: found %v, cursor %v; want none and after 6", ok, c.cursor)
	}
}
