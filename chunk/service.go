package chunk

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// service implements chunkpb.ChunkServer over a shard store. Handlers run on
// gRPC's goroutines; everything they share is the store (safe for concurrent
// use), the metrics and the codec's buffer pool.
type service struct {
	chunkpb.UnimplementedChunkServer

	store   *shardstore.Store
	codec   *shardcodec.Codec
	signer  *token.Signer
	metrics *metrics
	// peers are connections to other chunkservers, for repair sources.
	peers *peerPool
	// changes are the shards stored and deleted since the last heartbeat.
	changes changes
	now     func() time.Time
	// draining is closed when shutdown starts; new writes are refused.
	draining <-chan struct{}
}

func storeID(id *chunkpb.ShardID) shardstore.ID {
	return shardstore.ID{Slice: id.GetSliceId(), Index: id.GetIndex()}
}

// observe records one finished RPC of kind op on shard (nil: none, or not
// yet known) and converts its error to a status naming the shard. The
// metrics are labelled by op alone: a label per shard would add series
// for every shard ever touched, without bound.
func (s *service) observe(op string, shard *chunkpb.ShardID, start time.Time, err error) error {
	if err != nil {
		name := op
		if shard != nil {
			name += " " + shardName(shard)
		}
		err = toStatus(name, err)
	}
	s.metrics.ops.WithLabelValues(op, status.Code(err).String()).Inc()
	s.metrics.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	return err
}

