package master

import (
	"fmt"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

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
		if l, err = wirelayout.FromProto(policy); err != nil {
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
