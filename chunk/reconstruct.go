package chunk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// ReconstructShard implements chunkpb.ChunkServer: it rebuilds one shard
// of a slice here, for repair. A striped shard is decoded row by row from
// k surviving shards streamed in parallel from the sources; a replicated
// shard is copied from one surviving copy. Every source cell is verified
// against its stored checksum before it is used, and a source that fails
// (unreachable, short, corrupt) is replaced by another one at the row it
// failed, so one bad survivor does not fail the rebuild while k good ones
// remain. The rebuilt shard is stored like a written one — checksum per
// cell, made visible only once durable — under the master's write token.
func (s *service) ReconstructShard(ctx context.Context, req *chunkpb.ReconstructShardRequest) (_ *chunkpb.ReconstructShardResponse, err error) {
	start := time.Now()
	defer func() { err = s.observe("reconstruct shard", req.GetShard(), start, err) }()
	select {
	case <-s.draining:
		return nil, errShuttingDown
	default:
	}
	if req.GetShard() == nil {
		return nil, fmt.Errorf("%w: no shard named", errBadRequest)
	}
	l, err := layoutOf(req.Layout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	target := int(req.Shard.Index)
	sliceLen := int64(req.SliceLength)
	if target >= l.Shards() || req.SliceLength == 0 || req.SliceLength > shardstore.MaxShardLength*uint64(l.DataShards()) {
		return nil, fmt.Errorf("%w: shard %d of a %d-byte %s slice", errBadRequest, target, req.SliceLength, l)
	}
	length := uint64(l.ShardLength(sliceLen, target))
	if err := s.signer.Verify(req.Token, chunkpb.TokenOp_TOKEN_OP_WRITE, req.Shard.SliceId, req.Shard.Index, length, s.now()); err != nil {
		return nil, err
	}
	var sources []*chunkpb.ShardSource
	// The same shard may be offered at several addresses (a stale and a
	// current one); each pair is tried once.
	seen := make(map[string]bool)
	for _, src := range req.Sources {
		if src == nil || int(src.Index) >= l.Shards() || int(src.Index) == target || src.Address == "" {
			continue
		}
		if key := fmt.Sprint(src.Index, "@", src.Address); !seen[key] {
			seen[key] = true
			sources = append(sources, src)
		}
	}
	w, err := s.store.Create(storeID(req.Shard), length, uint32(l.CellSize()))
	if err != nil {
		return nil, err
	}
	defer w.Abort() // a no-op after a successful Commit
	r := &rebuild{
		s: s, ctx: ctx, w: w, l: l, slice: req.Shard.SliceId, sliceLen: sliceLen, target: target,
		sources: sources, rate: req.BytesPerSecond, start: time.Now(),
	}
	defer r.closeStreams()
	if l.IsReplicated() {
		err = r.copyShard(length)
	} else {
		err = r.decodeShard()
	}
	if err != nil {
		return nil, err
	}
	info, err := w.Commit()
	if err != nil {
		return nil, err
	}
	s.changes.note(storeID(req.Shard), true)
	return &chunkpb.ReconstructShardResponse{Length: info.Length}, nil
}

// layoutOf converts a wire layout to erasure's (wirelayout.FromProto) and
// refuses cells larger than the chunkserver accepts.
func layoutOf(p *chunkpb.Layout) (erasure.Layout, error) {
	l, err := wirelayout.FromProto(p)
	if err != nil {
		return 0, err
	}
	if l.CellSize() > MaxCellSize {
		return 0, fmt.Errorf("cell size %d above %d", l.CellSize(), MaxCellSize)
	}
	return l, nil
}

// rebuild is one ReconstructShard call in progress.
type rebuild struct {
	s        *service
	ctx      context.Context
	w        *shardstore.Writer
	l        erasure.Layout
	slice    uint64
	sliceLen int64
	target   int
	sources  []*chunkpb.ShardSource
	next     int // index into sources of the next one not tried
	rate     uint64
	start    time.Time
	written  uint64
	streams  []*cellStream
	failures []error
}

// cellStream reads the cells of one source shard in order, ahead of the
// decoder: a goroutine receives and verifies each cell and queues it, so
// the sources' transfers and checksums run in parallel with each other
// and with decoding and storing. The goroutine is owned by the rebuild and
// stopped by stop.
type cellStream struct {
	index  int
	addr   string
	cancel context.CancelFunc
	cells  chan streamed
	done   chan struct{}
}

// streamed is one cell read ahead, or the error that ended the stream.
type streamed struct {
	row  int64
	data []byte
	err  error
}

// prefetch is how many verified cells a source may hold ahead.
const prefetch = 4

// open starts streaming shard src of the slice from row onwards.
func (r *rebuild) open(src *chunkpb.ShardSource, row int64) (*cellStream, error) {
	cc, err := r.s.peers.conn(src.Address)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	st, err := chunkpb.NewChunkClient(cc).ReadShard(ctx, &chunkpb.ReadShardRequest{
		Shard:  &chunkpb.ShardID{SliceId: r.slice, Index: src.Index},
		Offset: uint64(row) * uint64(r.l.CellSize()),
	})
	if err != nil {
		cancel()
		return nil, err
	}
	cs := &cellStream{index: int(src.Index), addr: src.Address, cancel: cancel, cells: make(chan streamed, prefetch), done: make(chan struct{})}
	rows := r.l.Rows(r.sliceLen)
	go func() {
		defer close(cs.done)
		for ; row < rows; row++ {
			want := r.l.CellLength(r.sliceLen, row, cs.index)
			if want == 0 {
				continue
			}
			data, err := r.recvCell(st, cs, row, want)
			select {
			case cs.cells <- streamed{row: row, data: data, err: err}:
			case <-ctx.Done():
				if data != nil {
					r.s.codec.Release(data)
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return cs, nil
}

// stop ends the stream's goroutine and returns the cells it read ahead.
func (cs *cellStream) stop(r *rebuild) {
	cs.cancel()
	<-cs.done
	for {
		select {
		case c := <-cs.cells:
			if c.data != nil {
				r.s.codec.Release(c.data)
			}
		default:
			return
		}
	}
}

// cell returns the source's cell at row, verified, in a pooled buffer the
// caller releases.
func (r *rebuild) cell(cs *cellStream, row int64) ([]byte, error) {
	select {
	case c := <-cs.cells:
		if c.err == nil && c.row != row {
			r.s.codec.Release(c.data)
			return nil, fmt.Errorf("shard %d/%d at %s: row %d arrived when %d was due", r.slice, cs.index, cs.addr, c.row, row)
		}
		return c.data, c.err
	case <-cs.done:
		// The goroutine may have queued its last cell before ending.
		select {
		case c := <-cs.cells:
			return c.data, c.err
		default:
		}
		if err := r.ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("shard %d/%d at %s ended before row %d", r.slice, cs.index, cs.addr, row)
	}
}

// recvCell receives the cell at row, of length want, and verifies it.
func (r *rebuild) recvCell(st chunkpb.Chunk_ReadShardClient, cs *cellStream, row int64, want int) ([]byte, error) {
	for {
		msg, err := st.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("shard %d/%d at %s ended before row %d", r.slice, cs.index, cs.addr, row)
		}
		if err != nil {
			return nil, fmt.Errorf("read shard %d/%d at %s: %w", r.slice, cs.index, cs.addr, err)
		}
		if len(msg.Data) == 0 && len(msg.Sha256) == 0 {
			continue // the header of a shard without cells here
		}
		off := uint64(row) * uint64(r.l.CellSize())
		if msg.Offset != off || len(msg.Data) != want {
			r.s.codec.Release(msg.Data)
			return nil, fmt.Errorf("shard %d/%d at %s: cell at %d of %d bytes, want %d bytes at %d", r.slice, cs.index, cs.addr, msg.Offset, len(msg.Data), want, off)
		}
		if err := erasure.Verify(msg.Data, msg.Sha256); err != nil {
			r.s.codec.Release(msg.Data)
			return nil, fmt.Errorf("shard %d/%d at %s row %d: %w", r.slice, cs.index, cs.addr, row, err)
		}
		return msg.Data, nil
	}
}

// replace closes the failed stream i and opens the next untried source in
// its place at row; it fails when no source is left.
func (r *rebuild) replace(i int, row int64, cause error) error {
	r.failures = append(r.failures, cause)
	if r.streams[i] != nil {
		r.streams[i].stop(r)
		r.streams[i] = nil
	}
	for r.next < len(r.sources) {
		src := r.sources[r.next]
		r.next++
		cs, err := r.open(src, row)
		if err != nil {
			r.failures = append(r.failures, err)
			continue
		}
		r.streams[i] = cs
		return nil
	}
	// The causes are flattened to text: they are other servers' statuses,
	// not this call's.
	return fmt.Errorf("%w for shard %d/%d: %v", errNoSources, r.slice, r.target, errors.Join(r.failures...))
}

func (r *rebuild) closeStreams() {
	for _, cs := range r.streams {
		if cs != nil {
			cs.stop(r)
		}
	}
}

// copyShard copies a replicated shard cell by cell from one copy.
func (r *rebuild) copyShard(length uint64) error {
	r.streams = make([]*cellStream, 1)
	if err := r.replace(0, 0, errors.New("no source yet")); err != nil {
		return err
	}
	r.failures = nil
	cells := r.l.Cells(int64(length))
	for c := int64(0); c < cells; c++ {
		var data []byte
		for {
			var err error
			if data, err = r.cell(r.streams[0], c); err == nil {
				break
			}
			if err := r.replace(0, c, err); err != nil {
				return err
			}
		}
		if err := r.store(data); err != nil {
			return err
		}
	}
	return nil
}

// decodeShard rebuilds a striped shard row by row from k sources.
func (r *rebuild) decodeShard() error {
	k := r.l.DataShards()
	coder, err := erasure.NewCoder(r.l)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	r.streams = make([]*cellStream, k)
	for i := range r.streams {
		if err := r.replace(i, 0, errors.New("no source yet")); err != nil {
			return err
		}
	}
	r.failures = nil
	n := r.l.Shards()
	cells := make([][]byte, n)
	scratch := make([][]byte, n)
	for row := int64(0); row < r.l.Rows(r.sliceLen); row++ {
		for j := range cells {
			cells[j] = nil
		}
		for i := 0; i < k; i++ {
			for {
				cs := r.streams[i]
				want := r.l.CellLength(r.sliceLen, row, cs.index)
				if want == 0 {
					cells[cs.index] = []byte{}
					break
				}
				data, err := r.cell(cs, row)
				if err == nil {
					cells[cs.index] = data
					break
				}
				if err := r.replace(i, row, err); err != nil {
					r.release(cells)
					return err
				}
			}
		}
		// The target's cell is rebuilt into a pooled buffer handed on to
		// the writer; other missing cells into scratch buffers reused
		// across rows.
		var out []byte
		if n := r.l.CellLength(r.sliceLen, row, r.target); n > 0 {
			out = r.s.codec.Get(n)
			cells[r.target] = out[:0]
		}
		for j := range cells {
			if cells[j] == nil && r.l.CellLength(r.sliceLen, row, j) > 0 {
				if scratch[j] == nil {
					scratch[j] = make([]byte, 0, r.l.CellSize())
				}
				cells[j] = scratch[j][:0]
			}
		}
		err := coder.ReconstructRow(r.sliceLen, row, cells)
		if out != nil {
			got := cells[r.target]
			if err == nil && len(got) != len(out) {
				err = fmt.Errorf("rebuilt cell of row %d has %d bytes, want %d", row, len(got), len(out))
			}
			if err == nil {
				if &got[0] != &out[0] {
					copy(out, got) // the coder wanted room of its own
				}
				err = r.store(out)
			} else {
				r.s.codec.Release(out)
			}
		}
		for _, cs := range r.streams {
			if b := cells[cs.index]; len(b) > 0 {
				r.s.codec.Release(b)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// release returns the source cells of a row that failed.
func (r *rebuild) release(cells [][]byte) {
	for _, cs := range r.streams {
		if cs != nil && len(cells[cs.index]) > 0 {
			r.s.codec.Release(cells[cs.index])
			cells[cs.index] = nil
		}
	}
}

// store hands one rebuilt cell (a pooled buffer) to the writer and paces
// the rebuild at the requested rate.
func (r *rebuild) store(data []byte) error {
	n := len(data)
	if err := r.w.WriteMadeCell(data, func() { r.s.codec.Release(data) }); err != nil {
		r.s.codec.Release(data)
		return err
	}
	r.s.metrics.rebuiltBytes.Add(float64(n))
	r.written += uint64(n)
	if r.rate == 0 {
		return nil
	}
	due := r.start.Add(time.Duration(float64(r.written) / float64(r.rate) * float64(time.Second)))
	if wait := time.Until(due); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// peerPool keeps one client connection per other chunkserver, for
// reading repair sources. Its connections are closed by close, when the
// server shuts down.
type peerPool struct {
	codec *shardcodec.Codec
	// dial is Config.Dial; nil dials TCP.
	dial func(ctx context.Context, addr string) (net.Conn, error)
	mu   struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

func newPeerPool(codec *shardcodec.Codec, dial func(ctx context.Context, addr string) (net.Conn, error)) *peerPool {
	p := &peerPool{codec: codec, dial: dial}
	p.mu.conns = map[string]*grpc.ClientConn{}
	return p
}

func (p *peerPool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, errShuttingDown
	}
	if cc, ok := p.mu.conns[addr]; ok {
		return cc, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(p.codec), grpc.MaxCallRecvMsgSize(MaxCellSize+64<<10)),
		grpc.WithInitialWindowSize(4 << 20),
		grpc.WithInitialConnWindowSize(16 << 20),
		grpc.WithReadBufferSize(1 << 20),
	}
	if p.dial != nil {
		opts = append(opts, grpc.WithContextDialer(p.dial))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	p.mu.conns[addr] = cc
	return cc, nil
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.closed = true
	for _, cc := range p.mu.conns {
		_ = cc.Close()
	}
	p.mu.conns = nil
}
