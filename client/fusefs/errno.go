package fusefs

import (
	"context"
	"errors"
	"io/fs"
	"syscall"
)

// errnoOf is the one translation from client errors to what the kernel
// is told. The file system's own answers carry their errno
// (client.Inodes wraps them as *fs.PathError); everything else — a
// master or chunkserver that stayed unreachable until the retries ran
// out, a failed upload, a timeout — is EIO, which is what a local disk
// says when it cannot do its job.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	switch {
	case errors.Is(err, fs.ErrClosed):
		return syscall.EBADF
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	return syscall.EIO
}
