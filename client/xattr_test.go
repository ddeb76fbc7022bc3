package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
)

func TestXattrByPath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := cluster.Start(ctx, cluster.Config{Dir: t.TempDir(), Chunkservers: 1, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("cluster Close: %v", err)
		}
	})
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, client.ClientConfig{Masters: cl.MasterAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.MkdirAll(ctx, "/d/e", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := c.Create(ctx, "/d/e/f")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Symlink(ctx, "e/f", "/d/link"); err != nil {
		t.Fatal(err)
	}

	if _, err := c.GetXattr(ctx, "/d/e/f", "user.a"); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("GetXattr of a missing attribute: %v, want ENODATA", err)
	}
	if err := c.SetXattr(ctx, "/d/e/f", "user.a", []byte("one"), client.XattrFlagReplace); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("SetXattr XattrReplace of a missing attribute: %v, want ENODATA", err)
	}
	if err := c.SetXattr(ctx, "/d/e/f", "user.a", []byte("one"), client.XattrFlagCreate); err != nil {
		t.Fatal(err)
	}
	if err := c.SetXattr(ctx, "/d/e/f", "user.a", []byte("two"), client.XattrFlagCreate); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("SetXattr XattrCreate of an existing attribute: %v, want EEXIST", err)
	}
	// Through the symlink: the same file.
	if err := c.SetXattr(ctx, "/d/link", "user.b", []byte{}, 0); err != nil {
		t.Fatal(err)
	}
	if v, err := c.GetXattr(ctx, "/d/link", "user.a"); err != nil || string(v) != "one" {
		t.Fatalf("GetXattr = %q, %v; want one", v, err)
	}
	fi, v, err := c.StatXattr(ctx, "/d/e/f", "user.b")
	if err != nil || v == nil || len(v) != 0 || fi.Name() != "f" {
		t.Fatalf("StatXattr(user.b) = %v, %q, %v; want f and an empty value", fi, v, err)
	}
	if _, v, err := c.StatXattr(ctx, "/d/e/f", "user.none"); err != nil || v != nil {
		t.Fatalf("StatXattr(user.none) = %q, %v; want nil value", v, err)
	}
	names, err := c.ListXattr(ctx, "/d/e/f")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"user.a", "user.b"}) {
		t.Fatalf("ListXattr = %q, %v", names, err)
	}
	if err := c.RemoveXattr(ctx, "/d/e/f", "user.a"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveXattr(ctx, "/d/e/f", "user.a"); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("second RemoveXattr: %v, want ENODATA", err)
	}
	if _, err := c.ListXattr(ctx, "/d/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ListXattr of a missing file: %v, want ENOENT", err)
	}
	if err := c.SetXattr(ctx, "/d/e/f", "user.c", nil, client.XattrFlagCreate|client.XattrFlagReplace); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("SetXattr with both flags: %v, want EINVAL", err)
	}
	var pe *fs.PathError
	if err := c.SetXattr(ctx, "/d/e/f", "", nil, 0); !errors.As(err, &pe) || pe.Path != "/d/e/f" {
		t.Fatalf("SetXattr with an empty name: %v, want a *fs.PathError on /d/e/f", err)
	}
}

// TestDeferAttrs: a File's deferred mtime and extended attributes land
// with the commit of its buffered bytes, inline or as a slice; with
// nothing buffered nothing is deferred.
func TestDeferAttrs(t *testing.T) {
	c := smallCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, size := range []int{100, 100_000} {
		p := fmt.Sprintf("/deferred-%d", size)
		f, err := cl.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if f.DeferAttrs(client.AttrChange{}, map[string][]byte{"user.a": []byte("early")}) {
			t.Fatal("deferred with nothing written")
		}
		if _, err := f.Write(bytes.Repeat([]byte("x"), size)); err != nil {
			t.Fatal(err)
		}
		mtime := time.Unix(1_700_000_000, 123)
		if !f.DeferAttrs(client.AttrChange{Mtime: &mtime}, map[string][]byte{"user.a": []byte("1"), "user.b": []byte("2")}) {
			t.Fatal("not deferred with bytes buffered")
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		fi, err := cl.Stat(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(size) || !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: size %d, mtime %v; want %d, %v", p, fi.Size(), fi.ModTime(), size, mtime)
		}
		for name, want := range map[string]string{"user.a": "1", "user.b": "2"} {
			if v, err := cl.GetXattr(ctx, p, name); err != nil || string(v) != want {
				t.Errorf("%s: xattr %s = %q, %v; want %q", p, name, v, err, want)
			}
		}
	}
}
