package master

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/master/internal/repair"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// stepClock is a Clock whose time the test sets.
type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time { return c.t }

// TestOrdersForBacklog checks how queued orders go out with heartbeats:
// rebuilds at most PerServer at a time per server and in the order they
// were planned, deletions all at once, an order handed out and not
// answered again only after resendAfter, and a server declared dead
// losing its orders so their shards can be planned elsewhere.
func TestOrdersForBacklog(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0)}
	r := &repairer{s: &Server{cfg: Config{Clock: clock}}, cfg: RepairConfig{PerServer: 2}}
	r.resetLocked(1)
	rebuild := func(server string, slice uint64) uint64 {
		t.Helper()
		k := repair.Key{Slice: slice, Index: 1}
		if !r.queue(server, k, &repair.Task{Slice: slice, Index: 1, Target: server}, &masterpb.Order{}, clock.t) {
			t.Fatalf("rebuild of slice %d not queued", slice)
		}
		return r.mu.busy[k]
	}
	del := func(server string, slice uint64) uint64 {
		t.Helper()
		k := repair.Key{Slice: slice, Index: 2}
		if !r.queue(server, k, nil, &masterpb.Order{}, clock.t) {
			t.Fatalf("deletion of slice %d not queued", slice)
		}
		return r.mu.busy[k]
	}
	ids := func(orders []*masterpb.Order) []uint64 {
		var out []uint64
		for _, o := range orders {
			out = append(out, o.Id)
		}
		slices.Sort(out)
		return out
	}

	a1, a2, a3, a4 := rebuild("a", 1), rebuild("a", 2), rebuild("a", 3), rebuild("a", 4)
	d1 := del("a", 5)
	b1 := rebuild("b", 6)

	steps := []struct {
		name    string
		advance time.Duration
		done    []uint64
		server  string
		want    []uint64
	}{
		{name: "first heartbeat: two oldest rebuilds and the deletion", server: "a", want: []uint64{a1, a2, d1}},
		{name: "other server unaffected", server: "b", want: []uint64{b1}},
		{name: "nothing new while both run", server: "a", want: nil},
		{name: "one done: the next in plan order", done: []uint64{a1}, server: "a", want: []uint64{a3}},
		{name: "unanswered orders resent, no new one", advance: resendAfter, server: "a", want: []uint64{a2, a3, d1}},
		{name: "both done: the last one", done: []uint64{a2, a3}, server: "a", want: []uint64{a4}},
	}
	for _, st := range steps {
		clock.t = clock.t.Add(st.advance)
		r.mu.Lock()
		for _, id := range st.done {
			r.dropLocked(id)
		}
		r.mu.Unlock()
		if got := ids(r.ordersFor(st.server)); !slices.Equal(got, st.want) {
			t.Errorf("%s: orders %v, want %v", st.name, got, st.want)
		}
	}

	r.dropDead(map[string]repair.State{"a": repair.Down, "b": repair.Up})
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, o := range r.mu.orders {
		if o.server == "a" {
			t.Errorf("order %d of dead server a kept", id)
		}
	}
	if _, ok := r.mu.orders[b1]; !ok {
		t.Errorf("order %d of live server b dropped", b1)
	}
	if _, busy := r.mu.busy[repair.Key{Slice: 4, Index: 1}]; busy {
		t.Error("shard of a dropped order still busy")
	}
}

// TestCorruptMarksBounded checks that reports of corrupt shards cannot
// grow the leader's marks past maxCorruptMarks (with repair off nothing
// prunes them), while a shard already marked may still be re-marked.
func TestCorruptMarksBounded(t *testing.T) {
	r := &repairer{s: &Server{log: slog.New(slog.DiscardHandler)}, cfg: RepairConfig{Disabled: true}}
	r.resetLocked(1)
	keys := make([]repair.Key, maxCorruptMarks+10)
	for i := range keys {
		keys[i] = repair.Key{Slice: uint64(i + 1), Index: 0}
	}
	r.reportBad("cs1", keys)
	r.reportBad("cs2", keys[:1])
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.mu.corrupt); n != maxCorruptMarks {
		t.Fatalf("%d marks, want the bound %d", n, maxCorruptMarks)
	}
	if got := r.mu.corrupt[keys[0]]; got != "cs2" {
		t.Errorf("marked shard reported on cs2 again is marked on %q", got)
	}
	if _, ok := r.mu.corrupt[keys[len(keys)-1]]; ok {
		t.Error("a report past the bound was kept")
	}
}

// TestBacklogTokenFresh checks that a rebuild handed out long after it was
// planned carries a write token minted when it is handed out, not one
// that ran out while it waited in the backlog.
func TestBacklogTokenFresh(t *testing.T) {
	clock := &stepClock{t: time.Unix(1000, 0)}
	signer, err := token.NewSigner([]byte("test-cluster-key-of-enough-bytes"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{Clock: clock, TokenTTL: time.Minute}, signer: signer}
	r := &repairer{s: s, cfg: RepairConfig{PerServer: 1}}
	r.resetLocked(1)
	l := erasure.RS(4, 2)
	for slice := uint64(1); slice <= 2; slice++ {
		task := &repair.Task{Slice: slice, Layout: l, Length: 4 << 20, Index: 0, Target: "a"}
		pb := &masterpb.Order{Work: &masterpb.Order_Reconstruct{Reconstruct: &chunkpb.ReconstructShardRequest{
			Shard: &chunkpb.ShardID{SliceId: slice}, Token: s.mintWrite(slice, l, task.Length, 0, clock.t),
		}}}
		r.queue("a", repair.Key{Slice: slice}, task, pb, clock.t)
	}
	first := r.ordersFor("a")
	if len(first) != 1 {
		t.Fatalf("%d orders handed out, want 1", len(first))
	}
	r.mu.Lock()
	r.dropLocked(first[0].Id)
	r.mu.Unlock()
	clock.t = clock.t.Add(10 * time.Minute) // the planned token is long expired
	next := r.ordersFor("a")
	if len(next) != 1 {
		t.Fatalf("%d orders handed out after the first finished, want 1", len(next))
	}
	rc := next[0].GetReconstruct()
	if err := signer.Verify(rc.Token, chunkpb.TokenOp_TOKEN_OP_WRITE, rc.Shard.SliceId, 0, 1<<20, clock.t); err != nil {
		t.Errorf("token of the rebuild handed out from the backlog: %v", err)
	}
}
