package fusefs_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestCloseToOpen checks that bytes written and closed on one mount are
// what an open on another mount reads, also when the reader had the old
// bytes in its page cache.
func TestCloseToOpen(t *testing.T) {
	c := startCluster(t, 1, 3)
	a, _ := mount(t, c, mountConfig{})
	b, _ := mount(t, c, mountConfig{})
	pa, pb := filepath.Join(a, "shared"), filepath.Join(b, "shared")

	v1 := bytes.Repeat([]byte("first "), 20000)
	if err := os.WriteFile(pa, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(pb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, v1) {
		t.Fatalf("second mount read %d bytes, want the %d written on the first", len(got), len(v1))
	}

	// Same size, other bytes: only the version tells the reader's cache
	// is stale.
	v2 := bytes.Repeat([]byte("again "), 20000)
	if err := os.WriteFile(pa, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = os.ReadFile(pb); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, v2) {
		t.Fatalf("second mount read stale bytes after the first rewrote the file (first difference at %d)", firstDiff(got, v2))
	}

	// A longer file written on the second mount, read on the first.
	v3 := bytes.Repeat([]byte("longer "), 40000)
	if err := os.WriteFile(pb, v3, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = os.ReadFile(pa); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, v3) {
		t.Fatalf("first mount read %d bytes, want the %d written on the second", len(got), len(v3))
	}
}

func firstDiff(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// TestLocksAcrossMounts checks that flock and record locks taken on one
// mount exclude conflicting ones on another, and that closing drops
// them.
func TestLocksAcrossMounts(t *testing.T) {
	c := startCluster(t, 1, 3)
	a, _ := mount(t, c, mountConfig{})
	b, _ := mount(t, c, mountConfig{})
	if err := os.WriteFile(filepath.Join(a, "lockfile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fa, err := os.OpenFile(filepath.Join(a, "lockfile"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.OpenFile(filepath.Join(b, "lockfile"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()

	// flock.
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock on the first mount: %v", err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Fatalf("flock on the second mount while the first holds it: %v, want EWOULDBLOCK", err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Fatalf("shared flock on the second mount while the first holds it exclusively: %v, want EWOULDBLOCK", err)
	}
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock on the second mount after the first unlocked: %v", err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}

	// Record locks. Both descriptors belong to this process, but to two
	// mounts, which are two clients to the master: they conflict as two
	// processes' locks would.
	wr := func(start, l int64) *unix.Flock_t {
		return &unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: start, Len: l}
	}
	if err := unix.FcntlFlock(fa.Fd(), unix.F_SETLK, wr(0, 100)); err != nil {
		t.Fatalf("record lock on the first mount: %v", err)
	}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_SETLK, wr(50, 10)); err != unix.EAGAIN {
		t.Fatalf("overlapping record lock on the second mount: %v, want EAGAIN", err)
	}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_SETLK, wr(100, 10)); err != nil {
		t.Fatalf("disjoint record lock on the second mount: %v", err)
	}
	probe := wr(0, 0)
	if err := unix.FcntlFlock(fb.Fd(), unix.F_GETLK, probe); err != nil {
		t.Fatal(err)
	}
	if probe.Type != unix.F_WRLCK || probe.Start != 0 || probe.Len != 100 {
		t.Fatalf("F_GETLK on the second mount: %+v, want the first mount's write lock on [0,100)", probe)
	}
	// Closing the first mount's descriptor releases the process's locks
	// there, as close(2) does.
	if err := fa.Close(); err != nil {
		t.Fatal(err)
	}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_SETLK, wr(0, 100)); err != nil {
		t.Fatalf("record lock on the second mount after the first closed: %v", err)
	}

	// Open file description locks belong to the open file and go with
	// its last close (which reaches the mount as an asynchronous
	// release: poll for it).
	fc, err := os.OpenFile(filepath.Join(a, "lockfile"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if err := unix.FcntlFlock(fc.Fd(), unix.F_OFD_SETLK, wr(200, 10)); err != nil {
		t.Fatalf("OFD lock on the first mount: %v", err)
	}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_OFD_SETLK, wr(205, 10)); err != unix.EAGAIN {
		t.Fatalf("overlapping OFD lock on the second mount: %v, want EAGAIN", err)
	}
	if err := fc.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangLimit)
	for {
		err := unix.FcntlFlock(fb.Fd(), unix.F_OFD_SETLK, wr(205, 10))
		if err == nil {
			break
		}
		if err != unix.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("OFD lock on the second mount after the first closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOpenUnlinked checks that a file unlinked while open keeps its bytes
// for the descriptor that holds it, on this mount and another.
func TestOpenUnlinked(t *testing.T) {
	c := startCluster(t, 1, 3)
	a, _ := mount(t, c, mountConfig{})
	b, _ := mount(t, c, mountConfig{})
	data := bytes.Repeat([]byte("keep me "), 10000)
	if err := os.WriteFile(filepath.Join(a, "doomed"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(a, "doomed"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(filepath.Join(b, "doomed")); err != nil {
		t.Fatal(err)
	}
	// (The first mount's kernel may remember the name for its entry
	// timeout; the second's dropped it.)
	if _, err := os.Stat(filepath.Join(b, "doomed")); !os.IsNotExist(err) {
		t.Fatalf("stat after unlink: %v, want ENOENT", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatalf("fstat of the open unlinked file: %v", err)
	}
	if st.Nlink != 0 {
		t.Errorf("nlink of the open unlinked file %d, want 0", st.Nlink)
	}
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatalf("read of the open unlinked file: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the open unlinked file's bytes changed")
	}
}

// TestLockLeaseExpiry: a mount whose client stops reaching the masters
// (a crashed or cut-off machine) loses its locks once its lease runs out,
// so another mount can take them; it does not hold them forever.
func TestLockLeaseExpiry(t *testing.T) {
	c := startClusterConfig(t, cluster.Config{Masters: 1, Chunkservers: 3, ClientLease: 2 * time.Second})
	var cut atomic.Bool
	refuse := func() error { return status.Error(codes.Unavailable, "test: client cut off from the masters") }
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if cut.Load() {
			return refuse()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if cut.Load() {
			return nil, refuse()
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
	a, _ := mount(t, c, mountConfig{timeout: 3 * time.Second,
		masterDialOpts: []grpc.DialOption{grpc.WithChainUnaryInterceptor(unary), grpc.WithChainStreamInterceptor(stream)}})
	b, _ := mount(t, c, mountConfig{})
	fa, fb := lockOnFirst(t, a, b, "leased")
	defer fa.Close()
	defer fb.Close()
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Fatalf("flock on the second mount while the first holds it: %v, want EWOULDBLOCK", err)
	}

	// The first mount's client goes silent: no keepalive reaches the
	// master any more, and nothing releases its locks.
	cut.Store(true)
	defer cut.Store(false) // let the first mount's release and unmount go through
	waitFlock(t, fb, hangLimit, "after the first went silent")
	// The record lock went with the lease too.
	if err := unix.FcntlFlock(fb.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 10}); err != nil {
		t.Fatalf("record lock on the second mount after the first's lease ran out: %v", err)
	}
}

// TestUnlockRetried: an unlock that no master answered (here refused as
// Unavailable past the mount's timeout, the client otherwise alive and
// keeping its lease) is sent again once a master answers, so the lock
// does not block other mounts for as long as the first mount lives.
func TestUnlockRetried(t *testing.T) {
	c := startCluster(t, 1, 3)
	var cut atomic.Bool
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := req.(*masterpb.LockRequest); ok && cut.Load() {
			return status.Error(codes.Unavailable, "test: lock calls refused")
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	a, _ := mount(t, c, mountConfig{timeout: 2 * time.Second,
		masterDialOpts: []grpc.DialOption{grpc.WithChainUnaryInterceptor(unary)}})
	b, _ := mount(t, c, mountConfig{})
	fa, fb := lockOnFirst(t, a, b, "locked")
	defer fb.Close()
	cut.Store(true)
	fa.Close() // both unlocks fail: FLUSH's and RELEASE's
	// Longer than the first mount's timeout: the unlocks have failed.
	time.Sleep(3 * time.Second)
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Fatalf("flock on the second mount while the first's unlock is refused: %v, want EWOULDBLOCK", err)
	}
	cut.Store(false)
	// The retries pause 1 s, then 2 s, ...; the lease (30 s) is renewed
	// all along and would never free the lock.
	waitFlock(t, fb, 20*time.Second, "once the master answers again")
	if err := unix.FcntlFlock(fb.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 10}); err != nil {
		t.Fatalf("record lock on the second mount: %v", err)
	}
}

// waitFlock takes an exclusive flock on f, trying until it is granted
// (failing on any answer but EWOULDBLOCK) or limit runs out.
func waitFlock(t *testing.T, f *os.File, limit time.Duration, when string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			t.Fatalf("flock on the second mount %s: %v", when, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockOnFirst creates file name through mount a, opens it through mounts a
// and b, and takes an flock and a record lock on bytes 0-9 through a.
func lockOnFirst(t *testing.T, a, b, name string) (fa, fb *os.File) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(a, name), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fa, err := os.OpenFile(filepath.Join(a, name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fb, err = os.OpenFile(filepath.Join(b, name), os.O_RDWR, 0)
	if err != nil {
		fa.Close()
		t.Fatal(err)
	}
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock on the first mount: %v", err)
	}
	if err := unix.FcntlFlock(fa.Fd(), unix.F_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 10}); err != nil {
		t.Fatalf("record lock on the first mount: %v", err)
	}
	return fa, fb
}
