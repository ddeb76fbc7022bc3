package repair

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/master/internal/placement"
)

var (
	rs42 = erasure.RS(4, 2)
	rep3 = erasure.Replicated(3)
)

// slice returns slice id in layout l with shard i on servers[i] ("" for
// no location).
func slice(id uint64, l erasure.Layout, servers ...string) Slice {
	s := Slice{ID: id, Layout: l, Length: uint64(l.StripeRow())}
	for i, srv := range servers {
		if srv != "" {
			s.Shards = append(s.Shards, Location{Index: uint32(i), Server: srv})
		}
	}
	return s
}

func cands(n int) []placement.Candidate {
	var out []placement.Candidate
	for i := range n {
		out = append(out, placement.Candidate{ID: fmt.Sprintf("s%d", i), Capacity: 1 << 40, Free: 1 << 40, Status: placement.Live})
	}
	return out
}

func states(up int, mod map[string]State) map[string]State {
	m := map[string]State{}
	for i := range up {
		m[fmt.Sprintf("s%d", i)] = Up
	}
	for k, v := range mod {
		m[k] = v
	}
	return m
}

func candsWith(n int, mod map[string]State) []placement.Candidate {
	c := cands(n)
	for i := range c {
		switch mod[c[i].ID] {
		case Down:
			c[i].Status = placement.Dead
		case Draining:
			c[i].Status = placement.Draining
		case Unsure:
			if _, ok := mod[c[i].ID]; ok {
				c[i].Status = placement.Suspect
			}
		}
	}
	return c
}

func TestAssess(t *testing.T) {
	v := View{Servers: states(6, map[string]State{"s1": Down, "s2": Draining, "s3": Unsure}), Bad: map[Key]bool{{1, 4}: true}}
	h := Assess(slice(1, rs42, "s0", "s1", "s2", "s3", "s4", ""), v)
	if h.Readable != 2 || h.Waiting != 1 || !slices.Equal(h.Lost, []uint32{1, 4, 5}) || !slices.Equal(h.Moving, []uint32{2}) {
		t.Fatalf("health %+v", h)
	}
	if h.Tolerable() != -2 || h.Healthy() {
		t.Fatalf("tolerable %d healthy %v", h.Tolerable(), h.Healthy())
	}
	if h := Assess(slice(2, rep3, "s0", "s4", "s5"), v); !h.Healthy() || h.Tolerable() != 2 {
		t.Fatalf("healthy replicated slice assessed %+v", h)
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name  string
		sl    []Slice
		mod   map[string]State
		bad   []Key
		busy  []Key
		lim   Limits
		n     int // servers
		want  []Key
		moves int
		sum   Summary
	}{
		{
			name: "least redundancy first",
			sl: []Slice{
				slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5"),
				slice(2, rs42, "s0", "s1", "s2", "s3", "s6", "s7"),
				slice(3, rep3, "s6", "s7", "s0"),
			},
			mod:  map[string]State{"s6": Down, "s7": Down},
			n:    10,
			want: []Key{{2, 4}, {2, 5}, {3, 0}, {3, 1}},
			sum:  Summary{Slices: 3, Degraded: 2, AtRisk: 4, BytesLeft: 4 << 20},
		},
		{
			name: "corrupt shard on a live server",
			sl:   []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5")},
			bad:  []Key{{1, 2}},
			n:    8,
			want: []Key{{1, 2}},
			sum:  Summary{Slices: 1, Degraded: 1, AtRisk: 1, BytesLeft: 1 << 20},
		},
		{
			name: "missing location from a partial commit",
			sl:   []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "")},
			n:    8,
			want: []Key{{1, 5}},
			sum:  Summary{Slices: 1, Degraded: 1, AtRisk: 1, BytesLeft: 1 << 20},
		},
		{
			name: "unsure servers are waited for",
			sl:   []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5")},
			mod:  map[string]State{"s5": Unsure},
			n:    8,
			sum:  Summary{Slices: 1},
		},
		{
			name: "busy shards are not planned again",
			sl:   []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5")},
			mod:  map[string]State{"s4": Down, "s5": Down},
			busy: []Key{{1, 4}},
			n:    8,
			want: []Key{{1, 5}},
			sum:  Summary{Slices: 1, Degraded: 1, AtRisk: 2, BytesLeft: 2 << 20},
		},
		{
			name: "lost slices are counted, not planned",
			sl:   []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5")},
			mod:  map[string]State{"s0": Down, "s1": Down, "s2": Down},
			n:    9,
			sum:  Summary{Slices: 1, Lost: 1},
		},
		{
			name: "unreadable while servers are late: waited for, not lost",
			sl:   []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5")},
			mod:  map[string]State{"s0": Unsure, "s1": Unsure, "s2": Unsure},
			n:    9,
			sum:  Summary{Slices: 1},
		},
		{
			name: "two lost and one late: degraded, nothing to rebuild from yet",
			sl:   []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5")},
			mod:  map[string]State{"s0": Down, "s1": Down, "s2": Unsure},
			n:    9,
			sum:  Summary{Slices: 1, Degraded: 1},
		},
		{
			name:  "drain moves come after rebuilds",
			sl:    []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5"), slice(2, rs42, "s0", "s1", "s2", "s3", "s4", "s6")},
			mod:   map[string]State{"s0": Draining, "s6": Down},
			n:     10,
			want:  []Key{{2, 5}, {2, 0}, {1, 0}},
			moves: 2,
			sum:   Summary{Slices: 2, Degraded: 1, AtRisk: 1, BytesLeft: 3 << 20},
		},
		{
			name: "per-target limit leaves the rest for later",
			sl:   []Slice{slice(1, rep3, "s0", "s1", "s2"), slice(2, rep3, "s0", "s1", "s2")},
			mod:  map[string]State{"s2": Down},
			lim:  Limits{PerTarget: 1, InFlight: map[string]int{"s3": 1}},
			n:    5,
			want: []Key{{1, 2}},
			sum:  Summary{Slices: 2, Degraded: 2, AtRisk: 2, BytesLeft: 2 << 20, Unplaced: 1},
		},
		{
			name: "no room anywhere",
			sl:   []Slice{slice(1, rep3, "s0", "s1", "s2")},
			mod:  map[string]State{"s2": Down},
			n:    3,
			sum:  Summary{Slices: 1, Degraded: 1, AtRisk: 1, BytesLeft: 1 << 20, Unplaced: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := View{Servers: states(tc.n, tc.mod), Bad: map[Key]bool{}, Busy: map[Key]bool{}}
			for _, k := range tc.bad {
				v.Bad[k] = true
			}
			for _, k := range tc.busy {
				v.Busy[k] = true
			}
			lim := tc.lim
			tasks, sum, err := Plan(tc.sl, v, candsWith(tc.n, tc.mod), lim, rand.New(rand.NewPCG(1, 2)))
			if err != nil {
				t.Fatal(err)
			}
			var got []Key
			moves := 0
			for _, task := range tasks {
				got = append(got, Key{task.Slice, task.Index})
				if task.Move {
					moves++
				}
				checkTask(t, task, tc.sl, v)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("planned %v, want %v", got, tc.want)
			}
			if moves != tc.moves {
				t.Errorf("%d moves, want %d", moves, tc.moves)
			}
			if sum != tc.sum {
				t.Errorf("summary %+v, want %+v", sum, tc.sum)
			}
		})
	}
}

