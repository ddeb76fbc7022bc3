package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Compaction.
//
// Every write commits a new slice, so random writes leave a chunk with
// many small slices: reads fetch that many pieces and overwritten bytes
// stay stored. Compacting a chunk reads its bytes as they resolve now,
// writes them as one new slice and asks the master to swap it in for the
// refs that were read (CompactChunk). Slices committed in between stay on
// top, so compaction never waits for writers and never loses a write; if
// the chunk changed otherwise (truncated, say) the master refuses the swap
// and the new slice expires unused. The master lists fragmented chunks and
// hands them out one client at a time (NextCompaction); a Client with
// ClientConfig.Compaction set asks for them in the background, as JuiceFS
// mounts do their background jobs.

// DefaultCompactionPoll is how often an idle compactor asks the master
// for a fragmented chunk.
const DefaultCompactionPoll = 2 * time.Second

// errChunkChanged: the master refused a swap because the chunk changed
// after it was read; nothing is wrong, the chunk is listed again if it is
// still fragmented.
var errChunkChanged = errors.New("client: chunk changed while it was compacted")

// CompactChunk rewrites chunk idx of inode (file bytes [idx×ChunkSize,
// (idx+1)×ChunkSize)) as one slice and swaps it in. It returns
// how many refs the new slice replaced, 0 when the chunk had fewer than
// two or changed before the swap.
func (d *DataPath) CompactChunk(ctx context.Context, inode, idx uint64) (int, error) {
	cs := uint64(d.cfg.ChunkSize)
	base := idx * cs
	res, err := d.meta.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: inode, Offset: base, Length: cs})
	if masterpb.ErrnoOf(err) == syscall.ENOENT {
		return 0, errChunkChanged // the file is gone
	}
	if err != nil {
		return 0, fmt.Errorf("client: compact chunk %d of inode %d: get layout: %w", idx, inode, err)
	}
	lay, err := parseLayout(inode, res)
	if err != nil {
		return 0, err
	}
	// Only the refs that lie in this chunk: a layout lists every ref of
	// the chunks its range touches, and the range is exactly one chunk.
	var replaced []*masterpb.SliceRef
	lo, hi := int64(-1), int64(0)
	for _, r := range res.Slices {
		if r.FileOffset < base || r.FileOffset-base >= cs {
			continue
		}
		replaced = append(replaced, &masterpb.SliceRef{SliceId: r.SliceId, FileOffset: r.FileOffset, SliceOffset: r.SliceOffset, Length: r.Length})
		if lo < 0 || int64(r.FileOffset) < lo {
			lo = int64(r.FileOffset)
		}
		hi = max(hi, int64(r.FileOffset+r.Length))
	}
	if len(replaced) < 2 {
		return 0, nil
	}
	buf := d.bufs.get(int(hi - lo))
	defer d.bufs.put(buf)
	data := buf[:hi-lo]
	if _, err := d.readRange(ctx, lay, data, lo); err != nil {
		return 0, fmt.Errorf("client: compact chunk %d of inode %d: %w", idx, inode, err)
	}
	id, good, err := d.store(ctx, inode, data)
	if err != nil {
		return 0, fmt.Errorf("client: compact chunk %d of inode %d: %w", idx, inode, err)
	}
	_, err = d.meta.CompactChunk(ctx, &masterpb.CompactChunkRequest{
		Header: d.header(), Inode: inode, Chunk: idx, Replaced: replaced,
		SliceId: id, Offset: uint64(lo), Length: uint64(hi - lo), Shards: good,
	})
	d.layouts.drop(inode)
	switch {
	case masterpb.ErrnoOf(err) == syscall.EAGAIN, masterpb.ErrnoOf(err) == syscall.ENOENT:
		// Changed, or removed, since it was read: the new slice expires.
		return 0, errChunkChanged
	case err != nil:
		return 0, fmt.Errorf("client: compact chunk %d of inode %d: swap in slice %d: %w", idx, inode, id, err)
	}
	return len(replaced), nil
}

// compactor owns a Client's background compaction goroutine.
type compactor struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (c *Client) startCompactor() {
	ctx, cancel := context.WithCancel(context.Background())
	c.comp = &compactor{cancel: cancel}
	c.comp.wg.Add(1)
	go func() {
		defer c.comp.wg.Done()
		c.compactLoop(ctx)
	}()
}

func (c *Client) stopCompactor() {
	if c.comp != nil {
		c.comp.cancel()
		c.comp.wg.Wait()
	}
}

// compactLoop asks the master for fragmented chunks and compacts them one
// at a time, polling every CompactionPoll while there are none. Failures
// are logged; the master hands a failed chunk out again after its claim
// lapses.
func (c *Client) compactLoop(ctx context.Context) {
	poll := c.cfg.CompactionPoll
	if poll <= 0 {
		poll = DefaultCompactionPoll
	}
	log := c.data.log
	for {
		next, err := call(ctx, c.conn, &masterpb.NextCompactionRequest{}, masterpb.MasterClient.NextCompaction)
		if err == nil && next.Found {
			start := time.Now()
			n, err := c.data.CompactChunk(ctx, next.Inode, next.Chunk)
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, errChunkChanged):
				log.Debug("compaction skipped: chunk changed", "inode", next.Inode, "chunk", next.Chunk)
			case err != nil:
				log.Warn("compaction failed", "inode", next.Inode, "chunk", next.Chunk, "err", err)
			default:
				log.Debug("chunk compacted", "inode", next.Inode, "chunk", next.Chunk, "refs", n, "took", time.Since(start))
			}
			if err == nil {
				continue
			}
		} else if err != nil && ctx.Err() == nil {
			log.Debug("asking for compaction work", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		}
	}
}

// Compact compacts now every chunk of regular file p that has more than
// one slice ref, whatever the master's fragmentation threshold, and
// returns how many chunks it rewrote. A chunk that changes while it is
// being rewritten is left as it is.
func (c *Client) Compact(ctx context.Context, p string) (int, error) {
	fi, err := c.Stat(ctx, p)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, pathErr("compact", p, syscall.EINVAL)
	}
	n := 0
	for idx := uint64(0); int64(idx)*c.data.cfg.ChunkSize < fi.Size(); idx++ {
		refs, err := c.data.CompactChunk(ctx, fi.Inode(), idx)
		switch {
		case errors.Is(err, errChunkChanged):
		case err != nil:
			return n, err
		case refs > 0:
			n++
		}
	}
	return n, nil
}
