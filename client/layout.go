package client

import (
	"fmt"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// layoutFromProto converts a layout from the master to erasure's
// (wirelayout.FromProto) and refuses cells larger than the client handles.
func layoutFromProto(p *chunkpb.Layout) (erasure.Layout, error) {
	l, err := wirelayout.FromProto(p)
	if err != nil {
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
