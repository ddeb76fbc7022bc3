package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// sliceInfo is one committed slice as the reader needs it.
type sliceInfo struct {
	id     uint64
	inode  uint64 // the file whose layout named it
	layout erasure.Layout
	length int64
	// shards is indexed by shard index; nil where no location is known
	// (a slice committed with fewer than all shards).
	shards []*masterpb.ShardLocation
}

// sliceRead is the state of one read of a byte range of one slice: a grid
// of the verified cells fetched so far, rows r0..r0+len-1, and which
// shards have failed.
type sliceRead struct {
	d    *DataPath
	s    *sliceInfo
	r0   int64
	grid [][][]byte // [shard][row-r0] verified cell, or nil
	// direct holds, for data cells an extent covers whole, the part of
	// the caller's buffer the cell belongs in, [shard][row-r0] (nil
	// where none; nil for replicated slices): such a cell
	// is received straight into it (shardcodec.Into) instead of into a
	// pooled buffer that is copied afterwards.
	direct [][][]byte
	// pooled lists the cells that came from the codec's pool.
	pooled [][]byte
	bad    []bool
	errs   []error
	// retries counts, per shard, the times a stalled stream was asked
	// again because too few other shards were left. Each retry doubles
	// the stall limit, up to ShardReadTimeout, so a merely slow shard
	// (a loaded machine) gets the time it needs while a hung one is
	// given up again and the read goes on once the slow ones answer.
	retries []int
}

// readSlice reads len(dst) bytes of slice s from slice offset off into
// dst. It reads the data cells it needs in parallel and verifies them;
// cells it cannot get or verify are rebuilt from other shards. It fails
// only if more shards fail than the layout tolerates, or ctx ends.
func (d *DataPath) readSlice(ctx context.Context, s *sliceInfo, off int64, dst []byte) error {
	l := s.layout
	exts, err := l.Extents(s.length, off, int64(len(dst)))
	if err != nil {
		return fmt.Errorf("client: read slice %d: %w", s.id, err)
	}
	if len(exts) == 0 {
		return nil
	}
	r0, r1 := exts[0].Row, exts[len(exts)-1].Row
	rd := &sliceRead{d: d, s: s, r0: r0, bad: make([]bool, l.Shards()), errs: make([]error, l.Shards()), retries: make([]int, l.Shards())}
	defer rd.release()
	rd.grid = make([][][]byte, l.Shards())
	for i := range rd.grid {
		rd.grid[i] = make([][]byte, r1-r0+1)
		if i >= len(s.shards) || s.shards[i] == nil || s.shards[i].Address == "" {
			rd.bad[i] = true
			rd.errs[i] = fmt.Errorf("client: shard %d/%d: no known location", s.id, i)
		}
	}

	if !l.IsReplicated() {
		// (A replicated slice's extents name copy 0 whichever copy is
		// read, so its cells are copied as before.)
		cs := int64(l.CellSize())
		rd.direct = make([][][]byte, l.DataShards())
		for _, e := range exts {
			if e.Offset == e.Row*cs && e.Length == int64(l.CellLength(s.length, e.Row, e.Shard)) {
				if rd.direct[e.Shard] == nil {
					rd.direct[e.Shard] = make([][]byte, r1-r0+1)
				}
				end := e.BufOffset + e.Length
				rd.direct[e.Shard][e.Row-r0] = dst[e.BufOffset:end:end]
			}
		}
	}

	// First pass: the data cells the extents touch. For a replicated slice
	// that is one copy, chosen by slice ID so readers spread over copies.
	want := make(map[int][2]int64) // shard -> row range
	for _, e := range exts {
		sh := e.Shard
		if l.IsReplicated() {
			sh = rd.pickCopy()
			if sh < 0 {
				break
			}
		}
		rg, ok := want[sh]
		if !ok {
			rg = [2]int64{e.Row, e.Row}
		}
		rg[0], rg[1] = min(rg[0], e.Row), max(rg[1], e.Row)
		want[sh] = rg
	}
	for sh := range want {
		if rd.bad[sh] {
			delete(want, sh)
		}
	}
	rd.fetch(ctx, want)

	// Later passes: for rows still missing a needed data cell, fetch from
	// more shards until each such row has k verified cells.
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("client: read slice %d: %w", s.id, err)
		}
		lo, hi, any := int64(-1), int64(-1), false
		for _, e := range exts {
			if rd.grid[e.Shard][e.Row-r0] == nil && l.CellLength(s.length, e.Row, e.Shard) > 0 {
				if !any {
					lo = e.Row
				}
				hi, any = e.Row, true
			}
		}
		if !any {
			break
		}
		more, err := rd.plan(lo, hi)
		if err != nil {
			return err
		}
		if len(more) == 0 {
			// Every row in range has k cells: rebuild the missing ones.
			if err := rd.rebuild(lo, hi); err != nil {
				return err
			}
			break
		}
		rd.fetch(ctx, more)
	}

	cs := int64(l.CellSize())
	for _, e := range exts {
		cell := rd.grid[e.Shard][e.Row-r0]
		in := e.Offset - e.Row*cs
		if cell == nil || in+e.Length > int64(len(cell)) {
			return fmt.Errorf("client: read slice %d: internal error: cell %d of row %d not in hand", s.id, e.Shard, e.Row)
		}
		if e.Length > 0 && &cell[in] == &dst[e.BufOffset] {
			continue // received in place
		}
		copy(dst[e.BufOffset:e.BufOffset+e.Length], cell[in:in+e.Length])
	}
	return nil
}

