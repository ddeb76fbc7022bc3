package placement

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Status is a chunkserver's condition as placement sees it. Only Live
// servers receive shards. The zero value, StatusUnknown, is not eligible, so
// a view built with a forgotten Status field places nothing rather than
// everything.
type Status uint8

// Statuses of a chunkserver.
const (
	// StatusUnknown is the zero Status: never eligible.
	StatusUnknown Status = iota
	// Live servers heartbeat on time and take new shards.
	Live
	// Suspect servers missed recent heartbeats; they may be gone, so they
	// take no new shards until they heartbeat again.
	Suspect
	// Dead servers have been silent past the repair grace period.
	Dead
	// Draining servers are being emptied by an operator; they keep serving
	// reads but take no new shards.
	Draining
)

// String returns "live", "suspect", "dead", "draining" or "unknown".
func (s Status) String() string {
	switch s {
	case Live:
		return "live"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Draining:
		return "draining"
	}
	return "unknown"
}

// Candidate is one chunkserver in the view placement chooses from. A view
// is a []Candidate; IDs must be unique and non-empty. The view is only read.
type Candidate struct {
	// ID names the chunkserver; it is what Place and Replace return.
	ID string
	// Rack names the server's failure domain; "" is the unknown rack, one
	// rack shared by every server without a rack.
	Rack string
	// Capacity is the server's size in bytes; the Reserve's Fraction is
	// taken of it.
	Capacity uint64
	// Free is how many bytes the server can still store. It decides both
	// whether a shard fits and how likely the server is to be chosen.
	Free uint64
	// Status must be Live for the server to be eligible.
	Status Status
}

// DefaultReserveFraction is the share of each server's capacity that the
// master keeps free by default (1%): Reserve{Fraction: DefaultReserveFraction}.
const DefaultReserveFraction = 0.01

// Reserve is how much free space a chunkserver must keep after storing a
// shard: the larger of Bytes and Fraction of its capacity. It keeps room for
// the store's own overhead (compactions, metadata) and for repair. The zero
// Reserve keeps nothing back; the master sets it from its configuration.
type Reserve struct {
	// Bytes is a minimum number of bytes to keep free on every server.
	Bytes uint64
	// Fraction of the server's Capacity to keep free, in [0, 1).
	Fraction float64
}

// keep returns how many bytes a server of the given capacity must keep free.
func (r Reserve) keep(capacity uint64) uint64 {
	f := math.Ceil(r.Fraction * float64(capacity))
	var byFraction uint64
	if f >= math.MaxUint64 { // float64(MaxUint64) rounds up to 2^64
		byFraction = math.MaxUint64
	} else {
		byFraction = uint64(f)
	}
	return max(r.Bytes, byFraction)
}

// Spec describes the slice whose shards are being placed.
type Spec struct {
	// Layout names the slice's layout in error messages, e.g. "RS(4,2)" or
	// "Replicated(3)" (erasure.Layout's String). It does not affect the
	// choice.
	Layout string
	// ShardSize is the most bytes any one shard of the slice will occupy.
	ShardSize uint64
	// Reserve is the free space a server must keep beyond the shard.
	Reserve Reserve
	// Exclude lists servers that must not be chosen, typically those that
	// already failed a write of this slice. IDs not in the view are ignored.
	Exclude []string
}

// fits reports whether c has room for a shard of the spec's size with the
// reserve kept, without overflowing.
func (s *Spec) fits(c *Candidate) bool {
	need := s.ShardSize
	keep := s.Reserve.keep(c.Capacity)
	if need > math.MaxUint64-keep {
		return false
	}
	return c.Free >= need+keep
}

func (s *Spec) validate() error {
	if f := s.Reserve.Fraction; !(f >= 0 && f < 1) { // also rejects NaN
		return fmt.Errorf("placement: %s: reserve fraction %v is outside [0, 1)", s.layoutName(), f)
	}
	return nil
}

func (s *Spec) layoutName() string {
	if s.Layout == "" {
		return "slice"
	}
	return s.Layout
}

// Place chooses n distinct chunkservers for the n shards of a slice (k+m for
// RS(k,m), n for n replicas) and returns their IDs, element i for shard i.
// The answer obeys the package's rules: every server is eligible, no server
// appears twice, and racks are balanced as evenly as the eligible servers
// allow; within that, servers with more free space are more likely. rng
// supplies every random choice (Place draws from it and nothing else), so a
// seeded rng makes the answer reproducible.
//
// If fewer than n servers are eligible, Place returns a *TooFewServersError
// (errors.Is(err, ErrTooFewServers)). A view with an empty or repeated ID, n
// < 1, a nil rng or an invalid Reserve is an error too.
func Place(view []Candidate, n int, spec Spec, rng *rand.Rand) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("placement: %s: cannot place %d shards", spec.layoutName(), n)
	}
	if rng == nil {
		return nil, errors.New("placement: nil random source")
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	p, err := newPool(view, &spec, nil, "")
	if err != nil {
		return nil, err
	}
	if len(p.members) < n {
		e := p.tally
		e.Layout, e.Shard, e.Need, e.Eligible = spec.Layout, -1, n, len(p.members)
		return nil, &e
	}
	out := make([]string, n)
	for i := range out {
		out[i] = view[p.pick(rng)].ID
	}
	return out, nil
}

