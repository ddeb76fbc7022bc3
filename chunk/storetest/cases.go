package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/minio/sha256-simd"
)

// cell is the cell size of most tests: small, so the suite stays fast.
const cell = 4 << 10

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

func id(slice uint64, index uint32) shardstore.ID { return shardstore.ID{Slice: slice, Index: index} }

func testRoundTrip(t *testing.T, e *env) {
	lengths := []int{0, 1, cell - 1, cell, cell + 1, 3*cell + 7, 8 * cell}
	var shards []shard
	for i, n := range lengths {
		sh := newShard(id(100, uint32(i)), uint64(i), n, cell)
		info := mustWrite(t, e.s, sh)
		if info.ID != sh.id || info.Length != uint64(n) || info.CellSize != cell || info.Created.IsZero() {
			t.Fatalf("commit %v returned %+v", sh.id, info)
		}
		if want := uint32((n + cell - 1) / cell); info.Cells() != want {
			t.Fatalf("commit %v: %d cells, want %d", sh.id, info.Cells(), want)
		}
		shards = append(shards, sh)
	}
	// Odd cell sizes and extreme IDs.
	shards = append(shards,
		newShard(id(0, 0), 50, 1000, 7),
		newShard(id(^uint64(0), ^uint32(0)), 51, 5000, 1<<20),
		newShard(id(1<<40, 1<<31), 52, 2*cell, cell/2),
	)
	for _, sh := range shards[len(lengths):] {
		mustWrite(t, e.s, sh)
	}
	for _, sh := range shards {
		checkShard(t, e.s, sh)
	}
	if got := e.s.Usage().Shards; got != uint64(len(shards)) {
		t.Fatalf("Usage().Shards = %d, want %d", got, len(shards))
	}
}

func testIdempotent(t *testing.T, e *env) {
	sh := newShard(id(7, 1), 1, 3*cell+5, cell)
	first := mustWrite(t, e.s, sh)
	for i := range 2 {
		again, err := write(e.s, sh)
		if err != nil {
			t.Fatalf("rewrite %d of identical shard: %v", i, err)
		}
		if !again.Created.Equal(first.Created) || again.Length != first.Length || again.CellSize != first.CellSize {
			t.Fatalf("rewrite returned %+v, want the stored %+v", again, first)
		}
	}
	empty := newShard(id(7, 2), 1, 0, cell)
	mustWrite(t, e.s, empty)
	mustWrite(t, e.s, empty)
	checkShard(t, e.s, sh)
	if got := e.s.Usage().Shards; got != 2 {
		t.Fatalf("Usage().Shards = %d, want 2", got)
	}
}

func testExists(t *testing.T, e *env) {
	sh := newShard(id(8, 0), 1, 2*cell+1, cell)
	mustWrite(t, e.s, sh)
	others := []shard{
		newShard(sh.id, 2, 2*cell+1, cell),             // other bytes
		newShard(sh.id, 1, 2*cell, cell),               // other length
		{id: sh.id, data: sh.data, cellSize: cell / 2}, // other cell size
		newShard(sh.id, 1, 0, cell),                    // empty
	}
	for i, o := range others {
		_, err := write(e.s, o)
		expectErr(t, fmt.Sprintf("overwrite %d", i), err, shardstore.ErrExists)
	}
	checkShard(t, e.s, sh)
}

