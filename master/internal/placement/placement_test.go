package placement

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

const (
	gib = uint64(1) << 30
	tib = uint64(1) << 40
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// cs is a live server with 1 TiB capacity.
func cs(id, rack string, free uint64) Candidate {
	return Candidate{ID: id, Rack: rack, Capacity: tib, Free: free, Status: Live}
}

func with(c Candidate, st Status) Candidate { c.Status = st; return c }

// grid returns racks × perRack live servers "r<i>-s<j>" in racks "r<i>",
// each with free bytes free.
func grid(racks, perRack int, free uint64) []Candidate {
	var v []Candidate
	for r := range racks {
		for s := range perRack {
			v = append(v, cs(fmt.Sprintf("r%d-s%d", r, s), fmt.Sprintf("r%d", r), free))
		}
	}
	return v
}

// eligibleFor reports whether c may take a shard under spec, ignoring
// which servers hold the slice's other shards.
func eligibleFor(c *Candidate, spec *Spec) bool {
	return c.Status == Live && !slices.Contains(spec.Exclude, c.ID) && spec.fits(c)
}

// checkPlace verifies every rule Place promises for the answer got, from
// first principles: length, distinctness, eligibility and rack balance
// (no rack with an unused eligible server holds fewer than the fullest rack
// minus one, which is what minimises the largest rack).
func checkPlace(view []Candidate, n int, spec Spec, got []string) error {
	if len(got) != n {
		return fmt.Errorf("got %d servers for %d shards", len(got), n)
	}
	byID := map[string]*Candidate{}
	for i := range view {
		byID[view[i].ID] = &view[i]
	}
	load := map[string]int{}
	seen := map[string]bool{}
	for i, id := range got {
		c, ok := byID[id]
		if !ok {
			return fmt.Errorf("shard %d on %q, not in the view", i, id)
		}
		if seen[id] {
			return fmt.Errorf("shard %d on %q, which already holds another shard", i, id)
		}
		seen[id] = true
		if !eligibleFor(c, &spec) {
			return fmt.Errorf("shard %d on ineligible %+v", i, *c)
		}
		load[c.Rack]++
	}
	maxLoad := 0
	for _, n := range load {
		maxLoad = max(maxLoad, n)
	}
	for i := range view {
		c := &view[i]
		if eligibleFor(c, &spec) && !seen[c.ID] && load[c.Rack] < maxLoad-1 {
			return fmt.Errorf("rack %q holds %d shards and has unused %q while another rack holds %d: %v", c.Rack, load[c.Rack], c.ID, maxLoad, got)
		}
	}
	return nil
}

// optimalMax is the smallest possible largest-rack load for n shards: the
// least L with sum over racks of min(eligible servers in rack, L) >= n.
func optimalMax(view []Candidate, n int, spec Spec) int {
	caps := map[string]int{}
	for i := range view {
		if eligibleFor(&view[i], &spec) {
			caps[view[i].Rack]++
		}
	}
	for l := 1; ; l++ {
		sum := 0
		for _, c := range caps {
			sum += min(c, l)
		}
		if sum >= n {
			return l
		}
	}
}

func rackLoads(view []Candidate, got []string) map[string]int {
	rackOf := map[string]string{}
	for _, c := range view {
		rackOf[c.ID] = c.Rack
	}
	load := map[string]int{}
	for _, id := range got {
		load[rackOf[id]]++
	}
	return load
}

func TestPlace(t *testing.T) {
	ineligible := []Candidate{
		with(cs("suspect", "r0", tib), Suspect),
		with(cs("dead", "r0", tib), Dead),
		with(cs("draining", "r1", tib), Draining),
		with(cs("unknown", "r1", tib), StatusUnknown),
		cs("full", "r2", 10*gib),
		cs("excluded", "r2", tib),
	}
	spec := Spec{Layout: "RS(4,2)", ShardSize: 5 * gib, Reserve: Reserve{Fraction: DefaultReserveFraction}, Exclude: []string{"excluded"}}
	// full has 10 GiB free; it needs 5 GiB + ceil(1% of 1 TiB) ≈ 15.2 GiB.
	tests := []struct {
		name    string
		view    []Candidate
		n       int
		maxRack int
	}{
		{"one server one shard", grid(1, 1, tib), 1, 1},
		{"3x3 RS(4,2)", grid(3, 3, tib), 6, 2},
		{"3x3 RS(2,1)", grid(3, 3, tib), 3, 1},
		{"3x3 four shards", grid(3, 3, tib), 4, 2},
		{"3x3 all nine", grid(3, 3, tib), 9, 3},
		{"2x5 Replicated(3)", grid(2, 5, tib), 3, 2},
		{"6 racks of 1 RS(4,2)", grid(6, 1, tib), 6, 1},
		{"1 rack", grid(1, 8, tib), 6, 6},
		{"uneven racks", []Candidate{
			cs("a1", "a", tib),
			cs("b1", "b", tib), cs("b2", "b", tib), cs("b3", "b", tib), cs("b4", "b", tib), cs("b5", "b", tib),
		}, 4, 3},
		{"unknown rack is one rack", []Candidate{
			cs("x1", "", tib), cs("x2", "", tib), cs("x3", "", tib),
			cs("a1", "a", tib), cs("a2", "a", tib), cs("a3", "a", tib),
		}, 4, 2},
		{"ineligible skipped", append(grid(3, 2, tib), ineligible...), 6, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(50) {
				got, err := Place(tt.view, tt.n, spec, newRand(seed))
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if err := checkPlace(tt.view, tt.n, spec, got); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				m := 0
				for _, n := range rackLoads(tt.view, got) {
					m = max(m, n)
				}
				if m != tt.maxRack {
					t.Fatalf("seed %d: largest rack holds %d shards, want %d: %v", seed, m, tt.maxRack, got)
				}
			}
		})
	}
}

