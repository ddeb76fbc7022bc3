package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestWriterPacksRuns: scattered writes are buffered as runs and flushed
// as one slice in file order, one extent per run of adjacent bytes; a
// lone run that reaches its chunk's end is flushed at once. The bytes
// read back are the model's either way.
func TestWriterPacksRuns(t *testing.T) {
	const K = 1 << 10
	type write struct{ off, n int }
	for _, tc := range []struct {
		name   string
		writes []write
		// want is one line per commit: its extents as FILE+LEN@SLICE.
		want []string
	}{
		{"one write", []write{{4 * K, 4 * K}}, []string{"4096+4096@0"}},
		{"forward", []write{{0, 4 * K}, {8 * K, 4 * K}, {16 * K, 4 * K}},
			[]string{"0+4096@0 8192+4096@4096 16384+4096@8192"}},
		{"backward", []write{{16 * K, 4 * K}, {8 * K, 4 * K}, {0, 4 * K}},
			[]string{"0+4096@0 8192+4096@4096 16384+4096@8192"}},
		// A write just before a run is a run of its own, merged at flush.
		{"adjacent", []write{{4 * K, 4 * K}, {0, 4 * K}}, []string{"0+8192@0"}},
		{"sequential", []write{{0, 4 * K}, {4 * K, 4 * K}, {8 * K, 1}}, []string{"0+8193@0"}},
		{"overwrite", []write{{0, 8 * K}, {2 * K, K}, {7 * K, 2 * K}}, []string{"0+9216@0"}},
		// A write over two runs and the gap between them fills the gap.
		{"bridge", []write{{0, 4 * K}, {8 * K, 4 * K}, {2 * K, 8 * K}, {40 * K, 1}},
			[]string{"0+12288@0 40960+1@12288"}},
		// Runs stop at chunk ends; a lone run reaching one commits.
		{"chunk end", []write{{testChunk - 2*K, 4 * K}},
			[]string{fmt.Sprintf("%d+2048@0", testChunk-2*K), fmt.Sprintf("%d+2048@0", testChunk)}},
		{"two chunks", []write{{testChunk + 4*K, 4 * K}, {testChunk - 8*K, 4 * K}},
			[]string{fmt.Sprintf("%d+4096@0 %d+4096@4096", testChunk-8*K, testChunk+4*K)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, erasure.RS(4, 2), 6, func(c *client.Config) { c.WriteBuffer = 512 * K })
			r := rand.New(rand.NewPCG(5, uint64(len(tc.writes))))
			ctx := ctxT(t)
			const inode = 7
			var model []byte
			w := e.dp.NewWriter(inode)
			for _, wr := range tc.writes {
				p := randBytes(r, wr.n)
				if n, err := w.WriteAt(ctx, p, int64(wr.off)); err != nil || n != wr.n {
					t.Fatalf("WriteAt(%d, %d) = %d, %v", wr.off, wr.n, n, err)
				}
				if end := wr.off + wr.n; end > len(model) {
					model = append(model, make([]byte, end-len(model))...)
				}
				copy(model[wr.off:], p)
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			e.meta.mu.Lock()
			var got []string
			for _, c := range e.meta.committed {
				got = append(got, extentsString(c))
			}
			e.meta.mu.Unlock()
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("commits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			verify(t, e.dp, inode, model, r)
		})
	}
}

func extentsString(c *masterpb.CommitSliceRequest) string {
	if len(c.Extents) == 0 {
		return fmt.Sprintf("%d+%d@0", c.Offset, c.Length)
	}
	var parts []string
	for _, x := range c.Extents {
		parts = append(parts, fmt.Sprintf("%d+%d@%d", x.FileOffset, x.Length, x.SliceOffset))
	}
	return strings.Join(parts, " ")
}

// TestWriterExtentLimit: a Writer holding as many runs as one commit may
// place flushes them.
func TestWriterExtentLimit(t *testing.T) {
	e := newEnv(t, erasure.RS(4, 2), 6, func(c *client.Config) { c.WriteBuffer = 1 << 20 })
	ctx := ctxT(t)
	w := e.dp.NewWriter(9)
	for i := range masterpb.MaxCommitExtents {
		if w.Commits() != 0 {
			t.Fatalf("committed after %d runs, before the limit", i)
		}
		// Every other byte: no two runs touch.
		if _, err := w.WriteAt(ctx, []byte{byte(i)}, int64(2*i)); err != nil {
			t.Fatal(err)
		}
	}
	if w.Commits() != 1 || w.Buffered() {
		t.Fatalf("after %d runs: %d commits, buffered %v; want one commit of them all", masterpb.MaxCommitExtents, w.Commits(), w.Buffered())
	}
	e.meta.mu.Lock()
	n := len(e.meta.committed[0].Extents)
	e.meta.mu.Unlock()
	if n != masterpb.MaxCommitExtents {
		t.Errorf("commit placed %d extents, want %d", n, masterpb.MaxCommitExtents)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// readerOnFile writes size random bytes (from seed) to a file of a fresh
// RS(4,2) environment and opens a Reader on it, closed when t ends.
func readerOnFile(t *testing.T, size int, seed uint64) (*env, *client.Reader, []byte) {
	t.Helper()
	e := newEnv(t, erasure.RS(4, 2), 6, nil)
	r := rand.New(rand.NewPCG(seed, seed))
	const inode = 6
	data := randBytes(r, size)
	writeSeq(t, e.dp, inode, data, r)
	rd, err := e.dp.OpenReader(ctxT(t), inode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return e, rd, data
}

// TestReaderOutOfOrder reads a file sequentially with each pair of reads
// swapped, as a FUSE mount's concurrent read-ahead requests arrive: the
// reads are still served from the read-ahead windows, so every byte is
// fetched from the chunkservers once (taken for random reads, the swapped
// ones dropped the windows under way and fetched their cells again: 15%
// more bytes).
func TestReaderOutOfOrder(t *testing.T) {
	const size, piece = 3 * testChunk, 64 << 10
	e, rd, data := readerOnFile(t, size, 23)
	ctx := ctxT(t)
	before := e.hooks.receivedBytes()
	read := func(off int) {
		p := make([]byte, piece)
		if _, err := rd.ReadAt(ctx, p, int64(off)); err != nil && err != io.EOF {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(p, data[off:off+piece]) {
			t.Fatalf("read at %d differs", off)
		}
	}
	// Two reads in order start the run, as the kernel's first reads of a
	// file come one at a time.
	read(0)
	read(piece)
	for off := 2 * piece; off < size; off += 2 * piece {
		if off+piece < size {
			read(off + piece)
		}
		read(off)
	}
	if got := e.hooks.receivedBytes() - before; got != size {
		t.Errorf("fetched %d bytes from chunkservers for a %d-byte file", got, size)
	}
}

// TestReaderRamp: the first read of a file fetches the cell it needs and
// no read-ahead; reads that follow it sequentially are served from
// read-ahead windows, so each byte is fetched about once (read one by one,
// the 64 KiB reads at unaligned offsets would fetch two cells each).
func TestReaderRamp(t *testing.T) {
	const size = 3 * testChunk
	e, rd, data := readerOnFile(t, size, 25)
	ctx := ctxT(t)
	received := e.hooks.receivedBytes
	before := received()
	head := make([]byte, 4096)
	if _, err := rd.ReadAt(ctx, head, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head, data[:len(head)]) {
		t.Fatal("first read differs")
	}
	if got := received() - before; got != testCell {
		t.Errorf("reading the first 4 KiB fetched %d bytes, want one %d-byte cell", got, testCell)
	}
	p := make([]byte, 64<<10)
	for off := len(head); off < size; off += len(p) {
		n, err := rd.ReadAt(ctx, p, int64(off))
		if err != nil && err != io.EOF {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(p[:n], data[off:off+n]) {
			t.Fatalf("read at %d differs", off)
		}
	}
	if got := received() - before; got > size+2*testCell {
		t.Errorf("reading the %d-byte file sequentially fetched %d bytes", size, got)
	}
}

// TestReaderMixedReads reads a file with a random mix of sequential
// runs, swapped pairs, concurrent readers, re-reads and jumps of every
// size, and checks every byte: whatever the Reader makes of the pattern
// (direct reads, windows of any size, windows kept for late reads), the
// bytes must be the file's.
func TestReaderMixedReads(t *testing.T) {
	const size = 5*testChunk + 4321
	_, rd, data := readerOnFile(t, size, 27)
	ctx := ctxT(t)
	r := rand.New(rand.NewPCG(28, 29))
	check := func(off, n int) error {
		p := make([]byte, n)
		got, err := rd.ReadAt(ctx, p, int64(off))
		want := min(n, size-off)
		if got != want || (err != nil && !(err == io.EOF && want < n)) {
			return fmt.Errorf("read %d at %d: %d, %v", n, off, got, err)
		}
		if !bytes.Equal(p[:got], data[off:off+got]) {
			return fmt.Errorf("read %d at %d: wrong bytes", n, off)
		}
		return nil
	}
	off := 0
	for range 400 {
		n := 1 + r.IntN(3*testCell)
		switch k := r.IntN(10); {
		case k < 5: // continue the run
		case k < 7: // the next two, swapped
			if err := check(min(off+n, size-1), n); err != nil {
				t.Fatal(err)
			}
		case k < 8: // two readers at once
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range errs {
				at := min(off+i*n, size-1)
				wg.Go(func() { errs[i] = check(at, n) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
		case k < 9: // back a little
			off = max(0, off-r.IntN(2*testCell))
		default: // anywhere
			off = r.IntN(size)
		}
		if err := check(off, n); err != nil {
			t.Fatal(err)
		}
		if off += n; off >= size {
			off = r.IntN(size)
		}
	}
}

// TestReaderWindows: a file of several layout windows (four chunks each)
// reads back whole, sequentially with read-ahead and at random offsets,
// including reads across a window's end, while every layout fetched is
// one window, never the whole file; a window fetched after the file
// changed shows the change.
func TestReaderWindows(t *testing.T) {
	e := newEnv(t, erasure.RS(4, 2), 6, nil)
	r := rand.New(rand.NewPCG(21, 22))
	ctx := ctxT(t)
	const inode, size = 5, 10*testChunk + 123
	data := randBytes(r, size)
	writeSeq(t, e.dp, inode, data, r)
	verify(t, e.dp, inode, data, r)

	rd, err := e.dp.OpenReader(ctx, inode)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// Sequential, with read-ahead, across both window ends.
	got := make([]byte, size)
	for off := 0; off < size; off += 100 << 10 {
		n := min(100<<10, size-off)
		if _, err := rd.ReadAt(ctx, got[off:off+n], int64(off)); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("sequential read differs")
	}
	// Straddling a window's end, and jumping back and forth.
	for _, off := range []int{4*testChunk - 10, 8*testChunk - 1, 3, 9 * testChunk, 4 * testChunk} {
		p := make([]byte, min(3*testChunk, size-off))
		if n, err := rd.ReadAt(ctx, p, int64(off)); n != len(p) || (err != nil && err != io.EOF) {
			t.Fatalf("read %d at %d: %d, %v", len(p), off, n, err)
		}
		if !bytes.Equal(p, data[off:off+len(p)]) {
			t.Fatalf("read at %d differs", off)
		}
	}
	e.meta.mu.Lock()
	for _, l := range e.meta.layouts {
		if l.Length != 4*testChunk || l.Offset%(4*testChunk) != 0 {
			t.Errorf("layout fetched for [%d, +%d), not one window", l.Offset, l.Length)
		}
	}
	e.meta.mu.Unlock()

	// Another writer changes the last window; the reader, back at the
	// start, fetches that window afresh when it gets there.
	w := e.dp.NewWriter(inode)
	patch := randBytes(r, 1000)
	if _, err := w.WriteAt(ctx, patch, 9*testChunk); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	copy(data[9*testChunk:], patch)
	if _, err := rd.ReadAt(ctx, make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.ReadAt(ctx, make([]byte, 10), 5*testChunk); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	if _, err := rd.ReadAt(ctx, p, 9*testChunk); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, patch) {
		t.Fatal("a window fetched after the change does not show it")
	}
}
