package masterpb

// This file is hand-written, not generated: the one place where POSIX errno
// values and gRPC status codes meet, so that the master (which builds
// statuses) and every client (which reads them) agree.

import (
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// CodeForErrno returns the gRPC code a failure with errno travels under:
//
//	ENOENT, ENODATA, ESTALE                       NotFound
//	EEXIST                                        AlreadyExists
//	EACCES, EPERM                                 PermissionDenied
//	ENOTEMPTY, ENOTDIR, EISDIR, EXDEV, ELOOP,
//	EBUSY, EROFS, EMLINK                          FailedPrecondition
//	EINVAL, ENAMETOOLONG, EBADF                   InvalidArgument
//	EFBIG, ERANGE, E2BIG                          OutOfRange
//	ENOSPC, EDQUOT                                ResourceExhausted
//	ENOSYS, EOPNOTSUPP                            Unimplemented
//	EAGAIN                                        Unavailable
//	ETIMEDOUT                                     DeadlineExceeded
//	EINTR, ECANCELED                              Canceled
//	EIO and anything else                         Internal
//
// Errno values are Linux's.
func CodeForErrno(errno syscall.Errno) codes.Code {
	switch errno {
	case syscall.ENOENT, syscall.ENODATA, syscall.ESTALE:
		return codes.NotFound
	case syscall.EEXIST:
		return codes.AlreadyExists
	case syscall.EACCES, syscall.EPERM:
		return codes.PermissionDenied
	case syscall.ENOTEMPTY, syscall.ENOTDIR, syscall.EISDIR, syscall.EXDEV, syscall.ELOOP,
		syscall.EBUSY, syscall.EROFS, syscall.EMLINK:
		return codes.FailedPrecondition
	case syscall.EINVAL, syscall.ENAMETOOLONG, syscall.EBADF:
		return codes.InvalidArgument
	case syscall.EFBIG, syscall.ERANGE, syscall.E2BIG:
		return codes.OutOfRange
	case syscall.ENOSPC, syscall.EDQUOT:
		return codes.ResourceExhausted
	case syscall.ENOSYS, syscall.EOPNOTSUPP:
		return codes.Unimplemented
	case syscall.EAGAIN:
		return codes.Unavailable
	case syscall.ETIMEDOUT:
		return codes.DeadlineExceeded
	case syscall.EINTR, syscall.ECANCELED:
		return codes.Canceled
	}
	return codes.Internal
}

// ErrnoError returns a status error with code CodeForErrno(errno), message
// msg and an ErrorDetail carrying errno.
func ErrnoError(errno syscall.Errno, msg string) error {
	return withDetail(CodeForErrno(errno), msg, &ErrorDetail{Errno: uint32(errno)})
}

// NotLeaderError is the answer of a master that is not the Raft leader:
// code Unavailable (retryable: an election may be in progress) with an
// ErrorDetail whose leader_address is the leader's gRPC address, or empty
// when no leader is known (try another master after a pause). A client
// resends the same request, request ID included, to leader_address.
func NotLeaderError(leaderAddress, msg string) error {
	return withDetail(codes.Unavailable, msg, &ErrorDetail{Errno: uint32(syscall.EAGAIN), LeaderAddress: leaderAddress})
}

func withDetail(code codes.Code, msg string, d *ErrorDetail) error {
	st, err := status.New(code, msg).WithDetails(d)
	if err != nil {
		// WithDetails fails only for an OK code or a detail that does not
		// marshal; neither happens here, but the bare status is still right.
		return status.Error(code, msg)
	}
	return st.Err()
}

// DetailOf returns the ErrorDetail a status error carries, or nil.
func DetailOf(err error) *ErrorDetail {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if e, ok := d.(*ErrorDetail); ok {
			return e
		}
	}
	return nil
}

// LeaderAddressOf reports whether err is a NotLeader answer, and the
// leader's gRPC address it names ("" if the master knew of no leader).
func LeaderAddressOf(err error) (addr string, notLeader bool) {
	if status.Code(err) != codes.Unavailable {
		return "", false
	}
	d := DetailOf(err)
	if d == nil {
		return "", true
	}
	return d.LeaderAddress, true
}

// ErrnoOf returns the errno a master's error means: the ErrorDetail's when
// present, otherwise one derived from the gRPC code (the inverse of
// CodeForErrno: NotFound is ENOENT, Unavailable EAGAIN, Internal and
// unknown codes EIO, and so on). It returns 0 for a nil error.
func ErrnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if d := DetailOf(err); d != nil && d.Errno != 0 {
		return syscall.Errno(d.Errno)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch status.Code(err) {
	case codes.NotFound:
		return syscall.ENOENT
	case codes.AlreadyExists:
		return syscall.EEXIST
	case codes.PermissionDenied, codes.Unauthenticated:
		return syscall.EACCES
	case codes.FailedPrecondition:
		return syscall.EPERM
	case codes.InvalidArgument:
		return syscall.EINVAL
	case codes.OutOfRange:
		return syscall.ERANGE
	case codes.ResourceExhausted:
		return syscall.ENOSPC
	case codes.Unimplemented:
		return syscall.ENOSYS
	case codes.Unavailable, codes.Aborted:
		return syscall.EAGAIN
	case codes.DeadlineExceeded:
		return syscall.ETIMEDOUT
	case codes.Canceled:
		return syscall.EINTR
	}
	return syscall.EIO
}
