package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Metadata is what the data path needs from the master. The method set is
// the matching subset of masterpb.MasterClient, so a generated client
// (masterpb.NewMasterClient(conn)) satisfies it as is; tests pass an
// in-memory fake.
//
// Implementations must be safe for concurrent use. Errors are gRPC status
// errors as the master returns them (masterpb.ErrnoOf reads them). The data
// path sets a fresh RequestHeader on every mutation; an implementation
// that retries (after a leader change, say) must resend the request
// unchanged, request ID included, so the master applies it once. The data
// path itself does not follow NotLeader answers: that is the job of the
// connection to the master under it.
type Metadata interface {
	AllocateSlice(ctx context.Context, in *masterpb.AllocateSliceRequest, opts ...grpc.CallOption) (*masterpb.AllocateSliceResponse, error)
	ReplaceShard(ctx context.Context, in *masterpb.ReplaceShardRequest, opts ...grpc.CallOption) (*masterpb.ReplaceShardResponse, error)
	CommitSlice(ctx context.Context, in *masterpb.CommitSliceRequest, opts ...grpc.CallOption) (*masterpb.CommitSliceResponse, error)
	WriteInline(ctx context.Context, in *masterpb.WriteInlineRequest, opts ...grpc.CallOption) (*masterpb.WriteInlineResponse, error)
	GetLayout(ctx context.Context, in *masterpb.GetLayoutRequest, opts ...grpc.CallOption) (*masterpb.GetLayoutResponse, error)
	ReportBadShard(ctx context.Context, in *masterpb.ReportBadShardRequest, opts ...grpc.CallOption) (*masterpb.ReportBadShardResponse, error)
	CompactChunk(ctx context.Context, in *masterpb.CompactChunkRequest, opts ...grpc.CallOption) (*masterpb.CompactChunkResponse, error)
}

// The generated client must keep satisfying Metadata.
var _ Metadata = masterpb.MasterClient(nil)