// WriteShard implements chunkpb.ChunkServer. Each message's cell is handed
// to the store as it arrives, so memory stays at one cell per stream
// whatever the shard's size; the store verifies each cell's checksum and
// makes the shard visible only at Commit, after which the client is
// answered. Any failure aborts the writer, so nothing partial remains.
func (s *service) WriteShard(stream chunkpb.Chunk_WriteShardServer) (err error) {
	start := time.Now()
	s.metrics.activeWrites.Inc()
	defer s.metrics.activeWrites.Dec()
	var shard *chunkpb.ShardID
	defer func() { err = s.observe("write shard", shard, start, err) }()

	select {
	case <-s.draining:
		return errShuttingDown
	default:
	}
	first, err := stream.Recv()
	if err == io.EOF {
		return fmt.Errorf("%w: empty stream", errBadRequest)
	}
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if err := checkWriteHeader(h); err != nil {
		s.codec.Release(first.Data)
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	shard = h.Shard
	if err := s.signer.Verify(h.Token, chunkpb.TokenOp_TOKEN_OP_WRITE, h.Shard.SliceId, h.Shard.Index, h.Length, s.now()); err != nil {
		s.codec.Release(first.Data)
		return err
	}
	w, err := s.store.Create(storeID(h.Shard), h.Length, h.CellSize)
	if err != nil {
		s.codec.Release(first.Data)
		return err
	}
	defer w.Abort() // a no-op after a successful Commit
	// Receiving overlaps with verifying and storing: this goroutine reads the
	// next cell off the stream while a second one hashes and writes the
	// previous, so the stream runs at the slower stage's pace rather than
	// at the sum of both.
	p := newCellPipe(w, s.codec, s.metrics)
	defer p.close()
	var cells uint32
	for msg := first; ; {
		if msg != first && msg.Header != nil {
			s.codec.Release(msg.Data)
			return fmt.Errorf("%w: header repeated after cell %d", errBadRequest, cells)
		}
		if len(msg.Data) > 0 || len(msg.Sha256) > 0 {
			var sum [32]byte
			if len(msg.Sha256) != len(sum) {
				s.codec.Release(msg.Data)
				return fmt.Errorf("%w: cell %d has a %d-byte checksum, want %d", errBadRequest, cells, len(msg.Sha256), len(sum))
			}
			copy(sum[:], msg.Sha256)
			if err := p.put(msg.Data, sum); err != nil {
				return err
			}
			cells++
		}
		msg, err = stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := p.close(); err != nil {
		return err
	}
	info, err := w.Commit()
	if err != nil {
		return err
	}
	s.changes.note(storeID(h.Shard), true)
	return stream.SendAndClose(&chunkpb.WriteShardResponse{Length: info.Length, Cells: info.Cells()})
}

// ReadShard implements chunkpb.ChunkServer. It sends whole cells with their
// stored checksums and does not verify them itself: the client verifies end
// to end, and the scrubber finds corruption at rest, so the read path spends
// no CPU on hashing. Cells are read into the codec's pooled buffers and
// handed to gRPC, which sends them without another copy and returns them to
// the pool once written.
func (s *service) ReadShard(req *chunkpb.ReadShardRequest, stream chunkpb.Chunk_ReadShardServer) (err error) {
	start := time.Now()
	defer func() { err = s.observe("read shard", req.GetShard(), start, err) }()
	if req.GetShard() == nil {
		return fmt.Errorf("%w: no shard named", errBadRequest)
	}
	id := storeID(req.Shard)
	info, err := s.store.Stat(id)
	if err != nil {
		return err
	}
	first, count, err := cellRange(info.Length, info.CellSize, req.Offset, req.Length)
	if err != nil {
		return fmt.Errorf("%w: %v", errOutOfRange, err)
	}
	head := &chunkpb.ReadShardResponse{ShardLength: info.Length, CellSize: info.CellSize}
	if count == 0 {
		return stream.Send(head)
	}
	resp := head
	return s.store.ReadCellsInto(id, first, count, s.codec, func(cell uint32, data []byte, sum [32]byte) error {
		resp.Offset = uint64(cell) * uint64(info.CellSize)
		resp.Data = data
		resp.Sha256 = sum[:]
		n := len(data)
		// The codec owns data from here on, whatever SendMsg returns.
		if err := stream.SendMsg(shardcodec.Pooled{Msg: resp}); err != nil {
			return err
		}
		s.metrics.bytesOut.Add(float64(n))
		resp = &chunkpb.ReadShardResponse{}
		return nil
	})
}

// DeleteShard implements chunkpb.ChunkServer.
func (s *service) DeleteShard(ctx context.Context, req *chunkpb.DeleteShardRequest) (_ *chunkpb.DeleteShardResponse, err error) {
	start := time.Now()
	defer func() { err = s.observe("delete shard", req.GetShard(), start, err) }()
	if req.GetShard() == nil {
		return nil, fmt.Errorf("%w: no shard named", errBadRequest)
	}
	if err := s.signer.Verify(req.Token, chunkpb.TokenOp_TOKEN_OP_DELETE, req.Shard.SliceId, req.Shard.Index, 0, s.now()); err != nil {
		return nil, err
	}
	existed, err := s.store.Delete(storeID(req.Shard))
	if err != nil {
		return nil, err
	}
	s.changes.note(storeID(req.Shard), false)
	return &chunkpb.DeleteShardResponse{Existed: existed}, nil
}

// StatShard implements chunkpb.ChunkServer.
func (s *service) StatShard(ctx context.Context, req *chunkpb.StatShardRequest) (_ *chunkpb.StatShardResponse, err error) {
	start := time.Now()
	defer func() { err = s.observe("stat shard", req.GetShard(), start, err) }()
	if req.GetShard() == nil {
		return nil, fmt.Errorf("%w: no shard named", errBadRequest)
	}
	info, err := s.store.Stat(storeID(req.Shard))
	if err != nil {
		return nil, err
	}
	return &chunkpb.StatShardResponse{Info: shardInfo(info)}, nil
}

// ListShards implements chunkpb.ChunkServer.
func (s *service) ListShards(req *chunkpb.ListShardsRequest, stream chunkpb.Chunk_ListShardsServer) (err error) {
	start := time.Now()
	defer func() { err = s.observe("list shards", nil, start, err) }()
	batch := int(req.GetBatchSize())
	if batch <= 0 || batch > 10*DefaultListBatch {
		batch = DefaultListBatch
	}
	from := shardstore.ID{}
	if a := req.GetStartAfter(); a != nil {
		next, ok := after(storeID(a))
		if !ok {
			return nil
		}
		from = next
	}
	out := &chunkpb.ListShardsResponse{}
	err = s.store.List(from, 0, func(info shardstore.Info) error {
		out.Shards = append(out.Shards, shardInfo(info))
		if len(out.Shards) < batch {
			return nil
		}
		if err := stream.Send(out); err != nil {
			return err
		}
		out = &chunkpb.ListShardsResponse{}
		return nil
	})
	if err != nil {
		return err
	}
	if len(out.Shards) > 0 {
		return stream.Send(out)
	}
	return nil
}

// after returns the ID just past id in store order.
func after(id shardstore.ID) (shardstore.ID, bool) {
	if id.Index < ^uint32(0) {
		return shardstore.ID{Slice: id.Slice, Index: id.Index + 1}, true
	}
	if id.Slice < ^uint64(0) {
		return shardstore.ID{Slice: id.Slice + 1}, true
	}
	return shardstore.ID{}, false
}

func shardInfo(i shardstore.Info) *chunkpb.ShardInfo {
	return &chunkpb.ShardInfo{
		Shard:           &chunkpb.ShardID{SliceId: i.ID.Slice, Index: i.ID.Index},
		Length:          i.Length,
		CellSize:        i.CellSize,
		CreatedUnixNano: i.Created.UnixNano(),
	}
}

// cellPipe hands cells to a writer goroutine that verifies and stores them
// in order (the store writes a large shard's cells to disk on a goroutine of
// its own, so receiving, hashing and writing all overlap). It holds at most
// two cells in flight, and the store a few more, so memory per stream stays
// at a few cells whatever the shard's size. The goroutine is owned by the
// stream's handler and always stopped by close.
type cellPipe struct {
	cells  chan pipedCell
	failed chan struct{} // closed when the writer hit an error
	done   chan struct{} // closed when the writer goroutine exits
	err    error         // the writer's first error; read after failed or done
	closed bool
	codec  *shardcodec.Codec
}

type pipedCell struct {
	data []byte
	sum  [32]byte
}

func newCellPipe(w *shardstore.Writer, codec *shardcodec.Codec, m *metrics) *cellPipe {
	p := &cellPipe{cells: make(chan pipedCell, 2), failed: make(chan struct{}), done: make(chan struct{}), codec: codec}
	go func() {
		defer close(p.done)
		for c := range p.cells {
			if p.err != nil {
				codec.Release(c.data)
				continue
			}
			// The writer takes the buffer over (a large shard's cells
			// are written to disk from it, behind this goroutine) and
			// releases it when done.
			data := c.data
			if err := w.WriteCellOwned(data, c.sum, func() { codec.Release(data) }); err != nil {
				p.err = err
				close(p.failed)
				codec.Release(data)
			} else {
				m.bytesIn.Add(float64(len(data)))
			}
		}
	}()
	return p
}

// put queues one cell; it returns the writer's error once there is one.
func (p *cellPipe) put(data []byte, sum [32]byte) error {
	select {
	case p.cells <- pipedCell{data, sum}:
		return nil
	case <-p.failed:
		// p.err was set before failed was closed.
		p.codec.Release(data)
		return p.err
	}
}

// close waits for queued cells to be written and returns the first error.
// It is idempotent.
func (p *cellPipe) close() error {
	if !p.closed {
		p.closed = true
		close(p.cells)
	}
	<-p.done
	return p.err
}
