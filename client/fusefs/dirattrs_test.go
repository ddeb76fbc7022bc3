package fusefs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/fusefs"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestEntryChangesPrimeDirAttrs: the kernel drops a directory's cached
// attributes at every create, mkdir, unlink, rename or symlink in it and
// asks for them again on the next path walk through it. The master's
// reply to the change carries them, so the mount answers that GETATTR
// without asking the master; what it answers is what the master holds.
func TestEntryChangesPrimeDirAttrs(t *testing.T) {
	c := startCluster(t, 1, 3)
	var mu sync.Mutex
	asked := map[uint64]int{} // inode → getattrs sent to the master
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		switch r := req.(type) {
		case *masterpb.GetAttrRequest:
			asked[r.Inode]++
		case *masterpb.BatchStatRequest:
			for _, q := range r.Queries {
				if q.Name == "" {
					asked[q.Inode]++
				}
			}
		}
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	// Attributes cached for a minute: every GETATTR below comes from an
	// invalidation, none from a timeout.
	dir, _ := mount(t, c, mountConfig{
		opts:           fusefs.Options{AttrTimeout: time.Minute, EntryTimeout: time.Minute},
		masterDialOpts: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)},
	})
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(d, &st); err != nil {
		t.Fatal(err)
	}
	ino := st.Ino
	const n = 10
	changes := 0
	for i := range n {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprint("f", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(d, fmt.Sprint("s", i)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("f0", filepath.Join(d, fmt.Sprint("l", i))); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(d, fmt.Sprint("f", i)), filepath.Join(d, fmt.Sprint("g", i))); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(d, fmt.Sprint("l", i))); err != nil {
			t.Fatal(err)
		}
		changes += 5
	}
	// What the mount says of d is what the master holds.
	if err := unix.Stat(d, &st); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := asked[ino]
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want, err := cl.Inodes().GetAttr(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 2+n || uint32(st.Mode)&0o7777 != 0o755 ||
		st.Mtim.Nano() != want.MtimeUnixNano || st.Ctim.Nano() != want.CtimeUnixNano || uint64(st.Nlink) != uint64(want.Nlink) {
		t.Errorf("stat of the directory: nlink %d mode %o mtime %d ctime %d; master: nlink %d mtime %d ctime %d",
			st.Nlink, st.Mode, st.Mtim.Nano(), st.Ctim.Nano(), want.Nlink, want.MtimeUnixNano, want.CtimeUnixNano)
	}
	// Without the attributes from the replies, every change costs a
	// getattr of d; a few may still come (the kernel revalidating d itself).
	if got > changes/10 {
		t.Errorf("%d getattrs of the directory reached the master for %d entry changes in it", got, changes)
	}
}
