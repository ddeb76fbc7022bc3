package shardstore

import (
	"errors"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// Writing a large shard's cells with O_DIRECT: the cells go from the
// received buffer to the device without a copy into the page cache.
//
// Measured on the virtual machines Cairn is benchmarked on (1.5 GiB in
// 1 MiB writes, then fsync): buffered writes cost 1.3 to 2.6 CPU seconds,
// most of it the kernel copying into freshly allocated page-cache pages;
// O_DIRECT cost 0.2 to 0.25 s at the same or higher throughput (717-778 vs
// 434-702 MB/s). With six chunkservers and the client on two cores, that
// copy was the largest single item of the servers' CPU on the write path.
// Reads stay buffered (see fetch.go).
//
// O_DIRECT needs the buffer's address, its length and the file offset to
// be multiples of the device's logical block size. Full cells from the
// codec's pool are (cells are 1 MiB by default, pool buffers are
// page-aligned heap allocations); the last, shorter cell of a shard
// usually is not. The first write that does not qualify turns O_DIRECT
// off for the rest of the file, which keeps every later offset legal.

// directAlign is the alignment assumed for O_DIRECT: the largest logical
// block size in common use. A device that needs more answers EINVAL, and
// the file falls back to buffered writes.
const directAlign = 4096

// directFile writes through O_DIRECT while the writes qualify. It is not
// safe for concurrent use; the fileWriter goroutine is its only writer.
type directFile struct {
	vfs.File
	fd     uintptr
	direct bool
}

// newDirectFile turns on O_DIRECT for f when f is an operating-system file
// that accepts it, and otherwise returns f unchanged (in-memory and
// fault-injecting file systems in tests, tmpfs on older kernels).
func newDirectFile(f vfs.File) vfs.File {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return f
	}
	flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return f
	}
	if _, err := unix.FcntlInt(fd, unix.F_SETFL, flags|unix.O_DIRECT); err != nil {
		return f
	}
	return &directFile{File: f, fd: fd, direct: true}
}

// Write writes p, with O_DIRECT if p is aligned and the file still uses
// it.
func (d *directFile) Write(p []byte) (int, error) {
	if d.direct && !aligned(p) {
		if err := d.buffered(); err != nil {
			return 0, err
		}
	}
	n, err := d.File.Write(p)
	if d.direct && errors.Is(err, unix.EINVAL) && n == 0 {
		// The device wants a larger alignment than directAlign.
		if err := d.buffered(); err != nil {
			return 0, err
		}
		return d.File.Write(p)
	}
	return n, err
}

// buffered turns O_DIRECT off for the rest of the file.
func (d *directFile) buffered() error {
	d.direct = false
	flags, err := unix.FcntlInt(d.fd, unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(d.fd, unix.F_SETFL, flags&^unix.O_DIRECT)
	}
	return err
}

// aligned reports whether p's address and length suit O_DIRECT.
func aligned(p []byte) bool {
	if len(p) == 0 || len(p)%directAlign != 0 {
		return false
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
}