func TestPlaceDeterministic(t *testing.T) {
	view := grid(4, 5, tib)
	spec := Spec{Layout: "RS(6,3)"}
	a, err := Place(view, 9, spec, newRand(7))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Place(view, 9, spec, newRand(7))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different answers: %v vs %v", a, b)
	}
}

// TestPlaceWeighting checks over many draws with a fixed seed that the
// chance of being chosen follows free space.
func TestPlaceWeighting(t *testing.T) {
	view := []Candidate{cs("big", "r", 10*100*gib)}
	for i := range 4 {
		view = append(view, cs(fmt.Sprintf("small%d", i), "r", 100*gib))
	}
	const draws = 20000
	rng := newRand(1)
	count := map[string]int{}
	for range draws {
		got, err := Place(view, 1, Spec{}, rng)
		if err != nil {
			t.Fatal(err)
		}
		count[got[0]]++
	}
	// Expected shares: big 10/14 ≈ 0.714, each small 1/14 ≈ 0.071.
	if f := float64(count["big"]) / draws; math.Abs(f-10.0/14) > 0.02 {
		t.Errorf("big chosen %.3f of the time, want about %.3f (%v)", f, 10.0/14, count)
	}
	for i := range 4 {
		id := fmt.Sprintf("small%d", i)
		if f := float64(count[id]) / draws; math.Abs(f-1.0/14) > 0.015 {
			t.Errorf("%s chosen %.3f of the time, want about %.3f (%v)", id, f, 1.0/14, count)
		}
	}

	// Within a rack spread, weighting still applies per rack: rack r0 has
	// one big and one small server, and each draw of 2 shards over two
	// racks puts one shard in r0.
	view2 := []Candidate{cs("big", "r0", 1000*gib), cs("small", "r0", 100*gib), cs("other", "r1", 100*gib)}
	count = map[string]int{}
	for range draws {
		got, err := Place(view2, 2, Spec{}, rng)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range got {
			count[id]++
		}
	}
	if count["other"] != draws {
		t.Errorf("rack r1's only server chosen %d of %d times, want every time", count["other"], draws)
	}
	if count["big"] < 8*count["small"] {
		t.Errorf("big (10x free) chosen %d times, small %d: want about 10x", count["big"], count["small"])
	}
}

// TestPlaceZeroFree covers the uniform fallback when every candidate has
// zero free bytes (zero shard size, no reserve).
func TestPlaceZeroFree(t *testing.T) {
	view := grid(2, 3, 0)
	rng := newRand(3)
	count := map[string]int{}
	for range 3000 {
		got, err := Place(view, 4, Spec{}, rng)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPlace(view, 4, Spec{}, got); err != nil {
			t.Fatal(err)
		}
		for _, id := range got {
			count[id]++
		}
	}
	for _, c := range view {
		if count[c.ID] < 1500 { // each is chosen 2/3 of the time: 2000 expected
			t.Errorf("%s chosen %d times of 3000, want about 2000", c.ID, count[c.ID])
		}
	}
}

