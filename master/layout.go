package master

import (
	"errors"
	"fmt"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// layoutFromProto converts a wire layout to erasure's and validates it.
func layoutFromProto(p *chunkpb.Layout) (erasure.Layout, error) {
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

// layoutToProto converts a valid erasure layout to the wire form.
func layoutToProto(l erasure.Layout) *chunkpb.Layout {
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

// defaultLayout is the cluster default when Config.DefaultLayout is empty,
// chosen from the number of live chunkservers n so that a slice can be
// placed and survives as many failures as the cluster allows:
//
//	n ≥ 6   RS(4,2)        1.5× raw space, tolerates 2 losses
//	n ≥ 3   RS(2,1)        1.5×, tolerates 1
//	n = 2   Replicated(2)  tolerates 1
//	n ≤ 1   Replicated(1)  no redundancy (placement fails when n = 0)
//
// A directory's layout policy overrides it. Either way a slice shorter
// than one stripe row (k cells) is stored with the layout's
// ReplicatedEquivalent, m+1 copies (see chooseLayout).
func defaultLayout(live int) erasure.Layout {
	switch {
	case live >= 6:
		return erasure.RS(4, 2)
	case live >= 3:
		return erasure.RS(2, 1)
	case live == 2:
		return erasure.Replicated(2)
	}
	return erasure.Replicated(1)
}

// chooseLayout returns the layout of a new slice of length bytes: the
// policy (nil: the cluster default), replaced by its replicated equivalent
// when the slice is shorter than one stripe row.
func (s *Server) chooseLayout(policy *chunkpb.Layout, live int, length uint64) (erasure.Layout, error) {
	var l erasure.Layout
	switch {
	case policy != nil:
		var err error
		if l, err = layoutFromProto(policy); err != nil {
			return 0, fmt.Errorf("layout policy: %w", err)
		}
	case s.cfg.DefaultLayout != "":
		var err error
		if l, err = erasure.ParseLayout(s.cfg.DefaultLayout); err != nil {
			return 0, err
		}
	default:
		l = defaultLayout(live)
	}
	if l.IsRS() && length < uint64(l.StripeRow()) {
		l = l.ReplicatedEquivalent()
	}
	return l, nil
}
