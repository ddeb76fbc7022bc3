package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// TestScanFloorsChangeNothing applies the same random entries to an FSM
// that keeps its scan floors and to one that forgets them before every
// entry (scanning every table from its start, as a restarted replica
// does): slices expire and request records go at the same entries, so
// the two states never differ. The entries allocate slices with expiries
// near and far, commit some, tag mutations with request IDs, and move the
// clock forward in small and large steps and, as a new leader's clock may,
// backwards.
func TestScanFloorsChangeNothing(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			keep, forget := newDriver(t, false), newDriver(t, false)
			both := func(c func() *fsmpb.Command) {
				t.Helper()
				keep.entry(c())
				forget.f.floors = scanFloors{}
				forget.entry(c())
				if digest(t, keep.f) != digest(t, forget.f) {
					t.Fatalf("states differ after entry %d", keep.index)
				}
			}
			both(func() *fsmpb.Command { return cmd(&fsmpb.Create{Parent: 1, Name: "f", Mode: 0o644}) })
			a, err := keep.f.Lookup(1, "f")
			if err != nil {
				t.Fatal(err)
			}
			ino := a.Inode
			var pending []uint64
			for i := range 400 {
				switch step := rng.IntN(10); {
				case step < 4: // allocate, expiring within a minute or an hour
					ttl := time.Duration(1+rng.IntN(60)) * time.Second
					if rng.IntN(3) == 0 {
						ttl = time.Hour
					}
					now := keep.now
					both(func() *fsmpb.Command {
						c := cmd(&fsmpb.AllocateSlice{Inode: ino, Length: 4096, Layout: rep3, Shards: shardsFor(rep3), ExpiresUnixNano: now + int64(ttl)})
						return withReq(c, "c", fmt.Sprint("a", i))
					})
					pending = append(pending, readMeta(t, keep.f).NextSlice-1)
				case step < 6 && len(pending) > 0: // commit one (it may have expired)
					id, off := pending[rng.IntN(len(pending))], uint64(rng.IntN(8))*4096
					both(func() *fsmpb.Command {
						return withReq(cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: id, Offset: off, Length: 4096}), "c", fmt.Sprint("m", i))
					})
				case step < 8: // a small step of the clock
					d := time.Duration(rng.IntN(30)) * time.Second
					keep.now += int64(d)
					forget.now += int64(d)
				case step < 9: // past the request retention
					keep.now += int64(RequestRetention)
					forget.now += int64(RequestRetention)
				default: // a new leader's clock, behind
					keep.now -= int64(time.Minute)
					forget.now -= int64(time.Minute)
				}
			}
			if err := keep.f.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