// pickCopy returns the first usable copy of a replicated slice, starting
// from one that depends on the slice ID, or -1.
func (rd *sliceRead) pickCopy() int {
	n := len(rd.bad)
	for j := range n {
		i := (int(rd.s.id%uint64(n)) + j) % n
		if !rd.bad[i] {
			return i
		}
	}
	return -1
}

// has reports whether shard i holds every non-empty cell of rows lo..hi.
func (rd *sliceRead) has(i int, lo, hi int64) bool {
	for r := lo; r <= hi; r++ {
		if rd.grid[i][r-rd.r0] == nil && rd.s.layout.CellLength(rd.s.length, r, i) > 0 {
			return false
		}
	}
	return true
}

// plan returns the shards to fetch rows lo..hi from so that every row has
// k verified cells, preferring data shards (no decoding for their own
// cells) — or nothing when there are k already, or an error when fewer
// than k shards are left.
func (rd *sliceRead) plan(lo, hi int64) (map[int][2]int64, error) {
	l := rd.s.layout
	k := l.DataShards()
	complete := 0
	var candidates []int
	for i := range rd.grid {
		switch {
		case rd.has(i, lo, hi):
			complete++
		case !rd.bad[i]:
			candidates = append(candidates, i)
		}
	}
	if complete >= k {
		return nil, nil
	}
	if complete+len(candidates) < k {
		// Before giving up, wait for the shards that were only slow: a
		// loaded machine is not a lost shard.
		for i := range rd.bad {
			if rd.bad[i] && errors.Is(rd.errs[i], errStalled) && rd.stallLimit(i) < rd.d.cfg.ShardReadTimeout {
				rd.bad[i], rd.errs[i] = false, nil
				rd.retries[i]++
				candidates = append(candidates, i)
			}
		}
	}
	if complete+len(candidates) < k {
		var missing []int
		for i := range rd.bad {
			if rd.bad[i] {
				missing = append(missing, i)
			}
		}
		return nil, fmt.Errorf("client: read slice %d (%s) rows %d..%d: %w (%w)", rd.s.id, l, lo, hi,
			&erasure.TooFewShardsError{Layout: l, Missing: missing, Need: k, Have: l.Shards() - len(missing)},
			errors.Join(rd.errs...))
	}
	more := make(map[int][2]int64)
	for _, i := range candidates[:k-complete] {
		more[i] = [2]int64{lo, hi}
	}
	return more, nil
}