func testBadChecksum(t *testing.T, e *env) {
	sh := newShard(id(9, 0), 1, 3*cell, cell)
	cs := sh.cells()
	w, err := e.s.Create(sh.id, uint64(len(sh.data)), cell)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCell(cs[0], sum(cs[0])); err != nil {
		t.Fatal(err)
	}
	bad := sum(cs[1])
	bad[0] ^= 1
	err = w.WriteCell(cs[1], bad)
	expectErr(t, "bad checksum", err, shardstore.ErrChecksum)
	if want := "shardstore: write shard 9/0: checksum mismatch in cell 1"; err.Error() != want {
		t.Errorf("error text %q, want %q", err, want)
	}
	_, err = w.Commit()
	expectErr(t, "commit after rejected cell", err, shardstore.ErrInvalid)
	checkAbsent(t, e.s, sh.id)
	w.Abort()
	checkAbsent(t, e.s, sh.id)

	// A rejected cell may be sent again.
	w, err = e.s.Create(sh.id, uint64(len(sh.data)), cell)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	corrupt := append([]byte(nil), cs[0]...)
	corrupt[10] ^= 0xff
	expectErr(t, "corrupt data", w.WriteCell(corrupt, sum(cs[0])), shardstore.ErrChecksum)
	for _, c := range cs {
		if err := w.WriteCell(c, sum(c)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	checkShard(t, e.s, sh)
}

// testMadeCells writes a shard whose cells were made by the writer's
// caller (WriteMadeCell: the store computes their checksums) mixed with
// received ones; it must read back with the right checksums, hand every
// made cell back through release once, and be the same shard as one
// written with checksums given.
func testMadeCells(t *testing.T, e *env) {
	sh := newShard(id(10, 0), 1, 4*cell+9, cell)
	cs := sh.cells()
	w, err := e.s.Create(sh.id, uint64(len(sh.data)), cell)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var released atomic.Int32
	made := 0
	for i, c := range cs {
		if i%2 == 0 {
			buf := append([]byte(nil), c...)
			if err := w.WriteMadeCell(buf, func() { released.Add(1) }); err != nil {
				t.Fatalf("made cell %d: %v", i, err)
			}
			made++
		} else if err := w.WriteCell(c, sum(c)); err != nil {
			t.Fatalf("cell %d: %v", i, err)
		}
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := released.Load(); got != int32(made) {
		t.Errorf("%d made cells released, want %d", got, made)
	}
	checkShard(t, e.s, sh)
	err = e.s.ReadCells(sh.id, 0, uint32(len(cs)), func(c uint32, data []byte, s [32]byte) error {
		if s != sum(data) {
			return fmt.Errorf("cell %d stored with checksum %x, want %x", c, s[:4], sum(data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := write(e.s, sh); err != nil {
		t.Fatalf("the same shard written with its checksums given: %v", err)
	}
}

func testCellLengths(t *testing.T, e *env) {
	sh := newShard(id(10, 0), 1, 2*cell+100, cell)
	cs := sh.cells()
	try := func(name string, steps func(w *shardstore.Writer) error, want error) {
		t.Helper()
		w, err := e.s.Create(sh.id, uint64(len(sh.data)), cell)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		err = steps(w)
		expectErr(t, name, err, want)
		checkAbsent(t, e.s, sh.id)
	}
	put := func(w *shardstore.Writer, b []byte) error { return w.WriteCell(b, sum(b)) }
	try("short first cell", func(w *shardstore.Writer) error { return put(w, cs[0][:cell-1]) }, shardstore.ErrInvalid)
	try("long first cell", func(w *shardstore.Writer) error { return put(w, append(append([]byte{}, cs[0]...), 1)) }, shardstore.ErrInvalid)
	try("full-size last cell", func(w *shardstore.Writer) error {
		if err := put(w, cs[0]); err != nil {
			return err
		}
		if err := put(w, cs[1]); err != nil {
			return err
		}
		return put(w, sh.data[:cell])
	}, shardstore.ErrInvalid)
	try("too many cells", func(w *shardstore.Writer) error {
		for _, c := range cs {
			if err := put(w, c); err != nil {
				return err
			}
		}
		return put(w, cs[2])
	}, shardstore.ErrInvalid)
	try("too few cells", func(w *shardstore.Writer) error {
		if err := put(w, cs[0]); err != nil {
			return err
		}
		_, err := w.Commit()
		return err
	}, shardstore.ErrInvalid)
	try("no cells", func(w *shardstore.Writer) error { _, err := w.Commit(); return err }, shardstore.ErrInvalid)

	empty := shard{id: id(10, 1), cellSize: cell}
	w, err := e.s.Create(empty.id, 0, cell)
	if err != nil {
		t.Fatal(err)
	}
	expectErr(t, "cell for empty shard", w.WriteCell(nil, sum(nil)), shardstore.ErrInvalid)
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	checkShard(t, e.s, empty)
}

func testReadRanges(t *testing.T, e *env) {
	sh := newShard(id(11, 0), 1, 5*cell+3, cell)
	mustWrite(t, e.s, sh)
	cs := sh.cells()
	read := func(first, count uint32) ([]uint32, error) {
		var got []uint32
		err := e.s.ReadCells(sh.id, first, count, func(c uint32, data []byte, sm [32]byte) error {
			if string(data) != string(cs[c]) || sm != sum(cs[c]) {
				return fmt.Errorf("cell %d differs", c)
			}
			got = append(got, c)
			return nil
		})
		return got, err
	}
	for _, r := range []struct{ first, count, want uint32 }{
		{0, 0, 6}, {0, 6, 6}, {0, 1, 1}, {2, 3, 3}, {5, 1, 1}, {5, 0, 1}, {3, 0, 3},
	} {
		got, err := read(r.first, r.count)
		if err != nil {
			t.Fatalf("read [%d,+%d): %v", r.first, r.count, err)
		}
		if uint32(len(got)) != r.want || got[0] != r.first {
			t.Fatalf("read [%d,+%d): cells %v", r.first, r.count, got)
		}
	}
	for _, r := range []struct{ first, count uint32 }{{6, 0}, {6, 1}, {7, 0}, {5, 2}, {0, 7}, {^uint32(0), 1}} {
		_, err := read(r.first, r.count)
		expectErr(t, fmt.Sprintf("read [%d,+%d)", r.first, r.count), err, shardstore.ErrInvalid)
	}
	stop := errors.New("stop")
	n := 0
	err := e.s.ReadCells(sh.id, 0, 0, func(uint32, []byte, [32]byte) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Fatalf("ReadCells with failing fn: err %v after %d cells, want the fn's error after 1", err, n)
	}
	err = e.s.ReadCells(id(11, 1), 0, 0, func(uint32, []byte, [32]byte) error { return nil })
	expectErr(t, "read missing", err, shardstore.ErrNotFound)

	empty := shard{id: id(11, 2), cellSize: cell}
	mustWrite(t, e.s, empty)
	if got, err := read(0, 0); err != nil || len(got) != 6 {
		t.Fatal(got, err)
	}
	err = e.s.ReadCells(empty.id, 0, 0, func(uint32, []byte, [32]byte) error { return errors.New("cell of empty shard") })
	if err != nil {
		t.Fatalf("read empty shard: %v", err)
	}
	err = e.s.ReadCells(empty.id, 1, 0, func(uint32, []byte, [32]byte) error { return nil })
	expectErr(t, "read past end of empty shard", err, shardstore.ErrInvalid)
}

func testStatListDelete(t *testing.T, e *env) {
	ids := []shardstore.ID{id(3, 2), id(1, 5), id(2, 0), id(1, 0), id(1<<33, 1), id(3, 1<<31)}
	byID := map[shardstore.ID]shard{}
	for i, x := range ids {
		sh := newShard(x, uint64(i), (i+1)*cell/2, cell)
		mustWrite(t, e.s, sh)
		byID[x] = sh
	}
	want := []shardstore.ID{id(1, 0), id(1, 5), id(2, 0), id(3, 2), id(3, 1<<31), id(1<<33, 1)}
	list := func(start shardstore.ID, limit int) []shardstore.ID {
		t.Helper()
		var got []shardstore.ID
		err := e.s.List(start, limit, func(i shardstore.Info) error {
			sh := byID[i.ID]
			if i.Length != uint64(len(sh.data)) || i.CellSize != cell {
				return fmt.Errorf("listed %+v", i)
			}
			got = append(got, i.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	eq := func(got, want []shardstore.ID) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("listed %v, want %v", got, want)
		}
	}
	eq(list(id(0, 0), 0), want)
	eq(list(id(1, 1), 0), want[1:])
	eq(list(id(1, 5), 2), want[1:3])
	eq(list(id(3, 3), 0), want[4:])
	eq(list(id(^uint64(0), 0), 0), nil)
	stop := errors.New("stop")
	if err := e.s.List(id(0, 0), 0, func(shardstore.Info) error { return stop }); err != stop {
		t.Fatalf("List with failing fn: %v, want the fn's error", err)
	}

	for _, x := range []shardstore.ID{id(2, 0), id(1<<33, 1)} {
		existed, err := e.s.Delete(x)
		if err != nil || !existed {
			t.Fatalf("delete %v: %v %v", x, existed, err)
		}
		checkAbsent(t, e.s, x)
		existed, err = e.s.Delete(x)
		if err != nil || existed {
			t.Fatalf("second delete %v: %v %v", x, existed, err)
		}
	}
	eq(list(id(0, 0), 0), []shardstore.ID{id(1, 0), id(1, 5), id(3, 2), id(3, 1<<31)})
	if got := e.s.Usage().Shards; got != 4 {
		t.Fatalf("Usage().Shards = %d, want 4", got)
	}
	// Neighbours are intact, and a deleted ID can be written again with
	// other bytes.
	checkShard(t, e.s, byID[id(1, 5)])
	checkShard(t, e.s, byID[id(3, 2)])
	again := newShard(id(2, 0), 99, 3*cell, cell)
	mustWrite(t, e.s, again)
	checkShard(t, e.s, again)
	e.reopen()
	checkShard(t, e.s, again)
	checkAbsent(t, e.s, id(1<<33, 1))
	if got := e.s.Usage().Shards; got != 5 {
		t.Fatalf("after reopen, Usage().Shards = %d, want 5", got)
	}
}

func testConcurrentWriters(t *testing.T, e *env) {
	const writers = 8
	a := newShard(id(12, 0), 1, 4*cell+9, cell)
	b := newShard(id(12, 0), 2, 4*cell+9, cell)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			sh := a
			if i%2 == 1 {
				sh = b
			}
			_, errs[i] = write(e.s, sh)
		})
	}
	wg.Wait()
	got, err := readAll(e.s, a.id)
	if err != nil {
		t.Fatal(err)
	}
	winner := 0
	if string(got) == string(b.data) {
		winner = 1
	} else if string(got) != string(a.data) {
		t.Fatal("stored shard is neither writer's")
	}
	for i, err := range errs {
		if i%2 == winner && err != nil {
			t.Errorf("writer %d (same bytes as the winner): %v", i, err)
		}
		if i%2 != winner && !errors.Is(err, shardstore.ErrExists) {
			t.Errorf("writer %d (other bytes): %v, want ErrExists", i, err)
		}
	}

	// Many shards at once, identical rewrites mixed in.
	var shards []shard
	for i := range 32 {
		shards = append(shards, newShard(id(13, uint32(i)), uint64(i), (i%5)*cell+i, cell))
	}
	for i := range writers {
		wg.Go(func() {
			for j := i; j < len(shards)+i; j++ {
				if _, err := write(e.s, shards[j%len(shards)]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, sh := range shards {
		checkShard(t, e.s, sh)
	}
	if got := e.s.Usage().Shards; got != 33 {
		t.Fatalf("Usage().Shards = %d, want 33", got)
	}
}

func testAbort(t *testing.T, e *env) {
	free := e.s.Usage().Free
	sh := newShard(id(14, 0), 1, 3*cell, cell)
	w, err := e.s.Create(sh.id, uint64(len(sh.data)), cell)
	if err != nil {
		t.Fatal(err)
	}
	if u := e.s.Usage(); u.Free >= free && free != 0 {
		t.Errorf("Create did not reserve space: free %d -> %d", free, u.Free)
	}
	c := sh.cells()[0]
	if err := w.WriteCell(c, sum(c)); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	w.Abort()
	checkAbsent(t, e.s, sh.id)
	if err := w.WriteCell(c, sum(c)); err == nil {
		t.Fatal("WriteCell after Abort succeeded")
	}
	if _, err := w.Commit(); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if u := e.s.Usage(); u.Free+cell < free {
		t.Errorf("Abort did not release space: free %d -> %d", free, u.Free)
	}
	mustWrite(t, e.s, sh)
	w, err = e.s.Create(id(14, 1), 1, cell)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCell([]byte{1}, sum([]byte{1})); err != nil {
		t.Fatal(err)
	}
	info2, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	w.Abort() // no-op after Commit
	if again, err := w.Commit(); err != nil || again != info2 {
		t.Fatalf("second Commit: %+v %v", again, err)
	}
	checkShard(t, e.s, sh)
	checkShard(t, e.s, shard{id: id(14, 1), data: []byte{1}, cellSize: cell})
}

func testReopen(t *testing.T, e *env) {
	var shards []shard
	for i := range 10 {
		sh := newShard(id(15, uint32(i)), uint64(i), i*cell+i, cell)
		mustWrite(t, e.s, sh)
		shards = append(shards, sh)
	}
	w, err := e.s.Create(id(15, 99), cell, cell) // open writer at Close
	if err != nil {
		t.Fatal(err)
	}
	e.reopen()
	expectErr(t, "WriteCell on a writer of a closed store", w.WriteCell(make([]byte, cell), sum(make([]byte, cell))), shardstore.ErrClosed)
	for _, sh := range shards {
		checkShard(t, e.s, sh)
	}
	checkAbsent(t, e.s, id(15, 99))
	if got := e.s.Usage().Shards; got != 10 {
		t.Fatalf("Usage().Shards = %d, want 10", got)
	}
}

func testClosed(t *testing.T, e *env) {
	sh := newShard(id(16, 0), 1, 2*cell, cell)
	mustWrite(t, e.s, sh)
	if e.s.DiskBytesWritten() == 0 {
		t.Error("DiskBytesWritten is 0 after a write")
	}
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := e.s.Stat(sh.id)
	expectErr(t, "Stat", err, shardstore.ErrClosed)
	_, err = e.s.Create(sh.id, 1, cell)
	expectErr(t, "Create", err, shardstore.ErrClosed)
	expectErr(t, "ReadCells", e.s.ReadCells(sh.id, 0, 0, func(uint32, []byte, [32]byte) error { return nil }), shardstore.ErrClosed)
	expectErr(t, "List", e.s.List(id(0, 0), 0, func(shardstore.Info) error { return nil }), shardstore.ErrClosed)
	_, err = e.s.Delete(sh.id)
	expectErr(t, "Delete", err, shardstore.ErrClosed)
	_ = e.s.Usage()
	_ = e.s.DiskBytesWritten()

	// Close waits for streaming reads and stops them.
	e.s = e.open()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- e.s.ReadCells(sh.id, 0, 0, func(c uint32, _ []byte, _ [32]byte) error {
			if c == 0 {
				close(started)
				<-release
			}
			return nil
		})
	}()
	<-started
	closed := make(chan error)
	go func() { closed <- e.s.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned during a read")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	expectErr(t, "read cut by Close", <-done, shardstore.ErrClosed)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

func testCreateInvalid(t *testing.T, h Harness) {
	e := newEnv(t, h)
	for _, c := range []struct {
		length   uint64
		cellSize uint32
	}{{10, 0}, {10, shardstore.MaxCellSize + 1}, {shardstore.MaxShardLength + 1, 1 << 20}, {1 << 33, 1}} {
		_, err := e.s.Create(id(1, 1), c.length, c.cellSize)
		expectErr(t, fmt.Sprintf("Create(length %d, cell size %d)", c.length, c.cellSize), err, shardstore.ErrInvalid)
	}
	w, err := e.s.Create(id(1, 1), 10, shardstore.MaxCellSize)
	if err != nil {
		t.Fatal(err)
	}
	w.Abort()
}

func testCapacity(t *testing.T, h Harness) {
	const capacity = 24 << 20
	e := newEnv(t, h, func(o *shardstore.Options) {
		o.Capacity = capacity
		o.BallastSize = -1
	})
	u := e.s.Usage()
	if u.Capacity != capacity || u.Used == 0 || u.Used+u.Free > capacity {
		t.Fatalf("Usage() = %+v for capacity %d", u, capacity)
	}
	_, err := e.s.Create(id(1, 0), u.Free+1, 1<<20)
	expectErr(t, "Create above free space", err, shardstore.ErrNoSpace)

	// Fill with large shards until the store refuses one.
	var written []shard
	for i := range 30 {
		sh := newShard(id(2, uint32(i)), uint64(i), 2<<20, 1<<20)
		if _, err := write(e.s, sh); err != nil {
			expectErr(t, "write into a full store", err, shardstore.ErrNoSpace)
			break
		}
		written = append(written, sh)
	}
	if len(written) < 5 || len(written) == 30 {
		t.Fatalf("wrote %d 2 MiB shards into %d bytes", len(written), capacity)
	}
	small := newShard(id(3, 0), 1, 2*cell, cell)
	mustWrite(t, e.s, small) // a smaller write still fits
	for _, sh := range written {
		checkShard(t, e.s, sh)
	}
	for _, sh := range written[:3] {
		if _, err := e.s.Delete(sh.id); err != nil {
			t.Fatal(err)
		}
	}
	// Deleting large shards gives the space back: the next write fits.
	waitFor(t, "space to come back", func() bool { return e.s.Usage().Free > 3<<20 })
	mustWrite(t, e.s, newShard(id(4, 0), 1, 2<<20, 1<<20))
	checkShard(t, e.s, written[len(written)-1])
}

func testSpaceReclaimed(t *testing.T, h Harness) {
	e := newEnv(t, h, func(o *shardstore.Options) { o.BallastSize = -1 })
	const n, size = 25, 4 << 20 // 100 MiB
	start := time.Now()
	for i := range n {
		mustWrite(t, e.s, newShard(id(5, uint32(i)), uint64(i), size, 1<<20))
	}
	t.Logf("wrote in %v", time.Since(start))
	start = time.Now()
	before := dirBytes(t, e.fs, e.st.Dir)
	if before < n*size {
		t.Fatalf("store holds %d bytes on disk after writing %d", before, n*size)
	}
	for i := range n {
		if _, err := e.s.Delete(id(5, uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("deleted in %v", time.Since(start))
	start = time.Now()
	var after int64
	waitFor(t, "deleted shards' files to go", func() bool {
		after = dirBytes(t, e.fs, e.st.Dir)
		return after < before/10
	})
	t.Logf("waited %v", time.Since(start))
	t.Logf("on-disk bytes: %d after writing %d MiB, %d after deleting them", before, n*size>>20, after)
}

func testSecondOpen(t *testing.T, h Harness) {
	e := newEnv(t, h)
	sh := newShard(id(6, 0), 1, cell, cell)
	mustWrite(t, e.s, sh)
	if s2, err := shardstore.Open(e.options()); err == nil {
		_ = s2.Close()
		t.Fatal("a second store opened the directory of an open one")
	}
	checkShard(t, e.s, sh)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testCrash(t *testing.T, e *env) {
	if e.st.Crash == nil {
		t.Skip("harness cannot crash")
	}
	acked := newShard(id(20, 0), 1, 3*cell+1, cell)
	mustWrite(t, e.s, acked)
	deleted := newShard(id(20, 1), 2, 2*cell, cell)
	mustWrite(t, e.s, deleted)
	if _, err := e.s.Delete(deleted.id); err != nil {
		t.Fatal(err)
	}
	mid := newShard(id(20, 2), 3, 4*cell, cell)
	w, err := e.s.Create(mid.id, uint64(len(mid.data)), cell)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range mid.cells()[:3] {
		if err := w.WriteCell(c, sum(c)); err != nil {
			t.Fatal(err)
		}
	}
	e.crash()
	checkShard(t, e.s, acked)
	checkAbsent(t, e.s, deleted.id)
	checkAbsent(t, e.s, mid.id)
	if got := e.s.Usage().Shards; got != 1 {
		t.Fatalf("Usage().Shards = %d after crash, want 1", got)
	}
	// The store works after the crash, and a second crash keeps it all.
	mustWrite(t, e.s, mid)
	e.crash()
	checkShard(t, e.s, acked)
	checkShard(t, e.s, mid)
}

// testCrashInCommit crashes while Commit waits on its k-th sync. At the
// first sync nothing of the shard is durable, so it must be absent; at later
// syncs it may already be durable, so it is absent or whole.
func testCrashInCommit(t *testing.T, e *env) {
	if e.st.Crash == nil || e.st.Inject == nil {
		t.Skip("harness cannot crash and inject")
	}
	for k := int32(1); k <= 4; k++ {
		sh := newShard(id(21, uint32(k)), uint64(k), 3*cell+2, cell)
		w, err := e.s.Create(sh.id, uint64(len(sh.data)), cell)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range sh.cells() {
			if err := w.WriteCell(c, sum(c)); err != nil {
				t.Fatal(err)
			}
		}
		b := newBlocker(k)
		e.st.Inject(b.fail)
		done := make(chan error, 1)
		go func() {
			_, err := w.Commit()
			done <- err
		}()
		var returned bool
		select {
		case <-b.reached:
		case err := <-done:
			returned = true // fewer than k syncs
			if err != nil {
				t.Fatal(err)
			}
		}
		e.st.Inject(nil)
		fs := e.st.Crash()
		b.unblock()
		t.Logf("crash at sync %d of Commit: commit had returned: %v", k, returned)
		if !returned {
			<-done
		}
		old := e.s
		e.fs = fs
		_ = old.Close()
		e.s = e.open()
		switch {
		case returned:
			checkShard(t, e.s, sh)
		case k == 1:
			checkAbsent(t, e.s, sh.id)
		default:
			checkAbsentOrWhole(t, e.s, sh)
		}
		if returned {
			break
		}
	}
}

// failAndCheck writes sh while fail injects a fault, expects the write to
// fail (with want, if set), and checks that after a restart and after a
// crash the shard is absent or whole, and that the store works.
func failAndCheck(t *testing.T, e *env, sh shard, fail func(errorfs.Op) error, want error) {
	t.Helper()
	if e.st.Inject == nil {
		t.Skip("harness cannot inject errors")
	}
	other := newShard(id(30, 9), 9, 2*cell, cell)
	mustWrite(t, e.s, other)
	e.st.Inject(fail)
	_, err := write(e.s, sh)
	e.st.Inject(nil)
	if err == nil {
		t.Fatal("write succeeded despite the injected fault")
	}
	if want != nil {
		expectErr(t, "write with injected fault", err, want)
	}
	t.Logf("write with injected fault: %v", err)
	if !errors.Is(err, shardstore.ErrFailed) {
		// The store is still usable.
		checkShard(t, e.s, other)
		checkAbsent(t, e.s, sh.id)
	}
	e.reopen()
	checkAbsentOrWhole(t, e.s, sh)
	checkShard(t, e.s, other)
	if e.st.Crash != nil {
		e.crash()
		checkAbsentOrWhole(t, e.s, sh)
		checkShard(t, e.s, other)
	}
	if _, err := e.s.Delete(sh.id); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e.s, sh)
	checkShard(t, e.s, sh)
}

func testSyncFails(t *testing.T, e *env) {
	sh := newShard(id(31, 0), 1, 3*cell, cell)
	failAndCheck(t, e, sh, onceFailer(func(op errorfs.Op) bool { return isSync(op) && onCommitPath(op) }, errors.New("injected sync failure")), nil)
}

func testWriteFails(t *testing.T, e *env) {
	sh := newShard(id(32, 0), 1, 3*cell, cell)
	failAndCheck(t, e, sh, onceFailer(func(op errorfs.Op) bool { return isWrite(op) && onCommitPath(op) }, errors.New("injected write failure")), nil)
}

func testNoSpaceInjected(t *testing.T, e *env) {
	sh := newShard(id(33, 0), 1, 3*cell, cell)
	enospc := func(op errorfs.Op) error {
		if (isWrite(op) || op.Kind == errorfs.OpCreate) && onCommitPath(op) {
			return syscall.ENOSPC
		}
		return nil
	}
	failAndCheck(t, e, sh, enospc, shardstore.ErrNoSpace)
}

// testNoSpaceOnce: one ENOSPC, as when the disk fills up. Either the write
// fails with ErrNoSpace, or the ballast absorbs it and the store refuses new
// shards until a delete frees space. Either way the store stays usable.
func testNoSpaceOnce(t *testing.T, e *env) {
	if e.st.Inject == nil {
		t.Skip("harness cannot inject errors")
	}
	keep := newShard(id(34, 0), 1, 2*cell, cell)
	victim := newShard(id(34, 1), 2, 2*cell, cell)
	mustWrite(t, e.s, keep)
	mustWrite(t, e.s, victim)
	sh := newShard(id(34, 2), 3, 3*cell, cell)
	e.st.Inject(onceFailer(func(op errorfs.Op) bool { return isWrite(op) && onCommitPath(op) }, syscall.ENOSPC))
	_, err := write(e.s, sh)
	e.st.Inject(nil)
	t.Logf("write hitting one ENOSPC: %v", err)
	if err != nil {
		expectErr(t, "write hitting ENOSPC", err, shardstore.ErrNoSpace)
		if errors.Is(err, shardstore.ErrFailed) {
			t.Fatalf("one ENOSPC failed the store: %v", err)
		}
		checkAbsent(t, e.s, sh.id)
	} else {
		checkShard(t, e.s, sh)
		_, err := write(e.s, newShard(id(34, 3), 4, cell, cell))
		expectErr(t, "write while disk full", err, shardstore.ErrNoSpace)
		if u := e.s.Usage(); u.Free != 0 {
			t.Fatalf("Usage().Free = %d while disk full", u.Free)
		}
	}
	checkShard(t, e.s, keep)
	if _, err := e.s.Delete(victim.id); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, e.s, newShard(id(34, 4), 5, cell, cell))
	checkShard(t, e.s, keep)
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(t testing.TB, fs vfs.FS, dir string) int64 {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	var n int64
	for _, name := range names {
		p := fs.PathJoin(dir, name)
		fi, err := fs.Stat(p)
		if err != nil {
			continue // removed meanwhile
		}
		if fi.IsDir() {
			n += dirBytes(t, fs, p)
		} else {
			n += fi.Size()
		}
	}
	return n
}

// slicePool is a shardstore.BufferPool that counts what it lends.
type slicePool struct{ out atomic.Int64 }

func (p *slicePool) Get(n int) []byte { p.out.Add(1); return make([]byte, n) }
func (p *slicePool) Put([]byte)       { p.out.Add(-1) }

// testDeleteWhileReading deletes shards while reads stream them: the reads
// finish with the whole shard (from their view), and the shards are gone
// afterwards. ReadCellsInto hands every buffer to fn or back to the pool.
func testDeleteWhileReading(t *testing.T, e *env) {
	for i, into := range []bool{false, true} {
		sh := newShard(id(30, uint32(i)), uint64(i), 6*cell+5, cell)
		mustWrite(t, e.s, sh)
		var got []byte
		pool := &slicePool{}
		fn := func(c uint32, data []byte, sm [32]byte) error {
			if c == 1 {
				if existed, err := e.s.Delete(sh.id); err != nil || !existed {
					return fmt.Errorf("delete during read: %v, %v", existed, err)
				}
			}
			if sum(data) != sm {
				return fmt.Errorf("cell %d does not match its checksum", c)
			}
			got = append(got, data...)
			if into {
				pool.Put(data)
			}
			return nil
		}
		var err error
		if into {
			err = e.s.ReadCellsInto(sh.id, 0, 0, pool, fn)
		} else {
			err = e.s.ReadCells(sh.id, 0, 0, fn)
		}
		if err != nil {
			t.Fatalf("read (into %v): %v", into, err)
		}
		if string(got) != string(sh.data) {
			t.Fatalf("read (into %v) %d bytes, not the %d written", into, len(got), len(sh.data))
		}
		if n := pool.out.Load(); n != 0 {
			t.Fatalf("%d buffers not returned to the pool", n)
		}
		checkAbsent(t, e.s, sh.id)
		// A read stopped early by fn returns its buffers too.
		sh2 := newShard(id(31, uint32(i)), uint64(i), 6*cell, cell)
		mustWrite(t, e.s, sh2)
		stop := errors.New("stop")
		if into {
			err = e.s.ReadCellsInto(sh2.id, 0, 0, pool, func(c uint32, data []byte, _ [32]byte) error {
				pool.Put(data)
				return stop
			})
			if !errors.Is(err, stop) {
				t.Fatalf("read stopped by fn: %v", err)
			}
			if n := pool.out.Load(); n != 0 {
				t.Fatalf("%d buffers not returned to the pool after an early stop", n)
			}
		}
	}
	e.reopen()
	for i := range 2 {
		checkAbsent(t, e.s, id(30, uint32(i)))
	}
}
