package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// upload stores data as one new slice of inode and commits it, placed as
// exts say (see masterpb.CommitSliceRequest; one extent covering all of
// data goes as a plain offset and length), with the attribute changes
// after (nil: none). data is only read. It returns once the commit is
// done, or with an error naming what failed; on error nothing was
// committed.
func (d *DataPath) upload(ctx context.Context, inode uint64, data []byte, exts []*masterpb.Extent, after *masterpb.AttrUpdate) error {
	n := int64(len(data))
	if n == 0 || len(exts) == 0 {
		return nil
	}
	id, good, err := d.store(ctx, inode, data)
	if err != nil {
		return err
	}
	req := &masterpb.CommitSliceRequest{
		Header: d.header(), Inode: inode, SliceId: id,
		Shards: good, MtimeUnixNano: d.cfg.Now().UnixNano(), Attrs: after,
	}
	if e := exts[0]; len(exts) == 1 && e.SliceOffset == 0 && e.Length == uint64(n) {
		req.Offset, req.Length = e.FileOffset, e.Length
	} else {
		req.Extents = exts
	}
	if _, err = d.meta.CommitSlice(ctx, req); err != nil {
		return fmt.Errorf("client: commit slice %d of inode %d at %d+%d (%d extents): %w", id, inode, exts[0].FileOffset, n, len(exts), err)
	}
	return nil
}

// writeInline asks the master to store data at off as inode's inline
// bytes, with the attribute changes after (nil: none). It returns false
// (and no error) when the master will not: the file has slices already,
// the bytes reach past its limit, or it does not offer inline data; the
// caller then stores a slice.
func (d *DataPath) writeInline(ctx context.Context, inode uint64, off int64, data []byte, after *masterpb.AttrUpdate) (bool, error) {
	_, err := d.meta.WriteInline(ctx, &masterpb.WriteInlineRequest{
		Header: d.header(), Inode: inode, Offset: uint64(off), Data: data, MtimeUnixNano: d.cfg.Now().UnixNano(),
		Attrs: after,
	})
	if err == nil {
		return true, nil
	}
	if status.Code(err) == codes.Unimplemented {
		return false, nil
	}
	switch masterpb.ErrnoOf(err) {
	case syscall.ENOTSUP, syscall.E2BIG:
		return false, nil
	}
	return false, fmt.Errorf("client: write %d bytes inline to inode %d at %d: %w", len(data), inode, off, err)
}

// store allocates a slice of inode for data (not empty) and writes its
// shards, replacing failed chunkservers where the master can; it returns
// the pending slice and the shards that acknowledged, at least
// minShards of them. The caller commits.
func (d *DataPath) store(ctx context.Context, inode uint64, data []byte) (id uint64, good []*masterpb.ShardLocation, err error) {
	n := int64(len(data))
	alloc, err := d.meta.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: d.header(), Inode: inode, Length: uint64(n)})
	if err != nil {
		return 0, nil, fmt.Errorf("client: allocate slice of %d bytes for inode %d: %w", n, inode, err)
	}
	id = alloc.SliceId
	l, err := layoutFromProto(alloc.Layout)
	if err != nil {
		return 0, nil, fmt.Errorf("client: slice %d of inode %d: master sent a bad layout: %w", id, inode, err)
	}
	locs := make([]*masterpb.ShardLocation, l.Shards())
	for _, loc := range alloc.Shards {
		if loc == nil || int(loc.Index) >= len(locs) || locs[loc.Index] != nil {
			return 0, nil, fmt.Errorf("client: slice %d of inode %d: master sent a bad shard list for %s", id, inode, l)
		}
		locs[loc.Index] = loc
	}
	for i, loc := range locs {
		if loc == nil {
			return 0, nil, fmt.Errorf("client: slice %d of inode %d: master placed no shard %d of %s", id, inode, i, l)
		}
	}
	coder, err := d.coder(l)
	if err != nil {
		return 0, nil, fmt.Errorf("client: slice %d: %w", id, err)
	}

	acked := make([]bool, l.Shards())
	var excluded []string
	targets := make([]int, l.Shards())
	for i := range targets {
		targets[i] = i
	}
	var failures []error
	for round := 0; ; round++ {
		failed := d.sendShards(ctx, id, l, coder, data, locs, targets)
		targets = targets[:0]
		for _, i := range sortedKeys(failed) {
			failures = append(failures, failed[i])
		}
		for i := range acked {
			if _, bad := failed[i]; !bad && !acked[i] && locs[i] != nil {
				acked[i] = true
			}
		}
		if len(failed) == 0 || round >= d.cfg.ReplaceRounds || ctx.Err() != nil {
			break
		}
		// Ask for substitutes on servers not yet tried and resend those
		// shards from the buffer.
		for _, i := range sortedKeys(failed) {
			excluded = append(excluded, locs[i].ChunkserverId)
		}
		for _, i := range sortedKeys(failed) {
			res, err := d.meta.ReplaceShard(ctx, &masterpb.ReplaceShardRequest{
				Header: d.header(), SliceId: id, Index: uint32(i), ExcludeChunkservers: excluded,
			})
			if err != nil {
				failures = append(failures, fmt.Errorf("client: replace shard %d/%d: %w", id, i, err))
				continue
			}
			if res.Shard == nil || res.Shard.Index != uint32(i) {
				failures = append(failures, fmt.Errorf("client: replace shard %d/%d: master answered for another shard", id, i))
				continue
			}
			locs[i] = res.Shard
			excluded = append(excluded, res.Shard.ChunkserverId)
			targets = append(targets, i)
		}
		if len(targets) == 0 {
			break
		}
	}

	for i, ok := range acked {
		if ok {
			loc := locs[i]
			good = append(good, &masterpb.ShardLocation{Index: loc.Index, ChunkserverId: loc.ChunkserverId, Address: loc.Address})
		}
	}
	if need := minShards(l); len(good) < need {
		if err := ctx.Err(); err != nil {
			return 0, nil, fmt.Errorf("client: write slice %d of inode %d: %w", id, inode, err)
		}
		return 0, nil, fmt.Errorf("client: write slice %d of inode %d (%s, %d bytes): %d of %d shards stored, need %d: %w",
			id, inode, l, n, len(good), l.Shards(), need, errors.Join(failures...))
	}
	if len(failures) > 0 {
		d.log.Warn("slice stored with fewer shards", "slice", id, "inode", inode, "layout", l.String(),
			"shards", len(good), "of", l.Shards(), "err", errors.Join(failures...))
	}
	return id, good, nil
}

