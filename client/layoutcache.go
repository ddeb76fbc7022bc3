package client

import (
	"container/list"
	"context"
	"sync"
)

// DefaultLayoutCache is how many files' layouts a DataPath keeps.
const DefaultLayoutCache = 4096

// layoutCache keeps recently read files' layouts, each with the file
// version it was fetched at. Every change to a file's bytes or size bumps
// its version on the master, so a cached layout whose version matches what
// an open just saw is exactly what GetLayout would return, and the open
// costs no extra master call. A layout that led a read to a missing or
// failing shard is dropped, so the next open fetches fresh locations
// (repair and draining move shards without changing the file).
type layoutCache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *fileLayout, most recent first
	index map[uint64]*list.Element
}

func newLayoutCache(max int) *layoutCache {
	return &layoutCache{max: max, lru: list.New(), index: make(map[uint64]*list.Element)}
}

// get returns inode's cached layout if it was fetched at version.
func (c *layoutCache) get(inode, version uint64) *fileLayout {
	if c.max <= 0 || version == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.index[inode]
	if !ok {
		return nil
	}
	lay := e.Value.(*fileLayout)
	if lay.version != version {
		return nil
	}
	c.lru.MoveToFront(e)
	return lay
}

// put records lay as inode's newest known layout.
func (c *layoutCache) put(lay *fileLayout) {
	if c.max <= 0 || lay.version == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.index[lay.inode]; ok {
		if e.Value.(*fileLayout).version > lay.version {
			return // a newer one is already known
		}
		e.Value = lay
		c.lru.MoveToFront(e)
		return
	}
	c.index[lay.inode] = c.lru.PushFront(lay)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.index, old.Value.(*fileLayout).inode)
	}
}

// drop forgets inode's layout.
func (c *layoutCache) drop(inode uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.index[inode]; ok {
		c.lru.Remove(e)
		delete(c.index, inode)
	}
}

// OpenReaderAt is OpenReader for a file whose version the caller has just
// seen (in the attributes of an open or a stat): when the cached layout is
// of that version, no master call is made.
func (d *DataPath) OpenReaderAt(ctx context.Context, inode, version uint64) (*Reader, error) {
	if lay := d.layouts.get(inode, version); lay != nil {
		return d.newReader(inode, lay), nil
	}
	return d.OpenReader(ctx, inode)
}
