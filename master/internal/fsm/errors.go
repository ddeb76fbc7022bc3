package fsm

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
)

// Error is a deterministic failure of one command or read: every replica
// returns the same Error for the same command in the same state. Errno
// carries the POSIX meaning (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY,
// ENAMETOOLONG, EINVAL, EPERM, ENODATA, …), which gRPC and FUSE layers pass
// on; errors.Is(err, syscall.ENOENT) works.
//
// Any other error from Apply, Restore or a read method is not deterministic
// (a storage failure or corruption): Apply's caller must stop the replica.
type Error struct {
	// Op is the operation: "mkdir", "rename", "commit", "getattr", ….
	Op string
	// Obj names what it failed on: `1/"a"` for a name in directory 1, `17`
	// for inode 17, `slice 9`.
	Obj string
	// Errno is the POSIX error.
	Errno syscall.Errno
	// Detail, when not empty, says more than the errno does.
	Detail string
}

// Error formats as `fsm: mkdir 1/"a": file exists`.
func (e *Error) Error() string {
	s := "fsm: " + e.Op + " " + e.Obj + ": " + e.Errno.Error()
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap returns the errno, so errors.Is(err, syscall.EEXIST) and
// errors.Is(err, fs.ErrExist) work.
func (e *Error) Unwrap() error { return e.Errno }

// ErrNeedsRestore is returned by Apply and the read methods after a Restore
// failed half-way: the state is incomplete until a Restore succeeds.
var ErrNeedsRestore = errors.New("fsm: incomplete restore; a new snapshot must be restored")

func newErr(op, obj string, no syscall.Errno, detail string) *Error {
	return &Error{Op: op, Obj: obj, Errno: no, Detail: detail}
}

// objName names directory entry name in directory parent.
func objName(parent uint64, name string) string {
	return strconv.FormatUint(parent, 10) + "/" + strconv.Quote(name)
}

func objIno(ino uint64) string { return strconv.FormatUint(ino, 10) }

func objSlice(id uint64) string { return "slice " + strconv.FormatUint(id, 10) }

func objRename(op uint64, on string, np uint64, nn string) string {
	return objName(op, on) + " -> " + objName(np, nn)
}

// corrupt reports stored data that does not decode: never deterministic
// input, so not an *Error.
func corrupt(what string, key []byte, err error) error {
	return fmt.Errorf("fsm: corrupt %s at key %q: %w", what, key, err)
}
