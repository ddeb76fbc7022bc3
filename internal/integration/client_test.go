// Package integration_test runs the client's path API (client.Client and
// client.File) against real in-process clusters (internal/cluster). It
// lives apart from package client so that cluster start-ups do not add to
// the client's own test time, and under internal/ because only
// internal/cluster, cmd and bench may see every package.
package integration_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func startCluster(t *testing.T, masters, chunkservers int) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: t.TempDir(), Masters: masters, Chunkservers: chunkservers, HeartbeatInterval: 200 * time.Millisecond})
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

func dialCluster(t *testing.T, masters []string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: masters, IOTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
	})
	return cl
}

func writeFile(t *testing.T, cl *client.Client, p string, data []byte) {
	t.Helper()
	f, err := cl.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, cl *client.Client, p string) []byte {
	t.Helper()
	f, err := cl.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientNamespace(t *testing.T) {
	t.Parallel() // each test has its own cluster
	c := startCluster(t, 1, 3)
	cl := dialCluster(t, c.MasterAddrs())
	ctx := context.Background()

	if err := cl.MkdirAll(ctx, "/a/b/c", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cl.MkdirAll(ctx, "/a/b", 0o755); err != nil {
		t.Fatalf("MkdirAll of an existing path: %v", err)
	}
	if err := cl.Mkdir(ctx, "/a", 0o755); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Mkdir existing: %v, want ErrExist", err)
	}
	if _, err := cl.Stat(ctx, "/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat missing: %v, want ErrNotExist", err)
	}
	var pe *fs.PathError
	if _, err := cl.Open(ctx, "/a/nope"); !errors.As(err, &pe) || pe.Path != "/a/nope" {
		t.Fatalf("Open missing: %v, want a PathError naming the path", err)
	}

	data := bytes.Repeat([]byte("cairn "), 50000)
	writeFile(t, cl, "/a/b/file", data)
	if got := readFile(t, cl, "/a/b/file"); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want %d", len(got), len(data))
	}
	fi, err := cl.Stat(ctx, "/a/b/file")
	if err != nil || fi.Size() != int64(len(data)) || fi.IsDir() || fi.Name() != "file" {
		t.Fatalf("Stat: %v %v", fi, err)
	}

	if err := cl.Symlink(ctx, "b/file", "/a/link"); err != nil {
		t.Fatal(err)
	}
	if target, err := cl.Readlink(ctx, "/a/link"); err != nil || target != "b/file" {
		t.Fatalf("Readlink: %q %v", target, err)
	}
	if got := readFile(t, cl, "/a/link"); !bytes.Equal(got, data) {
		t.Fatal("reading through a symlink")
	}
	if fi, err := cl.Lstat(ctx, "/a/link"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("Lstat: %v %v", fi, err)
	}

	if err := cl.Rename(ctx, "/a/b/file", "/a/moved"); err != nil {
		t.Fatal(err)
	}
	entries, err := cl.ReadDir(ctx, "/a")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"b", "link", "moved"}) {
		t.Fatalf("ReadDir: %v", names)
	}
	if err := cl.Remove(ctx, "/a/b"); err == nil {
		t.Fatal("Remove of a non-empty directory succeeded")
	}
	if err := cl.Remove(ctx, "/a/moved"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveAll(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveAll(ctx, "/a"); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}
	if entries, err := cl.ReadDir(ctx, "/"); err != nil || len(entries) != 0 {
		t.Fatalf("root after RemoveAll: %v %v", entries, err)
	}

	if _, err := cl.StatFS(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Chunkservers) != 3 || len(st.Masters) != 1 {
		t.Fatalf("Status: %v", st)
	}
}

func TestFileReadWriteSeek(t *testing.T) {
	t.Parallel() // each test has its own cluster
	c := startCluster(t, 1, 3)
	cl := dialCluster(t, c.MasterAddrs())
	ctx := context.Background()

	f, err := cl.Create(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello world")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("W"), 6); err != nil {
		t.Fatal(err)
	}
	// A read after a write sees it.
	buf := make([]byte, 11)
	if n, err := f.ReadAt(buf, 0); err != nil || string(buf[:n]) != "hello World" {
		t.Fatalf("ReadAt: %q %v", buf[:n], err)
	}
	if pos, err := f.Seek(-5, io.SeekEnd); err != nil || pos != 6 {
		t.Fatalf("Seek: %d %v", pos, err)
	}
	if n, err := f.Read(buf[:5]); err != nil || string(buf[:n]) != "World" {
		t.Fatalf("Read: %q %v", buf[:n], err)
	}
	if _, err := f.Read(buf); err != io.EOF {
		t.Fatalf("Read at end: %v, want EOF", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 11 {
		t.Fatalf("Stat: %v %v", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}

	// Append, and opening read-only refuses writes.
	f, err = cl.OpenFile(ctx, "/f", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, cl, "/f"); string(got) != "hello World!" {
		t.Fatalf("after append: %q", got)
	}
	f, err = cl.Open(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("Write on a read-only File succeeded")
	}
	f.Close()
	if _, err := cl.OpenFile(ctx, "/f", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL on an existing file: %v", err)
	}
	// Truncating create.
	writeFile(t, cl, "/f", []byte("new"))
	if got := readFile(t, cl, "/f"); string(got) != "new" {
		t.Fatalf("after truncating create: %q", got)
	}
}

// TestFollowsLeader gives the client a follower first and kills the
// leader mid-way: calls follow NotLeader answers and ride out the
// election.
func TestFollowsLeader(t *testing.T) {
	t.Parallel() // each test has its own cluster
	c := startCluster(t, 3, 3)
	lead := c.Leader()
	addrs := c.MasterAddrs()
	// Put a follower first.
	order := []string{addrs[(lead+1)%3], addrs[(lead+2)%3], addrs[lead]}
	cl := dialCluster(t, order)
	ctx := context.Background()
	if err := cl.Mkdir(ctx, "/before", 0o755); err != nil {
		t.Fatal(err)
	}
	// Only the leader knows the chunkservers; Status asks it even when
	// given a follower alone.
	st, err := dialCluster(t, order[:1]).Status(ctx)
	if err != nil || len(st.Chunkservers) != 3 {
		t.Fatalf("Status through a follower: %v, %v", st, err)
	}
	if err := c.KillMaster(lead); err != nil {
		t.Fatal(err)
	}
	if err := cl.Mkdir(ctx, "/after", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/before", "/after"} {
		if _, err := cl.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}