func TestReserve(t *testing.T) {
	const size = 4 * gib
	capacity := 100 * gib
	byFraction := uint64(math.Ceil(0.01 * float64(capacity)))
	tests := []struct {
		name    string
		reserve Reserve
		free    uint64
		fits    bool
	}{
		{"no reserve exact", Reserve{}, size, true},
		{"no reserve one short", Reserve{}, size - 1, false},
		{"fraction exact", Reserve{Fraction: 0.01}, size + byFraction, true},
		{"fraction one short", Reserve{Fraction: 0.01}, size + byFraction - 1, false},
		{"bytes larger exact", Reserve{Bytes: 10 * gib, Fraction: 0.01}, size + 10*gib, true},
		{"bytes larger one short", Reserve{Bytes: 10 * gib, Fraction: 0.01}, size + 10*gib - 1, false},
		{"fraction larger", Reserve{Bytes: 1, Fraction: 0.01}, size + byFraction, true},
		{"overflowing reserve", Reserve{Bytes: math.MaxUint64}, math.MaxUint64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			view := []Candidate{{ID: "a", Capacity: capacity, Free: tt.free, Status: Live}}
			_, err := Place(view, 1, Spec{Layout: "Replicated(1)", ShardSize: size, Reserve: tt.reserve}, newRand(1))
			if tt.fits && err != nil {
				t.Fatalf("want a placement, got %v", err)
			}
			if !tt.fits {
				var e *TooFewServersError
				if !errors.As(err, &e) || e.Full != 1 {
					t.Fatalf("want a TooFewServersError with 1 full, got %v", err)
				}
			}
		})
	}
}

