package integration_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestConcatReadsBack: files of awkward sizes (one byte, not a multiple of
// a cell or stripe) concatenated by moving slices read back as the bytes
// in order, the sources are gone, and a refused Concat changes nothing.
func TestConcatReadsBack(t *testing.T) {
	c := startCluster(t, 1, 6)
	cl := dialCluster(t, c.MasterAddrs())
	ctx := context.Background()
	if err := cl.MkdirAll(ctx, "/parts", 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := []int{5<<20 + 17, 1, 3 << 20, 0, 2<<20 + 12345}
	var want []byte
	var srcs []string
	for i, n := range sizes {
		data := randomBytes(uint64(i+1), n)
		p := "/parts/" + string(rune('a'+i))
		f, err := cl.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		f.DisableInline() // Concat moves slices, not inline bytes
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		want = append(want, data...)
		srcs = append(srcs, p)
	}
	// A source whose bytes are inline: refused, nothing consumed.
	writeFile(t, cl, "/parts/small", []byte("tiny"))
	if err := cl.Concat(ctx, "/obj", append(srcs[:1:1], "/parts/small")); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("concat with an inline source: %v", err)
	}
	if err := cl.Remove(ctx, "/parts/small"); err != nil {
		t.Fatal(err)
	}
	// A missing source: refused, nothing consumed.
	err := cl.Concat(ctx, "/obj", append(srcs[:1:1], "/parts/missing"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("concat with a missing source: %v", err)
	}
	if _, err := cl.Stat(ctx, srcs[0]); err != nil {
		t.Fatalf("refused concat consumed a source: %v", err)
	}
	writeFile(t, cl, "/obj", []byte("old contents"))
	if err := cl.Concat(ctx, "/obj", srcs); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, cl, "/obj")
	if !bytes.Equal(got, want) {
		t.Fatalf("concatenation reads back %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	ents, err := cl.ReadDir(ctx, "/parts")
	if err != nil || len(ents) != 0 {
		t.Fatalf("sources left: %v %v", ents, err)
	}
}

// TestAttrCalls: Chmod, Chown, Chtimes, Truncate (path and File) and Link
// change what Stat and reads see.
func TestAttrCalls(t *testing.T) {
	c := startCluster(t, 1, 6)
	cl := dialCluster(t, c.MasterAddrs())
	ctx := context.Background()
	data := randomBytes(7, 3<<20+5)
	writeFile(t, cl, "/f", data)

	if err := cl.Chmod(ctx, "/f", 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cl.Chown(ctx, "/f", 1000, -1); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := cl.Chtimes(ctx, "/f", time.Time{}, mt); err != nil {
		t.Fatal(err)
	}
	fi, err := cl.Stat(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	a := fi.Sys().(*masterpb.Attr)
	if fi.Mode().Perm() != 0o600 || a.Uid != 1000 || a.Gid != 0 || !fi.ModTime().Equal(mt) {
		t.Fatalf("after chmod/chown/chtimes: mode %v uid %d gid %d mtime %v", fi.Mode(), a.Uid, a.Gid, fi.ModTime())
	}

	if err := cl.Link(ctx, "/f", "/g"); err != nil {
		t.Fatal(err)
	}
	if fi, err := cl.Stat(ctx, "/g"); err != nil || fi.Sys().(*masterpb.Attr).Nlink != 2 {
		t.Fatalf("link: %v %v", fi, err)
	}
	if err := cl.Truncate(ctx, "/g", 1<<20); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, cl, "/f"); !bytes.Equal(got, data[:1<<20]) {
		t.Fatalf("after truncate: %d bytes, first difference at %d", len(got), firstDiff(got, data[:1<<20]))
	}
	if err := cl.Truncate(ctx, "/f", -1); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("negative truncate: %v", err)
	}

	// File.Truncate after unflushed writes: the writes before it are cut.
	f, err := cl.OpenFile(ctx, "/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("abcdef"), 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(12); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 20)
	n, _ := f.ReadAt(buf, 0)
	if want := append(append([]byte(nil), data[:10]...), "ab"...); !bytes.Equal(buf[:n], want) {
		t.Fatalf("read after File.Truncate: %q, want %q", buf[:n], want)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := cl.Stat(ctx, "/g"); err != nil || fi.Size() != 12 {
		t.Fatalf("size after close: %v %v", fi, err)
	}
}
