// Package repair plans the work that keeps Cairn's data fully redundant:
// which shards to rebuild, where, from which survivors and in what order,
// and which stored shards are surplus. It is pure: functions of a view of
// the slices and the chunkservers, and an injected random source, with no
// clock, no I/O and no goroutines. The master gathers the view (the state
// machine's slices, the registry's liveness and inventories, the reports of
// corrupt shards) and carries the plan out.
//
// # Order
//
// A slice stored as RS(k,m) (or m+1 copies, k = 1) stays readable while k
// of its shards are; its redundancy is the number of readable shards beyond
// k. Rebuilds go in increasing redundancy, so a slice one loss from being
// lost is repaired before one that can still bear two; shards that are
// readable but must leave a draining server come last, as they are not at
// risk.
//
// # Targets
//
// Each rebuilt shard goes to a server chosen by placement.Replace: live,
// with room, holding no other shard of the slice, on the least used rack.
// At most Limits.PerTarget rebuilds are planned for one target at a time,
// so one empty server does not take a whole repair storm.
package repair

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/master/internal/placement"
)

// State is a chunkserver's condition as repair sees it.
type State uint8

const (
	// Unsure servers (suspect, or not heard from since the leader took
	// over) are neither sources nor lost: repair waits for them.
	Unsure State = iota
	// Up servers serve their shards.
	Up
	// Draining servers serve their shards, which must move elsewhere.
	Draining
	// Down servers are dead past the grace period: their shards are lost.
	Down
)

// Key names one shard.
type Key struct {
	Slice uint64
	Index uint32
}

// Location is a recorded shard: shard Index lives on Server.
type Location struct {
	Index  uint32
	Server string
}

// Slice is a committed slice as the state machine records it.
type Slice struct {
	ID     uint64
	Layout erasure.Layout
	Length uint64
	Shards []Location
}

// View is what the master knows of the cluster. Servers absent from
// Servers are Unsure.
type View struct {
	Servers map[string]State
	// Bad are shards that cannot be read where they are recorded:
	// reported corrupt, or missing from their server's inventory.
	Bad map[Key]bool
	// Busy are shards with a rebuild or move in flight; they are not
	// planned again.
	Busy map[Key]bool
}

// Health is one slice's condition.
type Health struct {
	// Readable is the number of shards that can be read.
	Readable int
	// Needed is k: the shards a read needs.
	Needed int
	// Total is the number of shards the layout has.
	Total int
	// Lost are the indexes that must be rebuilt (no location, a Down
	// server, or Bad); Moving those on Draining servers.
	Lost, Moving []uint32
	// Waiting counts shards on Unsure servers.
	Waiting int
}

// Tolerable is how many more shard losses the slice can bear; negative
// when it cannot be read.
func (h Health) Tolerable() int { return h.Readable - h.Needed }

// Unreadable reports whether the slice has fewer shards than a read needs
// even if every Unsure server answers again: lost for good, not merely
// waiting on late servers.
func (h Health) Unreadable() bool { return h.Readable+h.Waiting < h.Needed }

// Healthy reports whether every shard is readable where it is recorded.
func (h Health) Healthy() bool { return h.Readable == h.Total }

// Assess returns the health of s in v.
func Assess(s Slice, v View) Health {
	h := Health{Needed: s.Layout.DataShards(), Total: s.Layout.Shards()}
	at := make(map[uint32]string, len(s.Shards))
	for _, loc := range s.Shards {
		at[loc.Index] = loc.Server
	}
	for i := range uint32(h.Total) {
		srv, ok := at[i]
		if !ok || v.Bad[Key{s.ID, i}] {
			h.Lost = append(h.Lost, i)
			continue
		}
		switch v.Servers[srv] {
		case Up:
			h.Readable++
		case Draining:
			h.Readable++
			h.Moving = append(h.Moving, i)
		case Down:
			h.Lost = append(h.Lost, i)
		default:
			h.Waiting++
		}
	}
	return h
}

