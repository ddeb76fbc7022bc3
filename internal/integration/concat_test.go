package integration_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"
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
		writeFile(t, cl, p, data)
		want = append(want, data...)
		srcs = append(srcs, p)
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
