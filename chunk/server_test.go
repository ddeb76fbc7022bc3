package chunk

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/shardcodec"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testKey = []byte("test-cluster-key-0123456789")

// harness is one running chunkserver and a client connection to it.
type harness struct {
	t      testing.TB
	srv    *Server
	client chunkpb.ChunkClient
	codec  *shardcodec.Codec // the client's
	signer *token.Signer
	cancel context.CancelFunc
	done   chan error
	conn   *grpc.ClientConn
}

func start(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	cfg := Config{ID: "cs-test", ListenAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Dir: t.TempDir(), ClusterKey: testKey, ShutdownGrace: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, srv: srv, cancel: cancel, done: make(chan error, 1), codec: shardcodec.New()}
	go func() { h.done <- srv.Run(ctx) }()
	conn, err := grpc.NewClient(srv.Addr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(h.codec), grpc.MaxCallRecvMsgSize(MaxCellSize+1<<20)),
		// Dialled as client/pool.go dials, so the shard benchmarks
		// measure the transport a real client gets.
		grpc.WithInitialWindowSize(4<<20),
		grpc.WithInitialConnWindowSize(16<<20),
		grpc.WithWriteBufferSize(1<<20),
		grpc.WithReadBufferSize(1<<20),
		experimental.WithBufferPool(h.codec.BufferPool()))
	if err != nil {
		t.Fatal(err)
	}
	h.conn = conn
	h.client = chunkpb.NewChunkClient(conn)
	h.signer, _ = token.NewSigner(testKey)
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	// Stop the server before the client so shutdown meets open streams.
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.conn.Close()
	h.cancel = nil
}

func (h *harness) writeToken(id *chunkpb.ShardID, max uint64) *chunkpb.Token {
	return h.signer.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, id.SliceId, id.Index, max, time.Now().Add(time.Minute))
}

// cells cuts data into cells with their checksums.
func cells(data []byte, cell int) (out [][]byte, sums [][32]byte) {
	for off := 0; off < len(data); off += cell {
		c := data[off:min(off+cell, len(data))]
		out = append(out, c)
		sums = append(sums, erasure.Checksum(c))
	}
	return out, sums
}

// write streams data as shard id and returns the server's answer.
func (h *harness) write(id *chunkpb.ShardID, data []byte, cell int, tok *chunkpb.Token, mangle func(i int, m *chunkpb.WriteShardRequest)) (*chunkpb.WriteShardResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.client.WriteShard(ctx)
	if err != nil {
		return nil, err
	}
	cs, sums := cells(data, cell)
	msgs := []*chunkpb.WriteShardRequest{{Header: &chunkpb.WriteShardHeader{Shard: id, Length: uint64(len(data)), CellSize: uint32(cell), Token: tok}}}
	for i := range cs {
		msgs = append(msgs, &chunkpb.WriteShardRequest{Data: cs[i], Sha256: sums[i][:]})
	}
	for i, m := range msgs {
		if mangle != nil {
			mangle(i, m)
		}
		if err := st.Send(m); err != nil {
			break // the server ended the stream; CloseAndRecv has why
		}
	}
	return st.CloseAndRecv()
}

// read reads [off, off+n) and verifies every cell it receives.
func (h *harness) read(id *chunkpb.ShardID, off, n uint64) ([]byte, error) {
	st, err := h.client.ReadShard(context.Background(), &chunkpb.ReadShardRequest{Shard: id, Offset: off, Length: n})
	if err != nil {
		return nil, err
	}
	var buf []byte
	var start uint64
	first := true
	for {
		m, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if first {
			first = false
			if n == 0 {
				n = m.ShardLength - off
			}
			if len(m.Data) > 0 {
				start = m.Offset
			}
		}
		if len(m.Data) == 0 {
			continue
		}
		if err := erasure.Verify(m.Data, m.Sha256); err != nil {
			return nil, err
		}
		if want := start + uint64(len(buf)); m.Offset != want {
			h.t.Fatalf("cell at offset %d, want %d", m.Offset, want)
		}
		buf = append(buf, m.Data...)
	}
	if n == 0 {
		return nil, nil
	}
	return buf[off-start : off-start+n], nil
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func codeOf(err error) codes.Code { return status.Code(err) }

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %v", what, err, code)
	}
	if code != codes.OK && !strings.Contains(status.Convert(err).Message(), "chunk") {
		t.Errorf("%s: error %q does not say where it came from", what, err)
	}
}

