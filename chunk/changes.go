package chunk

import (
	"slices"
	"sync"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// maxChanges bounds the shard changes kept between two heartbeats; past
// it they are dropped and the next heartbeat sends a full report instead.
const maxChanges = 1 << 18

// changes records the shards stored and deleted since the last heartbeat
// took them, so the master's inventory follows without full reports. The
// last change to a shard wins: a shard deleted and then rebuilt within one
// interval is reported stored.
type changes struct {
	mu       sync.Mutex
	present  map[shardstore.ID]bool
	overflow bool
}

func (c *changes) note(id shardstore.ID, stored bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.present == nil {
		c.present = make(map[shardstore.ID]bool)
	}
	if _, ok := c.present[id]; !ok && len(c.present) >= maxChanges {
		c.overflow = true
		return
	}
	c.present[id] = stored
}

// ShardChanges returns, and forgets, the shards stored (added) and deleted
// (removed) since the previous call, in shard order. overflow reports that
// some changes were dropped: the caller should send a full report. A caller
// that fails to deliver them hands them back with ReturnShardChanges.
func (s *Server) ShardChanges() (added, removed []*chunkpb.ShardID, overflow bool) {
	c := &s.svc.changes
	c.mu.Lock()
	present, overflow := c.present, c.overflow
	c.present, c.overflow = nil, false
	c.mu.Unlock()
	ids := make([]shardstore.ID, 0, len(present))
	for id := range present {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b shardstore.ID) int {
		switch {
		case a.Less(b):
			return -1
		case b.Less(a):
			return 1
		}
		return 0
	})
	for _, id := range ids {
		pb := &chunkpb.ShardID{SliceId: id.Slice, Index: id.Index}
		if present[id] {
			added = append(added, pb)
		} else {
			removed = append(removed, pb)
		}
	}
	return added, removed, overflow
}

// ReturnShardChanges puts back changes ShardChanges returned that could not
// be delivered; changes recorded since take precedence.
func (s *Server) ReturnShardChanges(added, removed []*chunkpb.ShardID) {
	c := &s.svc.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.present == nil {
		c.present = make(map[shardstore.ID]bool)
	}
	put := func(ids []*chunkpb.ShardID, stored bool) {
		for _, pb := range ids {
			id := storeID(pb)
			if _, newer := c.present[id]; newer {
				continue
			}
			if len(c.present) >= maxChanges {
				c.overflow = true
				return
			}
			c.present[id] = stored
		}
	}
	put(added, true)
	put(removed, false)
}
