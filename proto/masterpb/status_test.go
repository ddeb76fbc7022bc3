package masterpb

import (
	"errors"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrnoRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		code  codes.Code
	}{
		{syscall.ENOENT, codes.NotFound},
		{syscall.EEXIST, codes.AlreadyExists},
		{syscall.EACCES, codes.PermissionDenied},
		{syscall.EPERM, codes.PermissionDenied},
		{syscall.ENOTEMPTY, codes.FailedPrecondition},
		{syscall.ENOTDIR, codes.FailedPrecondition},
		{syscall.EISDIR, codes.FailedPrecondition},
		{syscall.EINVAL, codes.InvalidArgument},
		{syscall.ENAMETOOLONG, codes.InvalidArgument},
		{syscall.ENOSPC, codes.ResourceExhausted},
		{syscall.EFBIG, codes.OutOfRange},
		{syscall.ENODATA, codes.NotFound},
		{syscall.EIO, codes.Internal},
	} {
		err := ErrnoError(tc.errno, "boom")
		if got := status.Code(err); got != tc.code {
			t.Errorf("%v: code %v, want %v", tc.errno, got, tc.code)
		}
		if got := ErrnoOf(err); got != tc.errno {
			t.Errorf("%v: ErrnoOf = %v", tc.errno, got)
		}
		if _, nl := LeaderAddressOf(err); nl {
			t.Errorf("%v: taken for NotLeader", tc.errno)
		}
	}
}

func TestNotLeader(t *testing.T) {
	err := NotLeaderError("10.0.0.1:7000", "not the leader")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code %v", status.Code(err))
	}
	if addr, ok := LeaderAddressOf(err); !ok || addr != "10.0.0.1:7000" {
		t.Fatalf("LeaderAddressOf = %q, %v", addr, ok)
	}
	if addr, ok := LeaderAddressOf(status.Error(codes.Unavailable, "no detail")); !ok || addr != "" {
		t.Fatalf("bare Unavailable: %q, %v", addr, ok)
	}
}

func TestErrnoOfWithoutDetail(t *testing.T) {
	if got := ErrnoOf(status.Error(codes.NotFound, "x")); got != syscall.ENOENT {
		t.Errorf("NotFound without detail: %v", got)
	}
	if got := ErrnoOf(errors.New("plain")); got != syscall.EIO {
		t.Errorf("plain error: %v", got)
	}
	if got := ErrnoOf(nil); got != 0 {
		t.Errorf("nil: %v", got)
	}
}
