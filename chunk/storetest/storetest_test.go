package storetest

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestShardCells(t *testing.T) {
	for _, n := range []int{0, 1, cell - 1, cell, cell + 1, 3*cell + 7} {
		sh := newShard(id(1, 2), 3, n, cell)
		cs := sh.cells()
		if want := (n + cell - 1) / cell; len(cs) != want {
			t.Fatalf("%d bytes: %d cells, want %d", n, len(cs), want)
		}
		if got := bytes.Join(cs, nil); !bytes.Equal(got, sh.data) {
			t.Fatalf("%d bytes: cells do not add up to the data", n)
		}
		if n > 0 && bytes.Equal(sh.data, newShard(id(1, 2), 4, n, cell).data) {
			t.Fatalf("%d bytes: seeds 3 and 4 give the same data", n)
		}
	}
}

func TestDirBytes(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("/a/b", 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"/a/x": 10, "/a/b/y": 20} {
		f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	if got := dirBytes(t, fs, "/a"); got != 30 {
		t.Fatalf("dirBytes = %d, want 30", got)
	}
}