func TestPlaceErrors(t *testing.T) {
	good := grid(2, 2, tib)
	tests := []struct {
		name string
		view []Candidate
		n    int
		spec Spec
		rng  *rand.Rand
		want string // substring of the error
		few  bool   // errors.Is(err, ErrTooFewServers)
	}{
		{
			name: "too few with reasons",
			view: []Candidate{
				cs("a", "r0", tib), cs("b", "r0", tib), cs("c", "r1", tib), cs("d", "r1", tib),
				with(cs("e", "r2", tib), Dead), with(cs("f", "r2", tib), Dead),
				with(cs("g", "r2", tib), Draining), cs("h", "r2", gib),
			},
			n:    6,
			spec: Spec{Layout: "RS(4,2)", ShardSize: gib, Reserve: Reserve{Fraction: 0.01}},
			want: "placement: RS(4,2) needs 6 chunkservers, 4 are eligible (2 dead, 1 draining, 1 full)",
			few:  true,
		},
		{
			name: "every reason",
			view: []Candidate{
				cs("a", "r0", tib), with(cs("s", "r0", tib), Suspect), with(cs("u", "r0", tib), StatusUnknown),
				cs("x", "r0", tib), with(cs("y", "r0", tib), Dead),
			},
			n:    3,
			spec: Spec{Layout: "Replicated(3)", Exclude: []string{"x", "y"}},
			want: "placement: Replicated(3) needs 3 chunkservers, 1 is eligible (1 unknown, 1 suspect, 1 dead, 1 excluded)",
			few:  true,
		},
		{
			name: "empty view",
			n:    1,
			want: "placement: slice needs 1 chunkserver, 0 are eligible",
			few:  true,
		},
		{name: "zero shards", view: good, n: 0, want: "cannot place 0 shards"},
		{name: "nil rng", view: good, n: 1, rng: nil, want: "nil random source"},
		{name: "duplicate ID", view: []Candidate{cs("a", "", tib), cs("a", "x", tib)}, n: 1, want: `view lists chunkserver "a" twice`},
		{name: "empty ID", view: []Candidate{cs("", "", tib)}, n: 1, want: "view entry 0 has no chunkserver ID"},
		{name: "negative fraction", view: good, n: 1, spec: Spec{Reserve: Reserve{Fraction: -0.1}}, want: "reserve fraction -0.1 is outside [0, 1)"},
		{name: "whole fraction", view: good, n: 1, spec: Spec{Reserve: Reserve{Fraction: 1}}, want: "reserve fraction 1 is outside"},
		{name: "NaN fraction", view: good, n: 1, spec: Spec{Reserve: Reserve{Fraction: math.NaN()}}, want: "reserve fraction NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := tt.rng
			if rng == nil && tt.name != "nil rng" {
				rng = newRand(1)
			}
			got, err := Place(tt.view, tt.n, tt.spec, rng)
			if err == nil {
				t.Fatalf("want error containing %q, got %v", tt.want, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if errors.Is(err, ErrTooFewServers) != tt.few {
				t.Fatalf("errors.Is(%v, ErrTooFewServers) = %v, want %v", err, !tt.few, tt.few)
			}
		})
	}
}

// checkReplace verifies Replace's promises for the substitute got.
func checkReplace(view []Candidate, current []string, index int, spec Spec, got string) error {
	others := map[string]bool{}
	for i, id := range current {
		if i != index && id != "" {
			others[id] = true
		}
	}
	if got == current[index] {
		return fmt.Errorf("substitute %q is the server being replaced", got)
	}
	if others[got] {
		return fmt.Errorf("substitute %q holds another shard of %v", got, current)
	}
	rackOf := map[string]string{}
	var c *Candidate
	for i := range view {
		rackOf[view[i].ID] = view[i].Rack
		if view[i].ID == got {
			c = &view[i]
		}
	}
	if c == nil {
		return fmt.Errorf("substitute %q not in the view", got)
	}
	if !eligibleFor(c, &spec) {
		return fmt.Errorf("substitute %+v is ineligible", *c)
	}
	load := map[string]int{}
	for id := range others {
		if r, ok := rackOf[id]; ok {
			load[r]++
		}
	}
	for i := range view {
		o := &view[i]
		if o.ID != current[index] && !others[o.ID] && eligibleFor(o, &spec) && load[o.Rack] < load[c.Rack] {
			return fmt.Errorf("substitute %q in rack %q (%d shards) while %q in rack %q (%d shards) was free", got, c.Rack, load[c.Rack], o.ID, o.Rack, load[o.Rack])
		}
	}
	return nil
}

func TestReplace(t *testing.T) {
	view := grid(3, 3, tib)
	spec := Spec{Layout: "RS(4,2)"}
	tests := []struct {
		name     string
		view     []Candidate
		current  []string
		index    int
		spec     Spec
		wantRack string // "" means any rack
	}{
		{
			name:     "fills the thin rack",
			view:     view,
			current:  []string{"r0-s0", "r0-s1", "r1-s0", "r1-s1", "r2-s0", "r2-s1"},
			index:    4, // r2 then holds 1, the others 2
			spec:     spec,
			wantRack: "r2",
		},
		{
			name:     "unassigned shard",
			view:     view,
			current:  []string{"r0-s0", "r0-s1", "r1-s0", "r1-s1", "", "r2-s1"},
			index:    4,
			spec:     spec,
			wantRack: "r2",
		},
		{
			name:     "replaced server's own rack allowed",
			view:     grid(2, 3, tib),
			current:  []string{"r0-s0", "r1-s0", "r1-s1"},
			index:    0,
			spec:     Spec{Layout: "Replicated(3)"},
			wantRack: "r0",
		},
		{
			name:    "exclusion honoured",
			view:    grid(1, 4, tib),
			current: []string{"r0-s0", "r0-s1"},
			index:   1,
			spec:    Spec{Exclude: []string{"r0-s2"}},
		},
		{
			name:     "dead holder still counts in its rack",
			view:     append(grid(2, 2, tib), with(cs("gone", "r1", tib), Dead)),
			current:  []string{"gone", "r0-s0", "r1-s0"},
			index:    1,
			spec:     spec,
			wantRack: "r0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(30) {
				got, err := Replace(tt.view, tt.current, tt.index, tt.spec, newRand(seed))
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if err := checkReplace(tt.view, tt.current, tt.index, tt.spec, got); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if tt.wantRack != "" && rackLoads(tt.view, []string{got})[tt.wantRack] != 1 {
					t.Fatalf("seed %d: substitute %q not in rack %q", seed, got, tt.wantRack)
				}
				if slices.Contains(tt.spec.Exclude, got) {
					t.Fatalf("seed %d: excluded %q chosen", seed, got)
				}
			}
		})
	}
}

