package registry

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, s := range []ShardID{{0, 0}, {1, 2}, {1 << 32, 7}, {1<<64 - 1, 1<<32 - 1}, {0xdeadbeef_cafef00d, 31}} {
		if got := keyOf(s).shard(); got != s {
			t.Errorf("keyOf(%v).shard() = %v", s, got)
		}
	}
	// Keys order as (slice, index) does.
	a, b := keyOf(ShardID{1<<32 - 1, 9}), keyOf(ShardID{1 << 32, 0})
	if compareKeys(a, b) >= 0 {
		t.Errorf("compareKeys(%v, %v) >= 0", a, b)
	}
}

// TestShardSetModel applies random adds and removes to a shardSet and to a
// map and compares them after every step, through several compactions and
// rebuilds from a full report.
func TestShardSetModel(t *testing.T) {
	tests := []struct {
		name     string
		universe uint64 // keys are drawn from [0, universe)
		ops      int
		base     int // keys in the initial full report
	}{
		{"small dense", 50, 5000, 0},
		{"many compactions", 5000, 40000, 0},
		{"large base", 200000, 30000, 100000},
		{"unsorted duplicate report", 3000, 20000, 4000},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ti), 99))
			draw := func() key {
				v := rng.Uint64N(tt.universe)
				return keyOf(ShardID{Slice: v / 4 << 31, Index: uint32(v % 4)})
			}
			model := map[key]bool{}
			var report []key
			for range tt.base {
				k := draw()
				report = append(report, k)
				model[k] = true
			}
			if tt.name != "unsorted duplicate report" {
				slices.SortFunc(report, compareKeys)
				report = slices.Compact(report)
			}
			s := newShardSet(report)
			check := func(step int) {
				t.Helper()
				if s.len() != len(model) {
					t.Fatalf("step %d: len %d, want %d", step, s.len(), len(model))
				}
				k := draw()
				if s.has(k) != model[k] {
					t.Fatalf("step %d: has(%v) = %v, want %v", step, k, s.has(k), model[k])
				}
			}
			for i := range tt.ops {
				k := draw()
				if rng.IntN(2) == 0 {
					s.add(k)
					model[k] = true
				} else {
					s.remove(k)
					delete(model, k)
				}
				check(i)
				if i%997 == 0 {
					want := make([]key, 0, len(model))
					for k := range model {
						want = append(want, k)
					}
					slices.SortFunc(want, compareKeys)
					if got := s.sorted(); !slices.Equal(got, want) {
						t.Fatalf("step %d: sorted() has %d keys, want %d", i, len(got), len(want))
					}
				}
				if n := len(s.added) + len(s.removed); n > max(minCompact, len(s.base)/8+1) {
					t.Fatalf("step %d: %d pending changes over a base of %d: not compacted", i, n, len(s.base))
				}
			}
		})
	}
}
