package shardstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// TestDirectFile writes aligned blocks with O_DIRECT, then an unaligned
// tail, which turns O_DIRECT off for good, then more, and reads it all back.
func TestDirectFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cells")
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	df, ok := newDirectFile(f).(*directFile)
	if !ok {
		f.Close()
		t.Skip("the temporary directory's file system refuses O_DIRECT")
	}
	flagsSet := func() bool {
		flags, err := unix.FcntlInt(df.fd, unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		return flags&unix.O_DIRECT != 0
	}
	// A buffer from the heap at a page boundary, as the pools hand out.
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 31)
	}
	var want []byte
	steps := []struct {
		data       []byte
		wantDirect bool
	}{
		{block, true},
		{block[:8192], true},
		{block[1:4097], false}, // misaligned address
		{block, false},         // stays buffered: the offset is odd now
		{block[:100], false},
	}
	if !aligned(block) {
		t.Skip("the heap handed out a buffer that is not 4 KiB-aligned")
	}
	for i, st := range steps {
		n, err := df.Write(st.data)
		if err != nil || n != len(st.data) {
			t.Fatalf("step %d: wrote %d of %d: %v", i, n, len(st.data), err)
		}
		want = append(want, st.data...)
		if df.direct != st.wantDirect || flagsSet() != st.wantDirect {
			t.Fatalf("step %d: direct %v, O_DIRECT set %v, want %v", i, df.direct, flagsSet(), st.wantDirect)
		}
	}
	if err := df.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := df.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, differing from the %d written", len(got), len(want))
	}
}

// TestDirectFileInMemory: a file without a descriptor is left alone.
func TestDirectFileInMemory(t *testing.T) {
	fs := vfs.NewMem()
	f, err := fs.Create("x", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := newDirectFile(f).(*directFile); ok {
		t.Fatal("an in-memory file was wrapped for O_DIRECT")
	}
}
