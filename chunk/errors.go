package chunk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cairnfs/cairn/internal/token"
)

// toStatus converts an error from the store, the token check or the stream
// into the gRPC status a client sees. It is the only place that decides
// codes, so clients can rely on them:
//
//	NotFound           the shard does not exist
//	InvalidArgument    malformed request, or a cell whose checksum does not match on the way in
//	OutOfRange         a read past the end of the shard
//	AlreadyExists      the shard exists with different bytes
//	ResourceExhausted  the disk or the configured capacity is full
//	PermissionDenied   a missing, forged, expired or mismatched token
//	DataLoss           stored bytes are corrupt
//	FailedPrecondition a rebuild found too few readable sources
//	Unavailable        the server is shutting down, or its store failed
//	Canceled           the client went away
func toStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := fmt.Sprintf("chunk: %s: %v", op, err)
	switch {
	case errors.Is(err, shardstore.ErrNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, shardstore.ErrChecksum):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, shardstore.ErrExists):
		return status.Error(codes.AlreadyExists, msg)
	case errors.Is(err, shardstore.ErrNoSpace):
		return status.Error(codes.ResourceExhausted, msg)
	case errors.Is(err, errNoSources):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, shardstore.ErrInvalid), errors.Is(err, errBadRequest):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, errOutOfRange):
		return status.Error(codes.OutOfRange, msg)
	case errors.Is(err, shardstore.ErrCorrupt):
		return status.Error(codes.DataLoss, msg)
	case errors.Is(err, shardstore.ErrClosed), errors.Is(err, shardstore.ErrFailed), errors.Is(err, errShuttingDown):
		return status.Error(codes.Unavailable, msg)
	case errors.Is(err, token.ErrMissing), errors.Is(err, token.ErrBadMAC),
		errors.Is(err, token.ErrExpired), errors.Is(err, token.ErrMismatch):
		return status.Error(codes.PermissionDenied, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	}
	return status.Error(codes.Internal, msg)
}

var (
	errBadRequest   = errors.New("bad request")
	errOutOfRange   = errors.New("out of range")
	errShuttingDown = errors.New("chunkserver is shutting down")
	// errNoSources: a rebuild found fewer readable sources than it needs.
	errNoSources = errors.New("too few readable sources")
)
