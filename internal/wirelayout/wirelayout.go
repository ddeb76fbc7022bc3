// Package wirelayout converts layouts between their wire form
// (chunkpb.Layout) and erasure.Layout. The master, the chunkservers and the
// clients must agree exactly on this conversion, since the layout decides
// where every byte of a slice lives; hence one copy of it.
package wirelayout

import (
	"errors"
	"fmt"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// FromProto converts a wire layout to erasure's and validates it. A zero
// cell size means erasure.DefaultCellSize. Callers with a smaller limit on
// cell sizes check it themselves.
func FromProto(p *chunkpb.Layout) (erasure.Layout, error) {
	if p == nil {
		return 0, errors.New("no layout")
	}
	var l erasure.Layout
	switch p.Kind {
	case chunkpb.Layout_KIND_STRIPED:
		if p.Replicas != 0 {
			return 0, errors.New("a striped layout has no replicas")
		}
		l = erasure.RS(int(p.DataShards), int(p.ParityShards))
	case chunkpb.Layout_KIND_REPLICATED:
		if p.DataShards != 0 || p.ParityShards != 0 {
			return 0, errors.New("a replicated layout has no data or parity shards")
		}
		l = erasure.Replicated(int(p.Replicas))
	default:
		return 0, fmt.Errorf("unknown layout kind %v", p.Kind)
	}
	cell := int(p.CellSize)
	if p.CellSize == 0 {
		cell = erasure.DefaultCellSize
	} else if uint64(p.CellSize) > erasure.MaxCellSize {
		cell = erasure.MaxCellSize + 1 // rejected by Validate below
	}
	l = l.WithCellSize(cell)
	if err := l.Validate(); err != nil {
		return 0, err
	}
	return l, nil
}

// ToProto converts a valid erasure layout to the wire form.
func ToProto(l erasure.Layout) *chunkpb.Layout {
	p := &chunkpb.Layout{CellSize: uint32(l.CellSize())}
	if l.IsReplicated() {
		p.Kind = chunkpb.Layout_KIND_REPLICATED
		p.Replicas = uint32(l.Shards())
	} else {
		p.Kind = chunkpb.Layout_KIND_STRIPED
		p.DataShards = uint32(l.DataShards())
		p.ParityShards = uint32(l.ParityShards())
	}
	return p
}