// minShards is how many acknowledged shards a commit needs: k+1 of
// RS(k,m), two copies of a replicated slice (one if it has one copy). A
// committed slice then survives one more loss while the master repairs the
// rest (DESIGN.md, write path); the master enforces the same rule.
func minShards(l erasure.Layout) int {
	return min(l.DataShards()+1, l.Shards())
}

func sortedKeys(m map[int]error) []int {
	out := make([]int, 0, len(m))
	for i := range m {
		out = append(out, i)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// cellMsg is one cell on its way to a shard stream.
type cellMsg struct {
	data []byte
	sum  [erasure.ChecksumSize]byte
	// pooled: data is a parity buffer the sender hands back on free.
	pooled bool
}

// shardSender streams one shard. Its goroutine is owned by sendShards,
// which waits for it; it drains work even after its stream failed, so the
// encoder never blocks on a dead shard.
type shardSender struct {
	index int
	loc   *masterpb.ShardLocation
	work  chan cellMsg
	free  chan []byte // parity buffers back to the encoder
	dead  atomic.Bool // the stream failed; the encoder may skip hashing
	err   error       // set before done is closed
	done  chan struct{}
}

// sendShards streams the shards listed in targets of slice id (data, of
// layout l) to locs[i], all in parallel, and returns the shards that
// failed with why. The calling goroutine encodes parity and hashes cells
// row by row; each shard's goroutine sends while the next rows are being
// prepared, up to Config.PipelineRows rows ahead.
func (d *DataPath) sendShards(ctx context.Context, id uint64, l erasure.Layout, coder *erasure.Coder, data []byte, locs []*masterpb.ShardLocation, targets []int) map[int]error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.SliceWriteTimeout)
	defer cancel()
	n := int64(len(data))
	k, ns, cell := l.DataShards(), l.Shards(), l.CellSize()
	depth := d.cfg.PipelineRows

	senders := make([]*shardSender, ns)
	var wg sync.WaitGroup
	failed := make(map[int]error)
	var parityBufs [][]byte
	defer func() {
		for _, b := range parityBufs {
			d.bufs.put(b)
		}
	}()
	for _, i := range targets {
		s := &shardSender{index: i, loc: locs[i], work: make(chan cellMsg, depth), done: make(chan struct{})}
		if i >= k && l.IsRS() {
			s.free = make(chan []byte, depth+1)
			for range depth + 1 {
				b := d.bufs.get(cell)
				parityBufs = append(parityBufs, b)
				s.free <- b
			}
		}
		client, err := d.conns.Chunk(s.loc.Address)
		if err != nil {
			failed[i] = fmt.Errorf("client: write shard %d/%d to %s: %w", id, i, s.loc.Address, err)
			continue
		}
		senders[i] = s
		hdr := &chunkpb.WriteShardHeader{
			Shard:    &chunkpb.ShardID{SliceId: id, Index: uint32(i)},
			Length:   uint64(l.ShardLength(n, i)),
			CellSize: uint32(cell),
			Token:    s.loc.Token,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, client, hdr)
		}()
	}

	// scratch holds parity of shards not being sent, which EncodeRow
	// computes all the same.
	var scratch [][]byte
	cells := make([][]byte, ns)
	sums := make([][erasure.ChecksumSize]byte, ns)
	hashCells := make([][]byte, 0, ns)
	hashSums := make([][erasure.ChecksumSize]byte, ns)
	hashIdx := make([]int, 0, ns)
	needParity := false
	for i := k; i < ns; i++ {
		if senders[i] != nil && l.IsRS() {
			needParity = true
		}
	}
	rows := l.Rows(n)
	var encodeErr error
