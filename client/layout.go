package client

import (
	"errors"
	"fmt"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// layoutFromProto converts a layout from the master to erasure's and
// validates it. It mirrors the master's conversion (a zero cell size means
// erasure.DefaultCellSize); the two must agree, since the layout decides
// where every byte of a slice lives.
func layoutFromProto(p *chunkpb.Layout) (erasure.Layout, error) {
	if p == nil {
		return 0, errors.New("no layout")
	}
	var l erasure.Layout
	switch p.Kind {
	case chunkpb.Layout_KIND_STRIPED:
		l = erasure.RS(int(p.DataShards), int(p.ParityShards))
	case chunkpb.Layout_KIND_REPLICATED:
		l = erasure.Replicated(int(p.Replicas))
	default:
		return 0, fmt.Errorf("unknown layout kind %v", p.Kind)
	}
	cell := int(p.CellSize)
	switch {
	case p.CellSize == 0:
		cell = erasure.DefaultCellSize
	case uint64(p.CellSize) > erasure.MaxCellSize:
		cell = erasure.MaxCellSize + 1 // rejected by Validate below
	}
	l = l.WithCellSize(cell)
	if err := l.Validate(); err != nil {
		return 0, err
	}
	if l.CellSize() > maxCellSize {
		return 0, fmt.Errorf("layout %s: cells larger than %d bytes are not supported", l, maxCellSize)
	}
	return l, nil
}

// maxCellSize is the largest cell the client sends or accepts; it sizes the
// gRPC message limits on chunkserver connections. It matches the
// chunkserver's own limit (chunk.MaxCellSize, which client may not import).
const maxCellSize = 16 << 20