// Replace chooses a substitute chunkserver for shard index of a slice whose
// shards currently sit on current (element i for shard i; "" for a shard
// with no server yet). It is used when a server fails mid-write and when
// repair rebuilds a lost shard. The substitute is eligible, is not
// current[index] (whatever its state — a substitute is by definition
// another server), holds none of the slice's other shards, and lies in a
// rack holding as few of the other shards as the eligible servers allow;
// within that, more free space makes a server more likely.
//
// If no server qualifies, Replace returns a *TooFewServersError with Shard
// set to index. An index outside current, a view with an empty or repeated
// ID, a nil rng or an invalid Reserve is an error too.
func Replace(view []Candidate, current []string, index int, spec Spec, rng *rand.Rand) (string, error) {
	if index < 0 || index >= len(current) {
		return "", fmt.Errorf("placement: %s: replace shard %d of %d", spec.layoutName(), index, len(current))
	}
	if rng == nil {
		return "", errors.New("placement: nil random source")
	}
	if err := spec.validate(); err != nil {
		return "", err
	}
	others := make(map[string]struct{}, len(current))
	for i, id := range current {
		if i != index && id != "" {
			others[id] = struct{}{}
		}
	}
	p, err := newPool(view, &spec, others, current[index])
	if err != nil {
		return "", err
	}
	if len(p.members) == 0 {
		e := p.tally
		e.Layout, e.Shard, e.Need, e.Eligible = spec.Layout, index, 1, 0
		return "", &e
	}
	// The other shards' racks count towards the balance, so the substitute
	// goes where the slice is thinnest. Holders outside the view, or in a
	// rack with no eligible server, cannot change the choice and are skipped.
	for i := range view {
		if _, ok := others[view[i].ID]; ok {
			if r, ok := p.rackOf[view[i].Rack]; ok {
				p.load[r]++
			}
		}
	}
	return view[p.pick(rng)].ID, nil
}

// pool is the set of eligible servers for one call, with per-rack state for
// water-filling. Everything is kept in slices in view order, never iterated
// out of a map, so that the choices depend only on the inputs and rng.
type pool struct {
	view    []Candidate
	members []int // indexes into view of eligible servers
	used    []bool
	rack    []int // rack number of each member
	rackOf  map[string]int
	load    []int // shards placed (or held) per rack
	avail   []int // unused members per rack
	tally   TooFewServersError
}

// newPool filters view down to the eligible servers. others are servers
// holding other shards of the slice and self the server being replaced;
// neither may be chosen.
func newPool(view []Candidate, spec *Spec, others map[string]struct{}, self string) (*pool, error) {
	excluded := make(map[string]struct{}, len(spec.Exclude)+1)
	for _, id := range spec.Exclude {
		excluded[id] = struct{}{}
	}
	if self != "" {
		excluded[self] = struct{}{}
	}
	p := &pool{view: view, rackOf: make(map[string]int)}
	seen := make(map[string]struct{}, len(view))
	for i := range view {
		c := &view[i]
		if c.ID == "" {
			return nil, fmt.Errorf("placement: %s: view entry %d has no chunkserver ID", spec.layoutName(), i)
		}
		if _, dup := seen[c.ID]; dup {
			return nil, fmt.Errorf("placement: %s: view lists chunkserver %q twice", spec.layoutName(), c.ID)
		}
		seen[c.ID] = struct{}{}
		// One reason per server, the most fundamental first.
		_, isExcluded := excluded[c.ID]
		_, isOther := others[c.ID]
		switch {
		case c.Status == Suspect:
			p.tally.Suspect++
		case c.Status == Dead:
			p.tally.Dead++
		case c.Status == Draining:
			p.tally.Draining++
		case c.Status != Live:
			p.tally.Unknown++
		case isOther:
			p.tally.InUse++
		case isExcluded:
			p.tally.Excluded++
		case !spec.fits(c):
			p.tally.Full++
		default:
			r, ok := p.rackOf[c.Rack]
			if !ok {
				r = len(p.load)
				p.rackOf[c.Rack] = r
				p.load = append(p.load, 0)
				p.avail = append(p.avail, 0)
			}
			p.members = append(p.members, i)
			p.rack = append(p.rack, r)
			p.avail[r]++
		}
	}
	p.used = make([]bool, len(p.members))
	return p, nil
}

// pick chooses one unused member from the least-loaded racks that still have
// one, weighted by free bytes, marks it used and returns its view index. The
// pool must have an unused member.
func (p *pool) pick(rng *rand.Rand) int {
	level := math.MaxInt
	for r, n := range p.avail {
		if n > 0 && p.load[r] < level {
			level = p.load[r]
		}
	}
	total := 0.0
	count := 0
	for j, vi := range p.members {
		if !p.used[j] && p.load[p.rack[j]] == level {
			total += float64(p.view[vi].Free)
			count++
		}
	}
	var chosen int
	if total > 0 {
		// Cumulative search; float rounding can leave x at or past the
		// last bucket's end, so the last positive-weight member is the
		// fallback.
		x := rng.Float64() * total
		chosen = -1
		for j, vi := range p.members {
			if p.used[j] || p.load[p.rack[j]] != level {
				continue
			}
			w := float64(p.view[vi].Free)
			if w <= 0 {
				continue
			}
			chosen = j
			if x < w {
				break
			}
			x -= w
		}
	} else {
		// Every candidate has zero free bytes (possible only with a zero
		// shard size and reserve): choose uniformly.
		k := rng.IntN(count)
		for j := range p.members {
			if p.used[j] || p.load[p.rack[j]] != level {
				continue
			}
			if k == 0 {
				chosen = j
				break
			}
			k--
		}
	}
	p.used[chosen] = true
	p.load[p.rack[chosen]]++
	p.avail[p.rack[chosen]]--
	return p.members[chosen]
}