// rebuild reconstructs the missing data cells of rows lo..hi, each of
// which has at least k verified cells.
func (rd *sliceRead) rebuild(lo, hi int64) error {
	l := rd.s.layout
	coder, err := rd.d.coder(l)
	if err != nil {
		return err
	}
	row := make([][]byte, l.Shards())
	for r := lo; r <= hi; r++ {
		for i := range row {
			row[i] = rd.grid[i][r-rd.r0]
		}
		if err := coder.ReconstructRowData(rd.s.length, r, row); err != nil {
			return fmt.Errorf("client: read slice %d: rebuild row %d: %w", rd.s.id, r, err)
		}
		for i := range row {
			rd.grid[i][r-rd.r0] = row[i]
		}
	}
	return nil
}

// fetch reads the given row ranges from their shards in parallel, filling
// the grid with verified cells. A shard that fails is marked bad (and
// reported to the master unless the failure is ctx's); cells it delivered
// before failing were verified and are kept.
func (rd *sliceRead) fetch(ctx context.Context, want map[int][2]int64) {
	var wg sync.WaitGroup
	var mu sync.Mutex // guards rd.pooled
	for sh, rg := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := rd.fetchShard(ctx, sh, rg[0], rg[1], func(b []byte) {
				mu.Lock()
				rd.pooled = append(rd.pooled, b)
				mu.Unlock()
			})
			if err != nil {
				rd.bad[sh], rd.errs[sh] = true, err
			}
		}()
	}
	wg.Wait()
	if rd.s.layout.IsReplicated() {
		// Copies are interchangeable: file each row's cell under shard 0,
		// which is what the extents name.
		for r := range rd.grid[0] {
			for i := range rd.grid {
				if rd.grid[0][r] != nil {
					break
				}
				rd.grid[0][r] = rd.grid[i][r]
			}
		}
	}
	for sh := range want {
		// A stalled shard is slow, not damaged: the read goes around it
		// without asking the master to repair it.
		if err := rd.errs[sh]; err != nil && ctx.Err() == nil && !errors.Is(err, errStalled) {
			loc := rd.s.shards[sh]
			rd.d.log.Warn("shard read failed", "slice", rd.s.id, "shard", sh, "chunkserver", loc.ChunkserverId, "err", err)
			rd.d.reportBad(rd.s.id, uint32(sh), loc.ChunkserverId, err.Error())
			rd.d.layouts.drop(rd.s.inode)
		}
	}
}