// Task is one shard to rebuild on Target from Sources.
type Task struct {
	Slice  uint64
	Layout erasure.Layout
	Length uint64
	Index  uint32
	// From is the server the shard is recorded on ("" if none); the new
	// location replaces it only if it is still recorded there.
	From   string
	Target string
	// Sources are the slice's readable shards.
	Sources []Location
	// Redundancy is the slice's readable shards beyond k when planned.
	Redundancy int
	// Move is set for a shard leaving a draining server (still readable).
	Move bool
	// Bytes is the shard's length.
	Bytes uint64
}

// Summary describes the slices a plan looked at.
type Summary struct {
	Slices, Degraded, Lost int
	// AtRisk counts shards to rebuild (not drain moves); BytesLeft their
	// bytes, drain moves included.
	AtRisk    int
	BytesLeft uint64
	// Unplaced counts shards no target could take now.
	Unplaced int
}

// Limits bound a plan.
type Limits struct {
	// MaxTasks bounds the tasks returned (0: no bound).
	MaxTasks int
	// PerTarget bounds the rebuilds planned for one target, counting
	// InFlight (0: no bound).
	PerTarget int
	// InFlight counts the rebuilds already planned per target, running
	// or waiting to be handed out.
	InFlight map[string]int
	// Reserve is the free space placement keeps on every server.
	Reserve placement.Reserve
}

type need struct {
	slice      int // index into slices
	index      uint32
	redundancy int
	move       bool
}