func TestRoundTrip(t *testing.T) {
	h := start(t, nil)
	r := rand.New(rand.NewPCG(1, 2))
	const cell = 4096
	for i, n := range []int{0, 1, cell - 1, cell, cell + 1, 3*cell + 7, 40 * cell} {
		id := &chunkpb.ShardID{SliceId: uint64(100 + i), Index: uint32(i % 3)}
		data := randBytes(r, n)
		resp, err := h.write(id, data, cell, h.writeToken(id, uint64(n)), nil)
		if err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
		if resp.Length != uint64(n) {
			t.Fatalf("write %d bytes: server stored %d", n, resp.Length)
		}
		got, err := h.read(id, 0, 0)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes: err %v, equal %v", n, err, bytes.Equal(got, data))
		}
		for k := 0; k < 20 && n > 0; k++ {
			off := r.IntN(n)
			l := 1 + r.IntN(n-off)
			got, err := h.read(id, uint64(off), uint64(l))
			if err != nil || !bytes.Equal(got, data[off:off+l]) {
				t.Fatalf("read [%d,+%d) of %d: err %v", off, l, n, err)
			}
		}
		st, err := h.client.StatShard(context.Background(), &chunkpb.StatShardRequest{Shard: id})
		if err != nil || st.Info.Length != uint64(n) || st.Info.CellSize != cell {
			t.Fatalf("stat: %v %v", st, err)
		}
	}
}

func TestWriteRejects(t *testing.T) {
	h := start(t, nil)
	r := rand.New(rand.NewPCG(3, 4))
	const cell = 4096
	data := randBytes(r, 3*cell+5)
	id := func(i uint32) *chunkpb.ShardID { return &chunkpb.ShardID{SliceId: 7, Index: i} }

	tests := []struct {
		name   string
		tok    func(*chunkpb.ShardID) *chunkpb.Token
		mangle func(i int, m *chunkpb.WriteShardRequest)
		code   codes.Code
	}{
		{"bad checksum", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 2 {
				m.Sha256 = bytes.Repeat([]byte{1}, 32)
			}
		}, codes.InvalidArgument},
		{"flipped bit", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 3 {
				m.Data = append([]byte(nil), m.Data...)
				m.Data[100] ^= 1
			}
		}, codes.InvalidArgument},
		{"short checksum", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 1 {
				m.Sha256 = m.Sha256[:31]
			}
		}, codes.InvalidArgument},
		{"truncated stream", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 4 {
				m.Data, m.Sha256 = nil, nil
			}
		}, codes.InvalidArgument},
		{"oversized stream", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 4 {
				m.Data = make([]byte, cell)
				s := erasure.Checksum(m.Data)
				m.Sha256 = s[:]
			}
		}, codes.InvalidArgument},
		{"header twice", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 2 {
				m.Header = &chunkpb.WriteShardHeader{Shard: id(0)}
			}
		}, codes.InvalidArgument},
		{"no header", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 0 {
				m.Header = nil
			}
		}, codes.InvalidArgument},
		{"zero cell size", nil, func(i int, m *chunkpb.WriteShardRequest) {
			if i == 0 {
				m.Header.CellSize = 0
			}
		}, codes.InvalidArgument},
		{"no token", func(*chunkpb.ShardID) *chunkpb.Token { return nil }, nil, codes.PermissionDenied},
		{"forged token", func(s *chunkpb.ShardID) *chunkpb.Token {
			other, _ := token.NewSigner([]byte("some-other-key-0123456789"))
			return other.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, s.SliceId, s.Index, 1<<30, time.Now().Add(time.Hour))
		}, nil, codes.PermissionDenied},
		{"expired token", func(s *chunkpb.ShardID) *chunkpb.Token {
			return h.signer.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, s.SliceId, s.Index, 1<<30, time.Now().Add(-time.Second))
		}, nil, codes.PermissionDenied},
		{"token for another shard", func(s *chunkpb.ShardID) *chunkpb.Token {
			return h.signer.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, s.SliceId, s.Index+1, 1<<30, time.Now().Add(time.Hour))
		}, nil, codes.PermissionDenied},
		{"token too small", func(s *chunkpb.ShardID) *chunkpb.Token {
			return h.signer.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, s.SliceId, s.Index, 10, time.Now().Add(time.Hour))
		}, nil, codes.PermissionDenied},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid := id(uint32(i))
			tok := h.writeToken(sid, 1<<30)
			if tt.tok != nil {
				tok = tt.tok(sid)
			}
			_, err := h.write(sid, data, cell, tok, tt.mangle)
			wantCode(t, err, tt.code, tt.name)
			_, err = h.client.StatShard(context.Background(), &chunkpb.StatShardRequest{Shard: sid})
			wantCode(t, err, codes.NotFound, "stat after a refused write")
		})
	}
	// After all that, the server still works.
	sid := id(99)
	if _, err := h.write(sid, data, cell, h.writeToken(sid, 1<<30), nil); err != nil {
		t.Fatalf("good write after bad ones: %v", err)
	}
}

