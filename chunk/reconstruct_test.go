package chunk

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// spread writes the shards of data in layout l, shard i to hs[i], except
// those in skip, and returns the shards.
func spread(t *testing.T, hs []*harness, l erasure.Layout, slice uint64, data []byte, skip map[int]bool) [][]byte {
	t.Helper()
	c, err := erasure.NewCoder(l)
	if err != nil {
		t.Fatal(err)
	}
	shards := c.Split(data)
	for i, sh := range shards {
		if skip[i] {
			continue
		}
		id := &chunkpb.ShardID{SliceId: slice, Index: uint32(i)}
		if _, err := hs[i].write(id, sh, l.CellSize(), hs[i].writeToken(id, uint64(len(sh))), nil); err != nil {
			t.Fatalf("write shard %d: %v", i, err)
		}
	}
	return shards
}

func TestReconstructShard(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	hs := make([]*harness, 7)
	for i := range hs {
		hs[i] = start(t, nil)
	}
	dead := start(t, nil)
	deadAddr := dead.srv.Addr()
	dead.stop()

	rs := erasure.RS(4, 2).WithCellSize(4096)
	rep := erasure.Replicated(3).WithCellSize(4096)
	tests := []struct {
		name    string
		l       erasure.Layout
		length  int
		target  int
		skip    map[int]bool // shards never written
		sources func(addr func(i int) string) []*chunkpb.ShardSource
		code    codes.Code
	}{
		{name: "data shard, partial last row", l: rs, length: 3*4*4096 + 5000, target: 1, skip: map[int]bool{1: true}},
		{name: "parity shard", l: rs, length: 2*4*4096 + 100, target: 5, skip: map[int]bool{5: true}},
		{name: "dead and empty sources are skipped", l: rs, length: 4*4096 + 1, target: 0, skip: map[int]bool{0: true, 2: true},
			sources: func(addr func(int) string) []*chunkpb.ShardSource {
				return []*chunkpb.ShardSource{{Index: 1, Address: deadAddr}, {Index: 2, Address: addr(2)}, {Index: 3, Address: addr(3)},
					{Index: 4, Address: addr(4)}, {Index: 5, Address: addr(5)}, {Index: 1, Address: addr(1)}}
			}},
		{name: "too few sources", l: rs, length: 4 * 4096, target: 0, skip: map[int]bool{0: true, 1: true, 2: true}, code: codes.FailedPrecondition},
		{name: "replicated copy", l: rep, length: 3*4096 + 17, target: 2, skip: map[int]bool{2: true}},
		{name: "replicated copy around a dead source", l: rep, length: 4096, target: 0, skip: map[int]bool{0: true},
			sources: func(addr func(int) string) []*chunkpb.ShardSource {
				return []*chunkpb.ShardSource{{Index: 1, Address: deadAddr}, {Index: 2, Address: addr(2)}}
			}},
	}
	for n, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			slice := uint64(100 + n)
			data := randBytes(rng, tc.length)
			shards := spread(t, hs, tc.l, slice, data, tc.skip)
			addr := func(i int) string { return hs[i].srv.Addr() }
			var sources []*chunkpb.ShardSource
			if tc.sources != nil {
				sources = tc.sources(addr)
			} else {
				for i := range tc.l.Shards() {
					sources = append(sources, &chunkpb.ShardSource{Index: uint32(i), Address: addr(i)})
				}
			}
			id := &chunkpb.ShardID{SliceId: slice, Index: uint32(tc.target)}
			want := shards[tc.target]
			target := hs[6]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := target.client.ReconstructShard(ctx, &chunkpb.ReconstructShardRequest{
				Shard: id, Layout: wirelayout.ToProto(tc.l), SliceLength: uint64(tc.length), Sources: sources,
				Token: target.writeToken(id, uint64(len(want))),
			})
			if tc.code != codes.OK {
				wantCode(t, err, tc.code, "reconstruct")
				if _, err := target.read(id, 0, 0); codeOf(err) != codes.NotFound {
					t.Fatalf("a failed rebuild left a shard behind: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("reconstruct: %v", err)
			}
			if resp.Length != uint64(len(want)) {
				t.Fatalf("length %d, want %d", resp.Length, len(want))
			}
			got, err := target.read(id, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("rebuilt shard differs from the original")
			}
		})
	}
}

func TestReconstructShardRejects(t *testing.T) {
	h := start(t, nil)
	id := &chunkpb.ShardID{SliceId: 1, Index: 0}
	l := wirelayout.ToProto(erasure.RS(2, 1).WithCellSize(4096))
	ctx := context.Background()
	_, err := h.client.ReconstructShard(ctx, &chunkpb.ReconstructShardRequest{Shard: id, Layout: l, SliceLength: 8192})
	wantCode(t, err, codes.PermissionDenied, "no token")
	_, err = h.client.ReconstructShard(ctx, &chunkpb.ReconstructShardRequest{Shard: &chunkpb.ShardID{SliceId: 1, Index: 3}, Layout: l, SliceLength: 8192})
	wantCode(t, err, codes.InvalidArgument, "index beyond the layout")
	_, err = h.client.ReconstructShard(ctx, &chunkpb.ReconstructShardRequest{Shard: id, SliceLength: 8192})
	wantCode(t, err, codes.InvalidArgument, "no layout")
	_, err = h.client.ReconstructShard(ctx, &chunkpb.ReconstructShardRequest{Shard: id, Layout: l, SliceLength: 8192,
		Token: h.writeToken(id, 4096), Sources: []*chunkpb.ShardSource{{Index: 0, Address: h.srv.Addr()}}})
	wantCode(t, err, codes.FailedPrecondition, "only the target itself as a source")
}