// Plan returns the rebuilds that restore full redundancy to slices, in the
// order they should run (least redundancy first, drain moves last), and a
// summary. cands is the placement view; Free is charged for each planned
// shard so a plan does not overfill a server. rng supplies placement's
// random choices.
func Plan(all []Slice, v View, cands []placement.Candidate, lim Limits, rng *rand.Rand) ([]Task, Summary, error) {
	if rng == nil {
		return nil, Summary{}, errors.New("repair: nil rng")
	}
	var sum Summary
	var needs []need
	for i, s := range all {
		sum.Slices++
		h := Assess(s, v)
		if h.Tolerable() < 0 {
			// Too few shards to rebuild from. Shards on late servers
			// may still come back: lost only if they could not make up
			// for the rest.
			switch {
			case h.Unreadable():
				sum.Lost++
			case len(h.Lost) > 0:
				sum.Degraded++
			}
			continue
		}
		if len(h.Lost) > 0 {
			sum.Degraded++
		}
		for _, idx := range h.Lost {
			sum.AtRisk++
			sum.BytesLeft += uint64(s.Layout.ShardLength(int64(s.Length), int(idx)))
			if !v.Busy[Key{s.ID, idx}] {
				needs = append(needs, need{slice: i, index: idx, redundancy: h.Tolerable()})
			}
		}
		for _, idx := range h.Moving {
			sum.BytesLeft += uint64(s.Layout.ShardLength(int64(s.Length), int(idx)))
			if !v.Busy[Key{s.ID, idx}] {
				needs = append(needs, need{slice: i, index: idx, redundancy: h.Tolerable(), move: true})
			}
		}
	}
	slices.SortStableFunc(needs, func(a, b need) int {
		if a.move != b.move {
			if a.move {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(a.redundancy, b.redundancy); c != 0 {
			return c
		}
		if c := cmp.Compare(all[a.slice].ID, all[b.slice].ID); c != 0 {
			return c
		}
		return cmp.Compare(a.index, b.index)
	})

	view := slices.Clone(cands)
	pos := make(map[string]int, len(view))
	for i, c := range view {
		pos[c.ID] = i
	}
	load := make(map[string]int, len(lim.InFlight))
	for id, n := range lim.InFlight {
		load[id] = n
	}
	// current holds each touched slice's shard servers, updated as
	// targets are chosen so two rebuilt shards of a slice never meet.
	current := map[int][]string{}
	var tasks []Task
	for _, n := range needs {
		if lim.MaxTasks > 0 && len(tasks) >= lim.MaxTasks {
			break
		}
		s := all[n.slice]
		cur, ok := current[n.slice]
		if !ok {
			cur = make([]string, s.Layout.Shards())
			for _, loc := range s.Shards {
				if int(loc.Index) < len(cur) {
					cur[loc.Index] = loc.Server
				}
			}
			current[n.slice] = cur
		}
		size := uint64(s.Layout.ShardLength(int64(s.Length), int(n.index)))
		var exclude []string
		if lim.PerTarget > 0 {
			for id, l := range load {
				if l >= lim.PerTarget {
					exclude = append(exclude, id)
				}
			}
			slices.Sort(exclude)
		}
		spec := placement.Spec{Layout: s.Layout.String(), ShardSize: size, Reserve: lim.Reserve, Exclude: exclude}
		target, err := placement.Replace(view, cur, int(n.index), spec, rng)
		if err != nil {
			if errors.Is(err, placement.ErrTooFewServers) {
				sum.Unplaced++
				continue
			}
			return nil, sum, err
		}
		from := ""
		for _, loc := range s.Shards {
			if loc.Index == n.index {
				from = loc.Server
			}
		}
		tasks = append(tasks, Task{
			Slice: s.ID, Layout: s.Layout, Length: s.Length, Index: n.index,
			From: from, Target: target, Sources: sources(s, v, n.index),
			Redundancy: n.redundancy, Move: n.move, Bytes: size,
		})
		cur[n.index] = target
		load[target]++
		if p, ok := pos[target]; ok {
			view[p].Free -= min(view[p].Free, size)
		}
	}
	return tasks, sum, nil
}

// sources lists the readable shards of s other than skip, servers that
// are Up before Draining ones (so drains do not slow on their own reads),
// then by index.
func sources(s Slice, v View, skip uint32) []Location {
	var out []Location
	for _, loc := range s.Shards {
		if loc.Index == skip || v.Bad[Key{s.ID, loc.Index}] {
			continue
		}
		if st := v.Servers[loc.Server]; st == Up || st == Draining {
			out = append(out, loc)
		}
	}
	slices.SortFunc(out, func(a, b Location) int {
		da, db := v.Servers[a.Server] == Draining, v.Servers[b.Server] == Draining
		if da != db {
			if da {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Index, b.Index)
	})
	return out
}

// Record is how the state machine knows a slice, for Surplus.
type Record uint8

const (
	// Gone: neither pending nor committed (garbage, or collected).
	Gone Record = iota
	// Pending: allocated and not committed yet; its shards may be
	// being written.
	Pending
	// Committed: the slice's recorded locations are authoritative.
	Committed
)

// Lookup tells Surplus what the state machine records for a slice.
type Lookup func(slice uint64) (Slice, Record, error)

// Surplus returns the shards server holds (held, from its inventory)
// that must go: shards of slices that are gone, and shards of committed
// slices recorded elsewhere (rebuilt while the server was away, or moved
// off it by a drain). Shards of pending slices and Busy shards are kept.
func Surplus(server string, held []Key, busy map[Key]bool, lookup Lookup) ([]Key, error) {
	var out []Key
	var cached Slice
	var rec Record
	have := false
	for _, k := range held {
		if busy[k] {
			continue
		}
		if !have || cached.ID != k.Slice {
			s, r, err := lookup(k.Slice)
			if err != nil {
				return out, err
			}
			s.ID = k.Slice
			cached, rec, have = s, r, true
		}
		switch rec {
		case Gone:
			out = append(out, k)
		case Committed:
			recorded := ""
			for _, loc := range cached.Shards {
				if loc.Index == k.Index {
					recorded = loc.Server
				}
			}
			// A shard with no recorded location is kept: it may be the
			// only copy of an index a partial commit left out.
			if recorded != "" && recorded != server {
				out = append(out, k)
			}
		}
	}
	return out, nil
}