func TestIdempotentRewrite(t *testing.T) {
	h := start(t, nil)
	r := rand.New(rand.NewPCG(5, 6))
	data := randBytes(r, 10000)
	id := &chunkpb.ShardID{SliceId: 1, Index: 1}
	tok := h.writeToken(id, 1<<20)
	if _, err := h.write(id, data, 4096, tok, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.write(id, data, 4096, tok, nil); err != nil {
		t.Fatalf("identical retry: %v", err)
	}
	other := append([]byte(nil), data...)
	other[0] ^= 0xff
	_, err := h.write(id, other, 4096, tok, nil)
	wantCode(t, err, codes.AlreadyExists, "different bytes under the same ID")
	got, err := h.read(id, 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("original bytes changed: %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	h := start(t, nil)
	id := &chunkpb.ShardID{SliceId: 3, Index: 0}
	_, err := h.read(id, 0, 0)
	wantCode(t, err, codes.NotFound, "unknown shard")
	if _, err := h.write(id, make([]byte, 5000), 4096, h.writeToken(id, 5000), nil); err != nil {
		t.Fatal(err)
	}
	_, err = h.read(id, 4000, 2000)
	wantCode(t, err, codes.OutOfRange, "read past the end")
	_, err = h.read(id, 6000, 0)
	wantCode(t, err, codes.OutOfRange, "offset past the end")
	_, err = h.read(nil, 0, 0)
	wantCode(t, err, codes.InvalidArgument, "no shard")
}

func TestDeleteAndList(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	var ids []*chunkpb.ShardID
	for s := uint64(1); s <= 5; s++ {
		for i := uint32(0); i < 3; i++ {
			id := &chunkpb.ShardID{SliceId: s, Index: i}
			ids = append(ids, id)
			if _, err := h.write(id, []byte{byte(s), byte(i)}, 4096, h.writeToken(id, 2), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	list := func(after *chunkpb.ShardID, batch uint32) []string {
		st, err := h.client.ListShards(ctx, &chunkpb.ListShardsRequest{StartAfter: after, BatchSize: batch})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for {
			m, err := st.Recv()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range m.Shards {
				out = append(out, shardName(s.Shard))
			}
		}
	}
	if got := list(nil, 4); len(got) != 15 || got[0] != "1/0" || got[14] != "5/2" {
		t.Fatalf("list = %v", got)
	}
	if got := list(&chunkpb.ShardID{SliceId: 2, Index: 2}, 0); len(got) != 9 || got[0] != "3/0" {
		t.Fatalf("list after 2/2 = %v", got)
	}
	del := func(id *chunkpb.ShardID, tok *chunkpb.Token) (*chunkpb.DeleteShardResponse, error) {
		return h.client.DeleteShard(ctx, &chunkpb.DeleteShardRequest{Shard: id, Token: tok})
	}
	_, err := del(ids[0], h.writeToken(ids[0], 0))
	wantCode(t, err, codes.PermissionDenied, "delete with a write token")
	delTok := h.signer.Mint(chunkpb.TokenOp_TOKEN_OP_DELETE, 1, 0, 0, time.Now().Add(time.Minute))
	if r, err := del(ids[0], delTok); err != nil || !r.Existed {
		t.Fatalf("delete: %v %v", r, err)
	}
	if r, err := del(ids[0], delTok); err != nil || r.Existed {
		t.Fatalf("second delete: %v %v", r, err)
	}
	_, err = h.read(ids[0], 0, 0)
	wantCode(t, err, codes.NotFound, "read deleted shard")
	if got := list(nil, 0); len(got) != 14 || got[0] != "1/1" {
		t.Fatalf("list after delete = %v", got)
	}
}

func TestFullDisk(t *testing.T) {
	h := start(t, func(c *Config) { c.Capacity = 256 << 10 })
	r := rand.New(rand.NewPCG(7, 8))
	big := &chunkpb.ShardID{SliceId: 1}
	_, err := h.write(big, randBytes(r, 1<<20), 64<<10, h.writeToken(big, 1<<20), nil)
	wantCode(t, err, codes.ResourceExhausted, "shard larger than capacity")
	small := &chunkpb.ShardID{SliceId: 2}
	if _, err := h.write(small, randBytes(r, 1000), 4096, h.writeToken(small, 1000), nil); err != nil {
		t.Fatalf("small write after a full-disk refusal: %v", err)
	}
}

// TestAbortedStream breaks a write mid-stream: nothing of the shard may be
// visible afterwards.
func TestAbortedStream(t *testing.T) {
	h := start(t, nil)
	id := &chunkpb.ShardID{SliceId: 11}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := h.client.WriteShard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4096)
	sum := erasure.Checksum(data)
	if err := st.Send(&chunkpb.WriteShardRequest{Header: &chunkpb.WriteShardHeader{Shard: id, Length: 10 * 4096, CellSize: 4096, Token: h.writeToken(id, 1<<20)}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := st.Send(&chunkpb.WriteShardRequest{Data: data, Sha256: sum[:]}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	// The server notices the broken stream asynchronously.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, err = h.client.StatShard(context.Background(), &chunkpb.StatShardRequest{Shard: id})
		if status.Code(err) == codes.NotFound && activeWrites(h) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantCode(t, err, codes.NotFound, "stat after an aborted stream")
	if n := activeWrites(h); n != 0 {
		t.Fatalf("%v writes still active after the client went away", n)
	}
}

func activeWrites(h *harness) float64 {
	return gaugeValue(h.srv, "cairn_chunk_active_writes")
}

// TestMetricsEndpoint: /metrics counts operations by kind, never by
// shard: a series per shard would grow without bound with the store.
func TestMetricsEndpoint(t *testing.T) {
	h := start(t, nil)
	for slice := uint64(1); slice <= 3; slice++ {
		id := &chunkpb.ShardID{SliceId: slice}
		if _, err := h.write(id, []byte("hello"), 4096, h.writeToken(id, 5), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := h.read(id, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.read(&chunkpb.ShardID{SliceId: 99}, 0, 0)
	wantCode(t, err, codes.NotFound, "unknown shard")
	if !strings.Contains(status.Convert(err).Message(), "99/0") {
		t.Errorf("error %q does not name the shard", err)
	}
	resp, err := http.Get("http://" + h.srv.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"cairn_chunk_bytes_in_total",
		`cairn_chunk_ops_total{chunkserver="cs-test",code="OK",op="write shard"} 3`,
		`cairn_chunk_ops_total{chunkserver="cs-test",code="OK",op="read shard"} 3`,
		`cairn_chunk_ops_total{chunkserver="cs-test",code="NotFound",op="read shard"} 1`,
		`cairn_chunk_op_seconds_count{chunkserver="cs-test",op="write shard"} 3`,
		"cairn_chunk_shards",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if m := regexp.MustCompile(`op="[^"]*[0-9]+/[0-9]+"`).FindString(string(body)); m != "" {
		t.Errorf("/metrics has a series per shard: %s", m)
	}
	prof, err := http.Get("http://" + h.srv.HTTPAddr() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer prof.Body.Close()
	if body, _ := io.ReadAll(prof.Body); prof.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine: %s %.200q", prof.Status, body)
	}
}

// TestShutdownAbortsStreams cancels Run while a write is open: Run must
// return within the grace period and the shard must not exist when the
// store is opened again.
func TestShutdownAbortsStreams(t *testing.T) {
	dir := t.TempDir()
	h := start(t, func(c *Config) { c.Dir = dir; c.ShutdownGrace = 200 * time.Millisecond })
	id := &chunkpb.ShardID{SliceId: 12}
	st, err := h.client.WriteShard(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4096)
	sum := erasure.Checksum(data)
	if err := st.Send(&chunkpb.WriteShardRequest{Header: &chunkpb.WriteShardHeader{Shard: id, Length: 2 * 4096, CellSize: 4096, Token: h.writeToken(id, 1<<20)}, Data: data, Sha256: sum[:]}); err != nil {
		t.Fatal(err)
	}
	for activeWrites(h) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	h.stop()
	if _, err := st.CloseAndRecv(); err == nil {
		t.Fatal("the interrupted write was acknowledged")
	}
	h2 := start(t, func(c *Config) { c.Dir = dir })
	_, err = h2.client.StatShard(context.Background(), &chunkpb.StatShardRequest{Shard: id})
	wantCode(t, err, codes.NotFound, "stat after restart")
}
