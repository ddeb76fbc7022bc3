package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// smallCluster starts one master and three chunkservers, stopped when
// the test ends.
func smallCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: t.TempDir(), Masters: 1, Chunkservers: 3, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cluster Close: %v", err)
		}
	})
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func inodesCluster(t *testing.T) client.Inodes {
	t.Helper()
	c := smallCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs(), IOTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
	})
	return cl.Inodes()
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

func TestInodesNamespace(t *testing.T) {
	in := inodesCluster(t)
	ctx := context.Background()
	root := uint64(client.RootInode)

	dir, err := in.Mkdir(ctx, root, "d", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if dir.Type != masterpb.FileType_FILE_TYPE_DIRECTORY || dir.Mode&0o777 != 0o750 {
		t.Fatalf("mkdir: %v", dir)
	}
	_, err = in.Mkdir(ctx, root, "d", 0o750)
	wantErrno(t, "mkdir existing", err, syscall.EEXIST)
	if a, err := in.Lookup(ctx, root, "d"); err != nil || a.Inode != dir.Inode {
		t.Fatalf("lookup d: %v, %v", a, err)
	}
	_, err = in.Lookup(ctx, root, "nope")
	wantErrno(t, "lookup missing", err, syscall.ENOENT)

	f, created, err := in.Create(ctx, dir.Inode, "f", 0o644, true, false)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	_, _, err = in.Create(ctx, dir.Inode, "f", 0o644, true, false)
	wantErrno(t, "create exclusive existing", err, syscall.EEXIST)
	if again, created, err := in.Create(ctx, dir.Inode, "f", 0o644, false, false); err != nil || created || again.Inode != f.Inode {
		t.Fatalf("create existing, not exclusive: %v, created %v, %v", again, created, err)
	}

	mode, size := uint32(0o600), uint64(10)
	mt := time.Unix(1_600_000_000, 5)
	a, err := in.SetAttr(ctx, f.Inode, client.AttrChange{Mode: &mode, Size: &size, Mtime: &mt})
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode&0o7777 != 0o600 || a.Size != 10 || a.MtimeUnixNano != mt.UnixNano() {
		t.Fatalf("setattr result %v", a)
	}
	if g, err := in.GetAttr(ctx, f.Inode); err != nil || g.Size != 10 {
		t.Fatalf("getattr: %v, %v", g, err)
	}

	fifo, err := in.Mknod(ctx, dir.Inode, "fifo", masterpb.FileType_FILE_TYPE_FIFO, 0o600, 0)
	if err != nil || fifo.Type != masterpb.FileType_FILE_TYPE_FIFO {
		t.Fatalf("mknod: %v, %v", fifo, err)
	}
	if l, err := in.Link(ctx, f.Inode, root, "hard"); err != nil || l.Nlink != 2 {
		t.Fatalf("link: %v, %v", l, err)
	}
	if _, err := in.Symlink(ctx, root, "sym", "d/f"); err != nil {
		t.Fatal(err)
	}
	sym, err := in.Lookup(ctx, root, "sym")
	if err != nil {
		t.Fatal(err)
	}
	if target, err := in.Readlink(ctx, sym.Inode); err != nil || target != "d/f" {
		t.Fatalf("readlink: %q, %v", target, err)
	}

	err = in.Rename(ctx, root, "hard", dir.Inode, "f", client.RenameNoReplace)
	wantErrno(t, "rename noreplace onto existing", err, syscall.EEXIST)
	if err := in.Rename(ctx, root, "sym", dir.Inode, "fifo", client.RenameExchange); err != nil {
		t.Fatal(err)
	}
	if a, err := in.Lookup(ctx, root, "sym"); err != nil || a.Inode != fifo.Inode {
		t.Fatalf("after exchange, sym is %v, %v; want the fifo", a, err)
	}
	if err := in.Rename(ctx, root, "sym", root, "fifo2", client.RenameReplace); err != nil {
		t.Fatal(err)
	}

	// Paged listing.
	var names []string
	after := ""
	for {
		ents, more, err := in.ReadDir(ctx, root, after, 2, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Attr == nil || e.Attr.Inode != e.Inode {
				t.Errorf("entry %s without its attributes", e.Name)
			}
			names = append(names, e.Name)
			after = e.Name
		}
		if !more {
			break
		}
	}
	if got, want := names, []string{"d", "fifo2", "hard"}; !equalStrings(got, want) {
		t.Errorf("readdir %v, want %v", got, want)
	}

	wantErrno(t, "rmdir non-empty", in.Rmdir(ctx, root, "d"), syscall.ENOTEMPTY)
	wantErrno(t, "unlink dir", in.Unlink(ctx, root, "d"), syscall.EISDIR)
	for _, n := range []string{"f", "fifo"} {
		if err := in.Unlink(ctx, dir.Inode, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Rmdir(ctx, root, "d"); err != nil {
		t.Fatal(err)
	}

	// Extended attributes.
	h, err := in.Lookup(ctx, root, "hard")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.SetXattr(ctx, h.Inode, "user.k", []byte("v"), client.XattrFlagCreate); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "setxattr create existing", in.SetXattr(ctx, h.Inode, "user.k", []byte("w"), client.XattrFlagCreate), syscall.EEXIST)
	if v, err := in.GetXattr(ctx, h.Inode, "user.k"); err != nil || string(v) != "v" {
		t.Fatalf("getxattr: %q, %v", v, err)
	}
	if ns, err := in.ListXattr(ctx, h.Inode); err != nil || !equalStrings(ns, []string{"user.k"}) {
		t.Fatalf("listxattr: %v, %v", ns, err)
	}
	if err := in.RemoveXattr(ctx, h.Inode, "user.k"); err != nil {
		t.Fatal(err)
	}
	_, err = in.GetXattr(ctx, h.Inode, "user.k")
	wantErrno(t, "getxattr removed", err, syscall.ENODATA)

	if st, err := in.StatFS(ctx); err != nil || st.TotalBytes == 0 {
		t.Fatalf("statfs: %v, %v", st, err)
	}

	// The caller in the context is who the master checks.
	nobody := client.WithCaller(ctx, client.Caller{UID: 1000, GID: 1000})
	_, err = in.Mkdir(nobody, root, "notmine", 0o755)
	wantErrno(t, "mkdir in root's 0755 directory as uid 1000", err, syscall.EACCES)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestInodesHandle(t *testing.T) {
	in := inodesCluster(t)
	ctx := context.Background()
	a, _, err := in.Create(ctx, client.RootInode, "data", 0o644, true, false)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := in.Open(ctx, a.Inode, syscall.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if _, err := h.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if size, dirty := h.PendingSize(); !dirty || size != int64(len(data)) {
		t.Errorf("pending size %d (dirty %v), want %d (dirty)", size, dirty, len(data))
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	// Truncate behind the handle's back, as a FUSE setattr does.
	size := uint64(5)
	if _, err := in.SetAttr(ctx, a.Inode, client.AttrChange{Size: &size}); err != nil {
		t.Fatal(err)
	}
	h.Truncated(5)
	buf := make([]byte, 100)
	n, err := h.ReadAt(buf, 0)
	if err != io.EOF || string(buf[:n]) != "01234" {
		t.Errorf("read after truncate: %q, %v; want \"01234\", EOF", buf[:n], err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	// O_TRUNC at open empties the file.
	h, attr, err := in.Open(ctx, a.Inode, syscall.O_RDWR|syscall.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Size != 0 {
		t.Errorf("size after O_TRUNC open %d, want 0", attr.Size)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	_, _, err = in.Open(ctx, client.RootInode, syscall.O_RDONLY)
	wantErrno(t, "open a directory", err, syscall.EISDIR)
}

// TestInodesCreateOpen: one call creates and opens; the handle keeps an
// unlinked file's bytes like Open's; existing names behave as Create says.
func TestInodesCreateOpen(t *testing.T) {
	in := inodesCluster(t)
	ctx := context.Background()
	h, a, created, err := in.CreateOpen(ctx, client.RootInode, "new", 0o600, true, false)
	if err != nil || h == nil || !created || a.Type != masterpb.FileType_FILE_TYPE_REGULAR || a.Mode&0o777 != 0o600 {
		t.Fatalf("create-open a new file: %v, %v, created %v, %v", h, a, created, err)
	}
	if _, err := h.WriteAt([]byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	// The handle is registered: the bytes outlive the name.
	if err := in.Unlink(ctx, client.RootInode, "new"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := h.ReadAt(buf, 0); string(buf[:n]) != "kept" || (err != nil && err != io.EOF) {
		t.Errorf("read of the unlinked file through its handle: %q, %v", buf[:n], err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	// An existing file: exclusive fails, otherwise it opens (and truncates
	// when asked).
	h, _, _, err = in.CreateOpen(ctx, client.RootInode, "f", 0o644, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = in.CreateOpen(ctx, client.RootInode, "f", 0o644, true, false)
	wantErrno(t, "exclusive create-open of an existing file", err, syscall.EEXIST)
	h, a, created, err = in.CreateOpen(ctx, client.RootInode, "f", 0o644, false, true)
	if err != nil || h == nil || created || a.Size != 0 {
		t.Fatalf("truncating create-open of an existing file: %v, %v, created %v, %v", h, a, created, err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	// Names that are not regular files.
	if _, err := in.Mkdir(ctx, client.RootInode, "d", 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = in.CreateOpen(ctx, client.RootInode, "d", 0o644, false, false)
	wantErrno(t, "create-open of a directory", err, syscall.EISDIR)
	if _, err := in.Mknod(ctx, client.RootInode, "fifo", masterpb.FileType_FILE_TYPE_FIFO, 0o644, 0); err != nil {
		t.Fatal(err)
	}
	h, a, _, err = in.CreateOpen(ctx, client.RootInode, "fifo", 0o644, false, false)
	if err != nil || h != nil || a.Type != masterpb.FileType_FILE_TYPE_FIFO {
		t.Fatalf("create-open of a FIFO: %v, %v, %v; want its attributes and no handle", h, a, err)
	}
}

// TestReleaseBatches: closed handles are released at the master in
// batches, soon after the close or at the latest when the Client closes,
// and an unlinked file goes with its last handle.
func TestReleaseBatches(t *testing.T) {
	c := smallCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	observer, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close()
	gone := func(ino uint64) bool {
		_, err := observer.Inodes().GetAttr(ctx, ino)
		return errors.Is(err, syscall.ENOENT)
	}
	// openUnlinked opens n files through cl, unlinks them and closes the
	// handles; the files are gone once the handles are released.
	openUnlinked := func(cl *client.Client, prefix string, n int) []uint64 {
		in := cl.Inodes()
		var inos []uint64
		var hs []*client.Handle
		for i := range n {
			name := fmt.Sprintf("%s%d", prefix, i)
			h, a, _, err := in.CreateOpen(ctx, client.RootInode, name, 0o644, true, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := in.Unlink(ctx, client.RootInode, name); err != nil {
				t.Fatal(err)
			}
			inos, hs = append(inos, a.Inode), append(hs, h)
		}
		for _, h := range hs {
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
		}
		return inos
	}

	soon, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs(), ReleaseDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer soon.Close()
	for _, ino := range openUnlinked(soon, "soon", 5) {
		for !gone(ino) {
			if ctx.Err() != nil {
				t.Fatalf("inode %d still there after its handle was closed", ino)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	late, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs(), ReleaseDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	inos := openUnlinked(late, "late", 3)
	if gone(inos[0]) {
		t.Fatal("released before the delay")
	}
	if err := late.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ino := range inos {
		if !gone(ino) {
			t.Errorf("inode %d still there after its client closed", ino)
		}
	}
}

// TestReleaseRetried: a release no master answered (here refused as
// Unavailable past the client's retry timeout) is sent again later. The
// client stays alive and keeps its lease, so nothing else would free the
// handle, nor the bytes of the file unlinked while it was open.
func TestReleaseRetried(t *testing.T) {
	c := smallCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cut atomic.Bool
	refuse := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := req.(*masterpb.ReleaseRequest); ok && cut.Load() {
			return status.Error(codes.Unavailable, "test: release refused")
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	in := dialIntercepted(t, ctx, c, refuse).Inodes()
	h, a, _, err := in.CreateOpen(ctx, client.RootInode, "tmp", 0o644, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Unlink(ctx, client.RootInode, "tmp"); err != nil {
		t.Fatal(err)
	}
	cut.Store(true)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// Long enough for the first release to have failed.
	time.Sleep(time.Second)
	if _, err := in.GetAttr(ctx, a.Inode); err != nil {
		t.Fatalf("the open unlinked file went while its release was refused: %v", err)
	}
	cut.Store(false)
	waitGone(t, ctx, in, a.Inode, "the handle was never released once the master answered again")
}

// TestUnansweredOpenSettled loses the replies to an open and to a create
// that opens, both applied by the master: the client must give the
// requests up so that their handles are released, or the unlinked files
// would keep their bytes for as long as the client lives.
func TestUnansweredOpenSettled(t *testing.T) {
	c := smallCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cut atomic.Bool
	// While cut, opens and creates are applied but their replies lost,
	// and releases (which would settle them) do not get through.
	loseReply := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := req.(*masterpb.ReleaseRequest); ok && cut.Load() {
			return status.Error(codes.Unavailable, "test: release refused")
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		switch req.(type) {
		case *masterpb.OpenRequest, *masterpb.CreateRequest:
			if cut.Load() {
				return status.Error(codes.Unavailable, "test: reply lost")
			}
		}
		return err
	}
	in := dialIntercepted(t, ctx, c, loseReply).Inodes()
	h, f, _, err := in.CreateOpen(ctx, client.RootInode, "f", 0o644, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	cut.Store(true)
	if _, _, err := in.Open(ctx, f.Inode, syscall.O_RDONLY); err == nil {
		t.Fatal("open succeeded with every reply lost")
	}
	if _, _, _, err := in.CreateOpen(ctx, client.RootInode, "g", 0o644, true, false); err == nil {
		t.Fatal("create succeeded with every reply lost")
	}
	g, err := in.Lookup(ctx, client.RootInode, "g")
	if err != nil {
		t.Fatalf("the create the master applied: %v", err)
	}
	for _, name := range []string{"f", "g"} {
		if err := in.Unlink(ctx, client.RootInode, name); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, ino := range []uint64{f.Inode, g.Inode} {
		if _, err := in.GetAttr(ctx, ino); err != nil {
			t.Fatalf("unlinked inode %d went while its unanswered open was unsettled: %v", ino, err)
		}
	}
	cut.Store(false)
	for _, ino := range []uint64{f.Inode, g.Inode} {
		waitGone(t, ctx, in, ino, fmt.Sprintf("the handle on inode %d of an unanswered request was never released", ino))
	}
}

// dialIntercepted dials c with a short retry timeout, releases sent at
// once, and intercept on every unary call to the masters; the client is
// closed when the test ends.
func dialIntercepted(t *testing.T, ctx context.Context, c *cluster.Cluster, intercept grpc.UnaryClientInterceptor) *client.Client {
	t.Helper()
	cl, err := client.Dial(ctx, client.ClientConfig{
		Masters: c.MasterAddrs(), RetryTimeout: 300 * time.Millisecond, ReleaseDelay: time.Millisecond,
		MasterDialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(intercept)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// waitGone waits up to 15 s for inode ino to be gone (its last handle
// released after its last name), failing with what otherwise.
func waitGone(t *testing.T, ctx context.Context, in client.Inodes, ino uint64, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := in.GetAttr(ctx, ino)
		if errors.Is(err, syscall.ENOENT) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: getattr %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