// checkTask asserts the invariants every task must keep.
func checkTask(t *testing.T, task Task, all []Slice, v View) {
	t.Helper()
	var s Slice
	for _, x := range all {
		if x.ID == task.Slice {
			s = x
		}
	}
	for _, loc := range s.Shards {
		if loc.Server == task.Target && v.Servers[loc.Server] != Down {
			t.Errorf("task %d/%d targets %s, which holds shard %d of the slice", task.Slice, task.Index, task.Target, loc.Index)
		}
	}
	if v.Servers[task.Target] != Up {
		t.Errorf("task %d/%d targets %s in state %v", task.Slice, task.Index, task.Target, v.Servers[task.Target])
	}
	if len(task.Sources) < task.Layout.DataShards() {
		t.Errorf("task %d/%d has %d sources, needs %d", task.Slice, task.Index, len(task.Sources), task.Layout.DataShards())
	}
	for _, src := range task.Sources {
		if src.Index == task.Index || v.Bad[Key{task.Slice, src.Index}] || v.Servers[src.Server] == Down {
			t.Errorf("task %d/%d reads unusable source %+v", task.Slice, task.Index, src)
		}
	}
}

func TestPlanSpreadsTwoRebuildsOfOneSlice(t *testing.T) {
	for seed := range uint64(50) {
		sl := []Slice{slice(1, rs42, "s0", "s1", "s2", "s3", "s4", "s5")}
		mod := map[string]State{"s4": Down, "s5": Down}
		tasks, _, err := Plan(sl, View{Servers: states(8, mod)}, candsWith(8, mod), Limits{}, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) != 2 || tasks[0].Target == tasks[1].Target {
			t.Fatalf("seed %d: tasks %+v: two shards of a slice on one target", seed, tasks)
		}
	}
}

func TestPlanNilRNG(t *testing.T) {
	if _, _, err := Plan(nil, View{}, nil, Limits{}, nil); err == nil {
		t.Fatal("Plan with a nil rng succeeded")
	}
}

func TestSurplus(t *testing.T) {
	records := map[uint64]struct {
		s Slice
		r Record
	}{
		1: {slice(1, rep3, "a", "b", "c"), Committed},
		2: {slice(2, rep3, "x", "b", "c"), Committed},
		3: {slice(3, rep3, "x", "y", "z"), Pending},
		5: {slice(5, rep3, "a", "b", ""), Committed},
	}
	lookups := 0
	lookup := func(id uint64) (Slice, Record, error) {
		lookups++
		if id == 9 {
			return Slice{}, Gone, errors.New("storage failed")
		}
		r, ok := records[id]
		if !ok {
			return Slice{}, Gone, nil
		}
		return r.s, r.r, nil
	}
	held := []Key{{1, 0}, {1, 1}, {2, 0}, {3, 0}, {4, 0}, {4, 1}, {5, 2}, {6, 0}}
	got, err := Surplus("a", held, map[Key]bool{{6, 0}: true}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{{1, 1}, {2, 0}, {4, 0}, {4, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("surplus %v, want %v", got, want)
	}
	if lookups != 5 {
		t.Errorf("%d lookups for 5 distinct slices", lookups)
	}
	if _, err := Surplus("a", []Key{{9, 0}}, nil, lookup); err == nil {
		t.Fatal("a failed lookup was not reported")
	}
}
