package master

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/master/internal/placement"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// toStatus converts any error a handler meets into the gRPC status the
// client sees. It is the master's one conversion point:
//
//   - an *fsm.Error (a POSIX failure, identical on every replica) becomes
//     masterpb.ErrnoError with its errno (the code from
//     masterpb.CodeForErrno);
//   - Raft's "not leader" and "leadership lost" become NotLeader
//     (Unavailable with the leader's address): the command may or may not
//     have been applied, and a retry with the same request ID is safe;
//   - shutting down and Raft shut down are Unavailable with no leader;
//   - too few chunkservers for a placement is ResourceExhausted (ENOSPC);
//   - context errors keep their meaning (Canceled, DeadlineExceeded);
//   - a status error passes through;
//   - anything else is Internal (EIO).
func (s *Server) toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *fsm.Error
	switch {
	case errors.As(err, &fe):
		return masterpb.ErrnoError(fe.Errno, fe.Error())
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, errNotLeader):
		return s.notLeader()
	case errors.Is(err, errShuttingDown), errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout):
		return masterpb.NotLeaderError("", err.Error())
	case errors.Is(err, placement.ErrTooFewServers):
		// Servers that are only late (suspect: a loaded machine, a long
		// GC pause) or not yet heard from may be back in a moment: the
		// client should retry, not report a full file system.
		var tf *placement.TooFewServersError
		if errors.As(err, &tf) && tf.Eligible+tf.Suspect+tf.Unknown >= tf.Need {
			return status.Error(codes.Unavailable, err.Error())
		}
		return masterpb.ErrnoError(syscall.ENOSPC, err.Error())
	case errors.Is(err, fsm.ErrNeedsRestore):
		return masterpb.ErrnoError(syscall.EAGAIN, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return masterpb.ErrnoError(errno, err.Error())
	}
	return masterpb.ErrnoError(syscall.EIO, err.Error())
}

// invalid is the error for bad input caught before proposing: EINVAL.
func invalid(op, format string, args ...any) error {
	return masterpb.ErrnoError(syscall.EINVAL, "master: "+op+": "+fmt.Sprintf(format, args...))
}

// errnoErr is a POSIX failure found by the master itself.
func errnoErr(errno syscall.Errno, op, format string, args ...any) error {
	return masterpb.ErrnoError(errno, "master: "+op+": "+fmt.Sprintf(format, args...))
}
