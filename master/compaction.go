package master

import (
	"context"
	"sync"
	"time"

	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Compaction.
//
// The state machine lists chunks with fsm.FragmentedRefs refs or more.
// Compacting one means reading and writing its bytes, which is client
// work (the master moves no file data): clients that run background jobs
// ask NextCompaction for a chunk, rewrite it as one slice and swap it in
// with CompactChunk. The leader hands each chunk to one client at a time
// and holds back chunks still being written — changed within Quiet, or
// of a file someone holds open (a writer buffers up to 64 MiB between
// commits, longer than any quiet period) — so that a burst of random
// writes is compacted once when it ends rather than once per few writes.
// A chunk that grows past ForceRefs meanwhile is compacted at most once
// per ForceEvery, and only once the writes have added at least
// 1/ForceShare of the chunk's bytes: a compaction rewrites the whole chunk
// (64 MiB, 96 MiB stored under RS(4,2)), and forcing it every ForceRefs 4
// KiB writes multiplied the bytes written by 50 under fio's random
// writes; at a share of 1 the rewrites cost at most what the writes did.
// Past ForceRefs*forceCeiling refs (a chunk rewritten in 4 KiB pieces) a
// chunk is forced whatever its bytes, to bound what a read of it must
// resolve.

// Defaults for CompactionConfig fields left zero.
const (
	// DefaultCompactQuiet is how long a fragmented chunk must go without
	// new refs before it is handed out.
	DefaultCompactQuiet = 3 * time.Second
	// DefaultCompactForceRefs is the ref count at which a chunk is handed
	// out even while it is still being written: past it every read of the
	// chunk pays for too many pieces.
	DefaultCompactForceRefs = 256
	// DefaultCompactForceShare: a chunk still being written is forced
	// only once writes added as many bytes as it holds.
	DefaultCompactForceShare = 1
	// DefaultCompactForceEvery is how often one chunk may be handed out
	// for being too fragmented while it is still being written: each
	// such compaction rewrites the whole chunk, and a chunk under steady
	// random writes would otherwise be rewritten every ForceRefs writes.
	DefaultCompactForceEvery = 30 * time.Second
	// DefaultCompactClaim is how long a chunk handed to one client is
	// withheld from others (a client that died mid-compaction leaves
	// nothing behind but a pending slice that expires).
	DefaultCompactClaim = 2 * time.Minute
)

// compactScan is how many index entries NextCompaction reads at a time,
// and compactPages how many such pages at most per call.
const (
	compactScan  = 1024
	compactPages = 4
)

// forceCeiling: a chunk with ForceRefs*forceCeiling refs is forced even if
// its writes added little: 16384 refs, a chunk overwritten in 4 KiB pieces.
const forceCeiling = 64

// CompactionConfig tunes when fragmented chunks are handed out for
// compaction. Zero fields take the defaults above.
type CompactionConfig struct {
	Quiet      time.Duration
	ForceRefs  int
	ForceShare int
	ForceEvery time.Duration
	Claim      time.Duration
}

func (c CompactionConfig) withDefaults() CompactionConfig {
	if c.Quiet <= 0 {
		c.Quiet = DefaultCompactQuiet
	}
	if c.ForceRefs <= 0 {
		c.ForceRefs = DefaultCompactForceRefs
	}
	if c.ForceShare <= 0 {
		c.ForceShare = DefaultCompactForceShare
	}
	if c.ForceEvery <= 0 {
		c.ForceEvery = DefaultCompactForceEvery
	}
	if c.Claim <= 0 {
		c.Claim = DefaultCompactClaim
	}
	return c
}

type chunkID struct{ inode, chunk uint64 }

// compactClaims are the chunks handed out, soft state of the leader: a new
// leader starts empty, and a chunk handed out twice costs a wasted rewrite
// (the second swap fails its prefix check), never a wrong one.
type compactClaims struct {
	mu     sync.Mutex
	claims map[chunkID]time.Time // chunk -> claim expiry
	forced map[chunkID]time.Time // chunk -> when it was last handed out unquiet
	// light: chunk -> when it was weighed and found not worth forcing.
	// Every client's poll would otherwise decode its whole ref list
	// again; like a forcing, a verdict holds for ForceEvery.
	light map[chunkID]time.Time
	// cursor is where the next search starts (after it; zero: at the
	// start of the index). It moves past pages with nothing due, so
	// chunks beyond a page of claimed or busy ones are reached too.
	cursor chunkID
}

// find pages through the fragmented index with list (entries after a
// chunk, at most limit of them) from the cursor, wrapping at the end, and
// claims the first chunk due; it reads at most pages pages. Pure but for
// list and probe.
func (c *compactClaims) find(list func(after chunkID, limit int) ([]fsm.Fragmented, error), probe chunkProbe, limit, pages int, cfg CompactionConfig, now time.Time) (fsm.Fragmented, bool, error) {
	c.mu.Lock()
	after := c.cursor
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cursor = after
		c.mu.Unlock()
	}()
	wrapped := after == chunkID{}
	for range pages {
		page, err := list(after, limit)
		if err != nil {
			return fsm.Fragmented{}, false, err
		}
		if f, ok := c.claim(page, probe, cfg, now); ok {
			return f, true, nil
		}
		switch {
		case len(page) == limit:
			last := page[len(page)-1]
			after = chunkID{last.Inode, last.Chunk}
		case wrapped:
			// The whole index is read and nothing is due.
			after = chunkID{}
			return fsm.Fragmented{}, false, nil
		default:
			after, wrapped = chunkID{}, true
		}
	}
	return fsm.Fragmented{}, false, nil
}