func TestReplaceErrors(t *testing.T) {
	view := append(grid(1, 5, tib), with(cs("d", "r9", tib), Dead))
	current := []string{"r0-s0", "r0-s1", "r0-s2", "r0-s3", "r0-s4", "d"}
	tests := []struct {
		name    string
		current []string
		index   int
		spec    Spec
		rng     *rand.Rand
		want    string
		few     bool
	}{
		{
			name:    "no substitute",
			current: current,
			index:   5,
			spec:    Spec{Layout: "RS(4,2)"},
			rng:     newRand(1),
			want:    "placement: RS(4,2) shard 5 needs a substitute chunkserver, 0 are eligible (5 hold other shards, 1 dead)",
			few:     true,
		},
		{
			name:    "replaced and excluded",
			current: []string{"r0-s0", "r0-s1"},
			index:   0,
			spec:    Spec{Layout: "Replicated(2)", Exclude: []string{"r0-s2", "r0-s3", "r0-s4"}},
			rng:     newRand(1),
			want:    "placement: Replicated(2) shard 0 needs a substitute chunkserver, 0 are eligible (1 holds another shard, 1 dead, 4 excluded)",
			few:     true,
		},
		{name: "index too large", current: current, index: 6, rng: newRand(1), want: "replace shard 6 of 6"},
		{name: "negative index", current: current, index: -1, rng: newRand(1), want: "replace shard -1 of 6"},
		{name: "nil rng", current: current, index: 0, want: "nil random source"},
		{name: "bad reserve", current: current, index: 0, rng: newRand(1), spec: Spec{Reserve: Reserve{Fraction: 2}}, want: "reserve fraction 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Replace(view, tt.current, tt.index, tt.spec, tt.rng)
			if err == nil {
				t.Fatalf("want error containing %q, got %q", tt.want, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if errors.Is(err, ErrTooFewServers) != tt.few {
				t.Fatalf("errors.Is(%v, ErrTooFewServers) = %v, want %v", err, !tt.few, tt.few)
			}
		})
	}
}

// randomView builds a view of up to 40 servers over up to 6 racks with
// mixed statuses, free space and capacities.
func randomView(rng *rand.Rand) []Candidate {
	n := rng.IntN(41)
	racks := 1 + rng.IntN(6)
	statuses := []Status{Live, Live, Live, Live, Suspect, Dead, Draining, StatusUnknown}
	view := make([]Candidate, n)
	for i := range view {
		rack := fmt.Sprintf("r%d", rng.IntN(racks))
		if rack == "r0" {
			rack = ""
		}
		capacity := uint64(1+rng.IntN(100)) * 10 * gib
		view[i] = Candidate{
			ID:       fmt.Sprintf("cs%d", i),
			Rack:     rack,
			Capacity: capacity,
			Free:     rng.Uint64N(capacity + 1),
			Status:   statuses[rng.IntN(len(statuses))],
		}
	}
	return view
}

// TestPlaceProperties checks over random views that whenever Place succeeds
// its answer obeys every rule and is rack-optimal, and that it fails only
// when too few servers are eligible.
func TestPlaceProperties(t *testing.T) {
	rng := newRand(42)
	successes := 0
	for iter := range 3000 {
		view := randomView(rng)
		n := 1 + rng.IntN(12)
		spec := Spec{
			Layout:    fmt.Sprintf("n=%d", n),
			ShardSize: rng.Uint64N(200 * gib),
			Reserve:   Reserve{Bytes: rng.Uint64N(10 * gib), Fraction: rng.Float64() * 0.05},
		}
		for range rng.IntN(3) {
			if len(view) > 0 {
				spec.Exclude = append(spec.Exclude, view[rng.IntN(len(view))].ID)
			}
		}
		eligible := 0
		for i := range view {
			if eligibleFor(&view[i], &spec) {
				eligible++
			}
		}
		got, err := Place(view, n, spec, rng)
		if eligible < n {
			var e *TooFewServersError
			if !errors.As(err, &e) || e.Eligible != eligible || e.Need != n {
				t.Fatalf("iter %d: %d eligible for %d shards: want TooFewServersError, got %v", iter, eligible, n, err)
			}
			if sum := e.Eligible + e.Unknown + e.Suspect + e.Dead + e.Draining + e.InUse + e.Excluded + e.Full; sum != len(view) {
				t.Fatalf("iter %d: %v accounts for %d servers of %d", iter, err, sum, len(view))
			}
			continue
		}
		if err != nil {
			t.Fatalf("iter %d: %d eligible for %d shards: %v", iter, eligible, n, err)
		}
		successes++
		if err := checkPlace(view, n, spec, got); err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		m := 0
		for _, l := range rackLoads(view, got) {
			m = max(m, l)
		}
		if want := optimalMax(view, n, spec); m != want {
			t.Fatalf("iter %d: largest rack holds %d, optimum %d: %v", iter, m, want, got)
		}
		// Replacing any shard keeps the rules.
		idx := rng.IntN(n)
		sub, err := Replace(view, got, idx, spec, rng)
		if err != nil {
			if !errors.Is(err, ErrTooFewServers) || eligible > n {
				t.Fatalf("iter %d: replace %d of %v with %d eligible: %v", iter, idx, got, eligible, err)
			}
			continue
		}
		if err := checkReplace(view, got, idx, spec, sub); err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
	}
	if successes < 500 {
		t.Fatalf("only %d of 3000 random cases placed; the generator is too harsh to test much", successes)
	}
}
