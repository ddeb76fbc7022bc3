package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/chunk"
	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

var testKey = []byte("client-test-cluster-key-0123456789")

// server is one chunkserver started in the test.
type server struct {
	id, addr string
	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan error
}

// stop stops the server and waits for it; idempotent.
func (s *server) stop(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		t.Errorf("chunkserver %s: Run: %v", s.id, err)
	}
	s.cancel = nil
}

func startServers(t testing.TB, n int) []*server {
	t.Helper()
	out := make([]*server, n)
	for i := range out {
		cfg := chunk.Config{
			ID: fmt.Sprintf("cs-%d", i), ListenAddr: "127.0.0.1:0", Dir: t.TempDir(),
			ClusterKey: testKey, ShutdownGrace: 200 * time.Millisecond,
		}
		srv, err := chunk.New(cfg)
		if err != nil {
			t.Fatalf("chunk.New: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		s := &server{id: cfg.ID, addr: srv.Addr(), cancel: cancel, done: make(chan error, 1)}
		go func() { s.done <- srv.Run(ctx) }()
		out[i] = s
		t.Cleanup(func() { s.stop(t) })
	}
	return out
}

// fakeMeta is an in-memory master for the data path: it allocates slice
// IDs, places shards round-robin over live servers, mints real tokens,
// records commits per chunk in commit order and answers GetLayout as the
// real master does.
type fakeMeta struct {
	signer    *token.Signer
	chunkSize uint64

	mu        sync.Mutex
	policy    erasure.Layout
	servers   []*server
	dead      map[string]bool
	rr        int
	next      uint64
	slices    map[uint64]*fakeSlice
	chunks    map[uint64]map[uint64][]*masterpb.SliceRef // inode -> chunk index -> refs
	sizes     map[uint64]uint64
	reports   []*masterpb.ReportBadShardRequest
	replaced  int
	committed []*masterpb.CommitSliceRequest
	layouts   []*masterpb.GetLayoutRequest // every GetLayout asked
}

type fakeSlice struct {
	inode     uint64
	length    uint64
	layout    erasure.Layout
	shards    []*masterpb.ShardLocation
	committed bool
}

func newFakeMeta(t testing.TB, policy erasure.Layout, servers []*server, chunkSize int64) *fakeMeta {
	signer, err := token.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMeta{
		signer: signer, chunkSize: uint64(chunkSize), policy: policy, servers: servers,
		dead: map[string]bool{}, next: 100, slices: map[uint64]*fakeSlice{},
		chunks: map[uint64]map[uint64][]*masterpb.SliceRef{}, sizes: map[uint64]uint64{},
	}
}

var _ client.Metadata = (*fakeMeta)(nil)

func (f *fakeMeta) markDead(id string) {
	f.mu.Lock()
	f.dead[id] = true
	f.mu.Unlock()
}

func (f *fakeMeta) mint(id uint64, l erasure.Layout, length uint64, i int) *chunkpb.Token {
	return f.signer.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, id, uint32(i), uint64(l.ShardLength(int64(length), i)), time.Now().Add(time.Minute))
}

func (f *fakeMeta) AllocateSlice(ctx context.Context, in *masterpb.AllocateSliceRequest, _ ...grpc.CallOption) (*masterpb.AllocateSliceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.Length == 0 {
		return nil, status.Error(codes.InvalidArgument, "fake: zero length")
	}
	l := f.policy
	if l.IsRS() && in.Length < uint64(l.StripeRow()) {
		l = l.ReplicatedEquivalent()
	}
	var live []*server
	for _, s := range f.servers {
		if !f.dead[s.id] {
			live = append(live, s)
		}
	}
	if len(live) < l.Shards() {
		return nil, status.Errorf(codes.ResourceExhausted, "fake: %d live servers for %s", len(live), l)
	}
	f.next++
	id := f.next
	sl := &fakeSlice{inode: in.Inode, length: in.Length, layout: l}
	res := &masterpb.AllocateSliceResponse{SliceId: id, Layout: wirelayout.ToProto(l)}
	for i := range l.Shards() {
		s := live[(f.rr+i)%len(live)]
		sl.shards = append(sl.shards, &masterpb.ShardLocation{Index: uint32(i), ChunkserverId: s.id, Address: s.addr})
		res.Shards = append(res.Shards, &masterpb.ShardLocation{Index: uint32(i), ChunkserverId: s.id, Address: s.addr, Token: f.mint(id, l, in.Length, i)})
	}
	f.rr++
	f.slices[id] = sl
	return res, nil
}

func (f *fakeMeta) ReplaceShard(ctx context.Context, in *masterpb.ReplaceShardRequest, _ ...grpc.CallOption) (*masterpb.ReplaceShardResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sl := f.slices[in.SliceId]
	if sl == nil || sl.committed || int(in.Index) >= len(sl.shards) {
		return nil, status.Error(codes.NotFound, "fake: no such pending shard")
	}
	used := map[string]bool{}
	for _, sh := range sl.shards {
		used[sh.ChunkserverId] = true
	}
	for _, id := range in.ExcludeChunkservers {
		used[id] = true
	}
	for _, s := range f.servers {
		if !used[s.id] && !f.dead[s.id] {
			f.replaced++
			sl.shards[in.Index] = &masterpb.ShardLocation{Index: in.Index, ChunkserverId: s.id, Address: s.addr}
			return &masterpb.ReplaceShardResponse{Shard: &masterpb.ShardLocation{
				Index: in.Index, ChunkserverId: s.id, Address: s.addr, Token: f.mint(in.SliceId, sl.layout, sl.length, int(in.Index)),
			}}, nil
		}
	}
	return nil, status.Error(codes.ResourceExhausted, "fake: no substitute")
}

func (f *fakeMeta) CommitSlice(ctx context.Context, in *masterpb.CommitSliceRequest, _ ...grpc.CallOption) (*masterpb.CommitSliceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sl := f.slices[in.SliceId]
	exts, length := in.Extents, in.Length
	if len(exts) == 0 {
		exts = []*masterpb.Extent{{FileOffset: in.Offset, Length: in.Length}}
	} else if in.Offset != 0 || in.Length != 0 || len(exts) > masterpb.MaxCommitExtents {
		return nil, status.Error(codes.InvalidArgument, "fake: bad extents")
	}
	for _, e := range in.Extents {
		if e.Length == 0 {
			return nil, status.Error(codes.InvalidArgument, "fake: empty extent")
		}
		length = max(length, e.SliceOffset+e.Length)
	}
	switch {
	case sl == nil || sl.committed:
		return nil, status.Error(codes.NotFound, "fake: no such pending slice")
	case length == 0 || length > sl.length:
		return nil, status.Error(codes.InvalidArgument, "fake: bad length")
	case len(in.Shards) < min(sl.layout.DataShards()+1, sl.layout.Shards()):
		return nil, status.Errorf(codes.InvalidArgument, "fake: %d shards", len(in.Shards))
	}
	for _, sh := range in.Shards {
		if int(sh.Index) >= len(sl.shards) || sl.shards[sh.Index].ChunkserverId != sh.ChunkserverId {
			return nil, status.Errorf(codes.InvalidArgument, "fake: shard %d not placed on %s", sh.Index, sh.ChunkserverId)
		}
	}
	sl.committed, sl.length = true, length
	var shards []*masterpb.ShardLocation
	for _, sh := range in.Shards {
		shards = append(shards, &masterpb.ShardLocation{Index: sh.Index, ChunkserverId: sh.ChunkserverId, Address: sh.Address})
	}
	f.committed = append(f.committed, in)
	if f.chunks[in.Inode] == nil {
		f.chunks[in.Inode] = map[uint64][]*masterpb.SliceRef{}
	}
	for _, e := range exts {
		end := e.FileOffset + e.Length
		for idx := e.FileOffset / f.chunkSize; idx*f.chunkSize < end; idx++ {
			base := idx * f.chunkSize
			from, to := max(e.FileOffset, base), min(end, base+f.chunkSize)
			f.chunks[in.Inode][idx] = append(f.chunks[in.Inode][idx], &masterpb.SliceRef{
				SliceId: in.SliceId, FileOffset: from, SliceOffset: e.SliceOffset + from - e.FileOffset, Length: to - from,
				SliceLength: length, Layout: wirelayout.ToProto(sl.layout), Shards: shards,
			})
		}
		f.sizes[in.Inode] = max(f.sizes[in.Inode], end)
	}
	return &masterpb.CommitSliceResponse{Attr: &masterpb.Attr{Inode: in.Inode, Size: f.sizes[in.Inode]}}, nil
}

// WriteInline is not offered: writers fall back to slices, which the
// data-path tests exercise.
func (f *fakeMeta) WriteInline(context.Context, *masterpb.WriteInlineRequest, ...grpc.CallOption) (*masterpb.WriteInlineResponse, error) {
	return nil, status.Error(codes.Unimplemented, "fake: no inline data")
}

// CompactChunk is not offered: the data-path tests do not compact.
func (f *fakeMeta) CompactChunk(context.Context, *masterpb.CompactChunkRequest, ...grpc.CallOption) (*masterpb.CompactChunkResponse, error) {
	return nil, status.Error(codes.Unimplemented, "fake: no compaction")
}

func (f *fakeMeta) GetLayout(ctx context.Context, in *masterpb.GetLayoutRequest, _ ...grpc.CallOption) (*masterpb.GetLayoutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.layouts = append(f.layouts, in)
	size := f.sizes[in.Inode]
	res := &masterpb.GetLayoutResponse{Attr: &masterpb.Attr{Inode: in.Inode, Size: size}}
	// Like the master: the refs that overlap [offset, offset+length),
	// length 0 meaning to the end.
	end := size
	if in.Length != 0 && in.Offset <= size && in.Length < size-in.Offset {
		end = in.Offset + in.Length
	}
	chunks := f.chunks[in.Inode]
	for idx := uint64(0); idx*f.chunkSize < end; idx++ {
		for _, r := range chunks[idx] {
			if r.FileOffset < end && r.FileOffset+r.Length > in.Offset {
				res.Slices = append(res.Slices, r)
			}
		}
	}
	return res, nil
}

func (f *fakeMeta) ReportBadShard(ctx context.Context, in *masterpb.ReportBadShardRequest, _ ...grpc.CallOption) (*masterpb.ReportBadShardResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, in)
	return &masterpb.ReportBadShardResponse{}, nil
}