// chunkProbe reads what the hand-out rules need beyond a chunk's index
// entry.
type chunkProbe struct {
	// weigh returns a chunk's total and main bytes (fsm.ChunkBytes).
	weigh func(f fsm.Fragmented) (total, main uint64, err error)
	// open reports whether a file has open handles, and so may still be
	// written; nil: none has.
	open func(inode uint64) bool
}

// claim picks the first listed chunk that is done being written (quiet
// and its file not open), or too fragmented to wait (see forceable) and
// not forced within ForceEvery, and not claimed, and claims it for
// cfg.Claim. Pure but for probe; time comes in as now.
func (c *compactClaims) claim(list []fsm.Fragmented, probe chunkProbe, cfg CompactionConfig, now time.Time) (fsm.Fragmented, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claims == nil {
		c.claims = make(map[chunkID]time.Time)
		c.forced = make(map[chunkID]time.Time)
		c.light = make(map[chunkID]time.Time)
	}
	for id, exp := range c.claims {
		if !now.Before(exp) {
			delete(c.claims, id)
		}
	}
	for _, m := range []map[chunkID]time.Time{c.forced, c.light} {
		for id, at := range m {
			if now.Sub(at) >= cfg.ForceEvery {
				delete(m, id)
			}
		}
	}
	for _, f := range list {
		id := chunkID{f.Inode, f.Chunk}
		if _, taken := c.claims[id]; taken {
			continue
		}
		busy := now.Sub(time.Unix(0, f.ChangedUnixNano)) < cfg.Quiet || (probe.open != nil && probe.open(f.Inode))
		if busy {
			if _, recent := c.forced[id]; recent || !c.forceable(id, f, probe.weigh, cfg, now) {
				continue
			}
			c.forced[id] = now
		}
		c.claims[id] = now.Add(cfg.Claim)
		return f, true
	}
	return fsm.Fragmented{}, false
}

