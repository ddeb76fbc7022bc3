package wirelayout

import (
	"testing"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

func TestRoundTrip(t *testing.T) {
	for _, l := range []erasure.Layout{erasure.RS(4, 2), erasure.RS(6, 3).WithCellSize(4096), erasure.Replicated(3), erasure.Replicated(1)} {
		got, err := FromProto(ToProto(l))
		if err != nil || got != l {
			t.Errorf("%s: round trip gives %s, %v", l, got, err)
		}
	}
}

func TestRejects(t *testing.T) {
	for name, p := range map[string]*chunkpb.Layout{
		"nil":                 nil,
		"unknown kind":        {Kind: 7, DataShards: 4, ParityShards: 2},
		"striped replicas":    {Kind: chunkpb.Layout_KIND_STRIPED, DataShards: 4, ParityShards: 2, Replicas: 1},
		"replicated data":     {Kind: chunkpb.Layout_KIND_REPLICATED, Replicas: 2, DataShards: 1},
		"too many shards":     {Kind: chunkpb.Layout_KIND_STRIPED, DataShards: 30, ParityShards: 30},
		"m > k":               {Kind: chunkpb.Layout_KIND_STRIPED, DataShards: 2, ParityShards: 3},
		"zero replicas":       {Kind: chunkpb.Layout_KIND_REPLICATED},
		"cell size too large": {Kind: chunkpb.Layout_KIND_STRIPED, DataShards: 4, ParityShards: 2, CellSize: 1 << 31},
	} {
		if l, err := FromProto(p); err == nil {
			t.Errorf("%s: accepted as %s", name, l)
		}
	}
	if l, err := FromProto(&chunkpb.Layout{Kind: chunkpb.Layout_KIND_STRIPED, DataShards: 4, ParityShards: 2}); err != nil || l.CellSize() != erasure.DefaultCellSize {
		t.Errorf("zero cell size: %s %v, want the default cell size", l, err)
	}
}