// reported returns the chunkservers reported bad so far.
func (f *fakeMeta) reported() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, r := range f.reports {
		out[r.ChunkserverId]++
	}
	return out
}

// hooks lets a test interfere with chunkserver streams from the client
// side: flip bytes in cells read from one address, or run a function (stop
// the server, say) before the nth cell sent to an address. The function
// runs on the sending stream's goroutine, so that stream is stalled until
// it returns: a server stopped there cannot finish the shard first.
type hooks struct {
	mu       sync.Mutex
	flipAddr string
	kills    map[string]*killHook
	// received counts the cell bytes read from chunkservers.
	received int64
}

type killHook struct {
	after, sent int
	fn          func()
}

// killAt arranges for fn to run before the nth cell sent to addr.
func (h *hooks) killAt(addr string, n int, fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kills == nil {
		h.kills = map[string]*killHook{}
	}
	h.kills[addr] = &killHook{after: n, fn: fn}
}

// receivedBytes returns the cell bytes read from chunkservers so far.
func (h *hooks) receivedBytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.received
}

func (h *hooks) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &hookStream{ClientStream: cs, h: h, addr: cc.Target()}, nil
	})}
}

type hookStream struct {
	grpc.ClientStream
	h    *hooks
	addr string
}

func (s *hookStream) SendMsg(m any) error {
	if req, ok := m.(*chunkpb.WriteShardRequest); ok && len(req.Data) > 0 {
		s.h.mu.Lock()
		var fn func()
		if k := s.h.kills[s.addr]; k != nil {
			k.sent++
			if k.sent == k.after {
				fn = k.fn
			}
		}
		s.h.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
	return s.ClientStream.SendMsg(m)
}

func (s *hookStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	resp, ok := m.(*chunkpb.ReadShardResponse)
	if in, into := m.(*shardcodec.Into); into {
		// Received into the reader's own buffer (in place).
		resp, ok = in.Msg, true
	}
	if ok && err == nil && len(resp.Data) > 0 {
		s.h.mu.Lock()
		flip := s.addr == s.h.flipAddr
		s.h.received += int64(len(resp.Data))
		s.h.mu.Unlock()
		if flip {
			resp.Data[len(resp.Data)/2] ^= 0x5a
		}
	}
	return err
}
