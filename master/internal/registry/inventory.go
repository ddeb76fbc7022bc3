package registry

import (
	"cmp"
	"slices"
)

// key is a ShardID packed into 12 bytes with 4-byte alignment, where
// ShardID itself takes 16 (the uint64 pads the struct). Keys order as
// ShardIDs do: by slice, then index.
type key struct{ hi, lo, index uint32 }

func keyOf(s ShardID) key { return key{uint32(s.Slice >> 32), uint32(s.Slice), s.Index} }

func (k key) shard() ShardID { return ShardID{uint64(k.hi)<<32 | uint64(k.lo), k.index} }

func compareKeys(a, b key) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	if c := cmp.Compare(a.lo, b.lo); c != 0 {
		return c
	}
	return cmp.Compare(a.index, b.index)
}

// minCompact is the smallest number of pending changes that triggers a
// compaction, so that small inventories do not re-merge on every change.
const minCompact = 1024

// shardSet is one server's inventory. A Go map costs 25–56 bytes per entry
// at a million entries (slots of 16 or 24 bytes at load factors between
// 7/16 and 7/8, plus control bytes), so the bulk of the set is a sorted
// slice of 12-byte keys instead, and only recent heartbeat changes sit in
// small maps: added (keys not in base) and removed (keys in base). When the
// changes exceed an eighth of base they are merged into a new base, which
// keeps the maps small and costs O(1) amortised per change.
//
// The zero shardSet is empty and ready to use.
type shardSet struct {
	base    []key // sorted, no duplicates
	added   map[key]struct{}
	removed map[key]struct{}
}

// newShardSet returns a set holding keys, which it takes ownership of and
// sorts if needed. Full reports arrive in shard order (ListShards order),
// so the sort is usually a linear check.
func newShardSet(keys []key) shardSet {
	if !slices.IsSortedFunc(keys, compareKeys) {
		slices.SortFunc(keys, compareKeys)
	}
	keys = slices.Compact(keys)
	if cap(keys)-len(keys) > len(keys)/4 {
		// Batches were appended with doubling; do not keep the slack.
		keys = slices.Clone(keys)
	}
	return shardSet{base: keys}
}

func (s *shardSet) inBase(k key) bool {
	_, found := slices.BinarySearchFunc(s.base, k, compareKeys)
	return found
}

func (s *shardSet) has(k key) bool {
	if _, ok := s.added[k]; ok {
		return true
	}
	if _, ok := s.removed[k]; ok {
		return false
	}
	return s.inBase(k)
}

func (s *shardSet) len() int { return len(s.base) + len(s.added) - len(s.removed) }

func (s *shardSet) add(k key) {
	if _, ok := s.removed[k]; ok {
		delete(s.removed, k)
		return
	}
	if _, ok := s.added[k]; ok || s.inBase(k) {
		return
	}
	if s.added == nil {
		s.added = make(map[key]struct{})
	}
	s.added[k] = struct{}{}
	s.maybeCompact()
}

func (s *shardSet) remove(k key) {
	if _, ok := s.added[k]; ok {
		delete(s.added, k)
		return
	}
	if _, ok := s.removed[k]; ok || !s.inBase(k) {
		return
	}
	if s.removed == nil {
		s.removed = make(map[key]struct{})
	}
	s.removed[k] = struct{}{}
	s.maybeCompact()
}

func (s *shardSet) maybeCompact() {
	if n := len(s.added) + len(s.removed); n >= minCompact && n > len(s.base)/8 {
		s.base = s.sorted()
		s.added, s.removed = nil, nil
	}
}

// sorted returns the set's keys in order, in a new slice.
func (s *shardSet) sorted() []key {
	add := make([]key, 0, len(s.added))
	for k := range s.added {
		add = append(add, k)
	}
	slices.SortFunc(add, compareKeys)
	out := make([]key, 0, s.len())
	i := 0
	for _, k := range s.base {
		for i < len(add) && compareKeys(add[i], k) < 0 {
			out = append(out, add[i])
			i++
		}
		if _, gone := s.removed[k]; !gone {
			out = append(out, k)
		}
	}
	return append(out, add[i:]...)
}