// fetchShard reads the cells of rows lo..hi (those it lacks) of shard sh.
// Every cell must arrive whole, in order, with a checksum that matches.
func (rd *sliceRead) fetchShard(ctx context.Context, sh int, lo, hi int64, keep func([]byte)) error {
	l, s := rd.s.layout, rd.s
	loc := s.shards[sh]
	for lo <= hi && rd.grid[sh][lo-rd.r0] != nil {
		lo++
	}
	for hi >= lo && rd.grid[sh][hi-rd.r0] != nil {
		hi--
	}
	cs := int64(l.CellSize())
	shardLen := l.ShardLength(s.length, sh)
	from := lo * cs
	to := min((hi+1)*cs, shardLen)
	if lo > hi || from >= to {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("client: read shard %d/%d from %s: %w", s.id, sh, loc.Address, err)
	}
	client, err := rd.d.conns.Chunk(loc.Address)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, rd.d.cfg.ShardReadTimeout)
	defer cancel()
	// A stall timer cancels the stream when no cell arrives for
	// ShardStallTimeout: a slow server must not hold the read up when k
	// other shards can serve it.
	ctx, stall := context.WithCancelCause(ctx)
	defer stall(nil)
	stallAfter := rd.stallLimit(sh)
	timer := time.AfterFunc(stallAfter, func() { stall(errStalled) })
	defer timer.Stop()
	stalled := func(err error) error {
		if errors.Is(context.Cause(ctx), errStalled) {
			return fail(fmt.Errorf("%w: no data for %v", errStalled, stallAfter))
		}
		return fail(err)
	}
	st, err := client.ReadShard(ctx, &chunkpb.ReadShardRequest{
		Shard:  &chunkpb.ShardID{SliceId: s.id, Index: uint32(sh)},
		Offset: uint64(from), Length: uint64(to - from),
	})
	if err != nil {
		return stalled(err)
	}
	next := from
	first := true
	for {
		row := next / cs
		m := &chunkpb.ReadShardResponse{}
		in := &shardcodec.Into{Msg: m}
		if sh < len(rd.direct) && rd.direct[sh] != nil && row <= hi && rd.grid[sh][row-rd.r0] == nil {
			// (A cell already in hand may sit in that very place: a
			// bad copy of it must not overwrite it.)
			in.Dst = rd.direct[sh][row-rd.r0]
		}
		// Data received into the caller's buffer is not the pool's.
		drop := func() {
			if !in.Filled {
				rd.d.conns.release(m.Data)
			}
		}
		err := st.RecvMsg(in)
		if err == io.EOF {
			break
		}
		if err != nil {
			if status.Code(err) == codes.DeadlineExceeded && ctx.Err() != nil {
				return fail(fmt.Errorf("no answer within %v: %w", rd.d.cfg.ShardReadTimeout, err))
			}
			return stalled(err)
		}
		timer.Reset(stallAfter)
		if first {
			first = false
			if m.ShardLength != uint64(shardLen) || m.CellSize != uint32(cs) {
				drop()
				return fail(fmt.Errorf("%w: chunkserver has a %d-byte shard of %d-byte cells, want %d of %d",
					erasure.ErrChecksum, m.ShardLength, m.CellSize, shardLen, cs))
			}
		}
		if len(m.Data) == 0 {
			continue
		}
		want := int64(l.CellLength(s.length, row, sh))
		if m.Offset != uint64(next) || int64(len(m.Data)) != want || row > hi {
			drop()
			return fail(fmt.Errorf("%w: unexpected cell of %d bytes at %d, want %d bytes at %d",
				erasure.ErrChecksum, len(m.Data), m.Offset, want, next))
		}
		if err := erasure.Verify(m.Data, m.Sha256); err != nil {
			// A cell received in place leaves wrong bytes in the
			// caller's buffer until the rebuilt cell is copied over them.
			drop()
			return fail(fmt.Errorf("cell at row %d: %w", row, err))
		}
		if !in.Filled {
			keep(m.Data)
		}
		rd.grid[sh][row-rd.r0] = m.Data
		next += want
	}
	if next < to {
		return fail(fmt.Errorf("stream ended at %d, want up to %d", next, to))
	}
	return nil
}

// stallLimit is how long shard sh's stream may deliver nothing:
// ShardStallTimeout doubled for each retry, at most ShardReadTimeout.
func (rd *sliceRead) stallLimit(sh int) time.Duration {
	limit := rd.d.cfg.ShardStallTimeout
	for range rd.retries[sh] {
		if limit >= rd.d.cfg.ShardReadTimeout/2 {
			return rd.d.cfg.ShardReadTimeout
		}
		limit *= 2
	}
	return min(limit, rd.d.cfg.ShardReadTimeout)
}

// errStalled marks a shard stream that delivered nothing for
// Config.ShardStallTimeout.
var errStalled = errors.New("shard stream stalled")

// release returns the fetched cells to the codec's pool.
func (rd *sliceRead) release() {
	for _, b := range rd.pooled {
		rd.d.conns.release(b)
	}
	rd.pooled = nil
}