// forceable reports whether chunk f (id), still being written, is
// fragmented enough to compact now: ForceRefs refs whose writes added
// 1/ForceShare of the main slice's bytes, or ForceRefs*forceCeiling refs.
// A chunk found too light is not weighed again within ForceEvery. c.mu is
// held.
func (c *compactClaims) forceable(id chunkID, f fsm.Fragmented, weigh func(fsm.Fragmented) (uint64, uint64, error), cfg CompactionConfig, now time.Time) bool {
	switch {
	case int(f.Refs) < cfg.ForceRefs:
		return false
	case int(f.Refs) >= cfg.ForceRefs*forceCeiling:
		return true
	}
	if _, ok := c.light[id]; ok {
		return false
	}
	total, main, err := weigh(f)
	if err != nil {
		// Unreadable now: it goes out once quiet.
		return false
	}
	if (total-main)*uint64(cfg.ForceShare) < main {
		c.light[id] = now
		return false
	}
	return true
}

func (c *compactClaims) release(inode, chunk uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.claims, chunkID{inode, chunk})
}

// NextCompaction hands the caller one fragmented chunk to compact, or
// found=false when none is due.
func (m *masterService) NextCompaction(ctx context.Context, req *masterpb.NextCompactionRequest) (*masterpb.NextCompactionResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	list := func(after chunkID, limit int) ([]fsm.Fragmented, error) {
		return s.fsm.ListFragmented(after.inode, after.chunk, limit)
	}
	probe := chunkProbe{
		weigh: func(f fsm.Fragmented) (uint64, uint64, error) { return s.fsm.ChunkBytes(f.Inode, f.Chunk) },
		// Only handles that may write hold a file's chunks back (a
		// reader does not add slices); a count that cannot be read
		// counts as open: the chunk waits for the forcing rules.
		open: func(ino uint64) bool { _, n, err := s.fsm.OpenHandles(ino); return err != nil || n > 0 },
	}
	f, ok, err := s.compact.find(list, probe, compactScan, compactPages, s.cfg.Compaction.withDefaults(), s.now())
	if err != nil {
		return nil, s.toStatus(err)
	}
	if !ok {
		return &masterpb.NextCompactionResponse{}, nil
	}
	return &masterpb.NextCompactionResponse{Found: true, Inode: f.Inode, Chunk: f.Chunk, Refs: f.Refs}, nil
}

// CompactChunk swaps a compacted slice in for the chunk refs it replaces
// (see masterpb.CompactChunkRequest).
func (m *masterService) CompactChunk(ctx context.Context, req *masterpb.CompactChunkRequest) (*masterpb.CompactChunkResponse, error) {
	const op = "compact"
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	base := req.Chunk * fsm.ChunkSize
	if req.Chunk > fsm.MaxFileSize/fsm.ChunkSize || req.Offset < base || req.Offset-base >= fsm.ChunkSize {
		return nil, invalid(op, "inode %d: offset %d outside chunk %d", req.Inode, req.Offset, req.Chunk)
	}
	replaced := make([]*fsmpb.ChunkRef, len(req.Replaced))
	for i, r := range req.Replaced {
		if r == nil || r.FileOffset < base || r.FileOffset-base >= fsm.ChunkSize || r.Length > fsm.ChunkSize {
			return nil, invalid(op, "inode %d: replaced ref %d outside chunk %d", req.Inode, i, req.Chunk)
		}
		replaced[i] = &fsmpb.ChunkRef{SliceId: r.SliceId, ChunkOffset: uint32(r.FileOffset - base), SliceOffset: r.SliceOffset, Length: uint32(r.Length)}
	}
	shards, err := s.ackedShards(op, req.Header, req.Inode, req.SliceId, req.Shards)
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_CompactChunk{CompactChunk: &fsmpb.CompactChunk{
		Inode: req.Inode, Chunk: req.Chunk, Replaced: replaced, SliceId: req.SliceId,
		ChunkOffset: uint32(req.Offset - base), Length: req.Length, Shards: shards,
	}}})
	s.compact.release(req.Inode, req.Chunk)
	if err != nil {
		return nil, err
	}
	return &masterpb.CompactChunkResponse{Attr: res.Attr}, nil
}