rowLoop:
	for r := range rows {
		base := r * l.StripeRow()
		for i := range k {
			from := min(base+int64(i*cell), n)
			to := min(from+int64(cell), n)
			cells[i] = data[from:to]
		}
		if l.IsReplicated() {
			// Every copy is the data itself: no parity, one checksum.
			sum := erasure.Checksum(cells[0])
			for i := range ns {
				if s := senders[i]; s != nil {
					select {
					case s.work <- cellMsg{data: cells[0], sum: sum}:
					case <-ctx.Done():
						break rowLoop
					}
				}
			}
			continue
		}
		if needParity {
			for i := k; i < ns; i++ {
				if s := senders[i]; s != nil {
					select {
					case cells[i] = <-s.free:
					case <-ctx.Done():
						break rowLoop
					}
					continue
				}
				if scratch == nil {
					scratch = make([][]byte, ns)
				}
				if scratch[i] == nil {
					scratch[i] = d.bufs.get(cell)
					parityBufs = append(parityBufs, scratch[i])
				}
				cells[i] = scratch[i]
			}
			if err := coder.EncodeRow(cells); err != nil {
				encodeErr = fmt.Errorf("client: encode row %d of slice %d: %w", r, id, err)
				// Hand the taken parity buffers back before stopping.
				for i := k; i < ns; i++ {
					if s := senders[i]; s != nil {
						s.free <- cells[i]
					}
				}
				break
			}
		}
		hashCells, hashIdx = hashCells[:0], hashIdx[:0]
		for i := range ns {
			if s := senders[i]; s != nil && !s.dead.Load() && len(cells[i]) > 0 {
				hashCells = append(hashCells, cells[i])
				hashIdx = append(hashIdx, i)
			}
		}
		if err := erasure.ChecksumCells(hashCells, hashSums[:len(hashCells)]); err != nil {
			encodeErr = fmt.Errorf("client: checksum row %d of slice %d: %w", r, id, err)
			break
		}
		for j, i := range hashIdx {
			sums[i] = hashSums[j]
		}
		for i := range ns {
			s := senders[i]
			if s == nil {
				continue
			}
			if len(cells[i]) == 0 {
				// An empty cell of a partial last row: the shard has none.
				if i >= k {
					s.free <- cells[i]
				}
				continue
			}
			select {
			case s.work <- cellMsg{data: cells[i], sum: sums[i], pooled: i >= k}:
			case <-ctx.Done():
				break rowLoop
			}
		}
	}
	if encodeErr != nil {
		cancel()
	}
	for _, s := range senders {
		if s != nil {
			close(s.work)
		}
	}
	wg.Wait()
	for _, s := range senders {
		if s == nil {
			continue
		}
		err := s.err
		if err == nil && encodeErr != nil {
			err = encodeErr
		}
		if err == nil && ctx.Err() != nil {
			err = fmt.Errorf("client: write shard %d/%d to %s: %w", id, s.index, s.loc.Address, ctx.Err())
		}
		if err != nil {
			failed[s.index] = err
		}
	}
	return failed
}

// run opens the shard's stream, sends the header and every cell queued on
// work, and ends with CloseAndRecv, the chunkserver's durable ack. It sets
// s.err and closes s.done.
func (s *shardSender) run(ctx context.Context, client chunkpb.ChunkClient, hdr *chunkpb.WriteShardHeader) {
	defer close(s.done)
	fail := func(err error) {
		if s.err == nil {
			s.err = fmt.Errorf("client: write shard %d/%d to %s: %w", hdr.Shard.SliceId, hdr.Shard.Index, s.loc.Address, err)
			s.dead.Store(true)
		}
	}
	// The stream has its own context so an abandoned stream is torn down.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.WriteShard(sctx)
	if err != nil {
		fail(err)
	} else if err := st.Send(&chunkpb.WriteShardRequest{Header: hdr}); err != nil {
		fail(sendErr(st, err))
	}
	for m := range s.work {
		if s.err == nil {
			// The codec copies Data while marshalling, so the buffer is
			// free again once Send returns.
			sum := m.sum
			if err := st.Send(&chunkpb.WriteShardRequest{Data: m.data, Sha256: sum[:]}); err != nil {
				fail(sendErr(st, err))
			}
		}
		if m.pooled {
			s.free <- m.data
		}
	}
	if s.err != nil {
		return
	}
	res, err := st.CloseAndRecv()
	if err != nil {
		fail(err)
		return
	}
	if res.Length != hdr.Length {
		fail(fmt.Errorf("chunkserver stored %d bytes, sent %d", res.Length, hdr.Length))
	}
}

// sendErr turns a failed Send into the stream's real error: Send returns
// io.EOF when the server ended the stream, and the status is what
// CloseAndRecv returns.
func sendErr(st chunkpb.Chunk_WriteShardClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := st.CloseAndRecv(); rerr != nil {
			return rerr
		}
	}
	return err
}
