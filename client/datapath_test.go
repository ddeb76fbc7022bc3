package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/erasure"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		// This process is a chunkserver for the benchmark (bench_test.go).
		os.Exit(runChildChunkserver(dir))
	}
	goleak.VerifyTestMain(m)
}

const (
	testCell  = 64 << 10
	testChunk = 1 << 20
)

type env struct {
	servers []*server
	meta    *fakeMeta
	dp      *client.DataPath
	hooks   *hooks
}

func newEnv(t *testing.T, policy erasure.Layout, n int, mod func(*client.Config)) *env {
	t.Helper()
	e := &env{servers: startServers(t, n), hooks: &hooks{}}
	e.meta = newFakeMeta(t, policy.WithCellSize(testCell), e.servers, testChunk)
	cfg := client.Config{
		ClientID: "test", ChunkSize: testChunk, WriteBuffer: testChunk, ReadAhead: 256 << 10,
		ShardReadTimeout: 5 * time.Second, DialOptions: e.hooks.dialOptions(),
	}
	if mod != nil {
		mod(&cfg)
	}
	dp, err := client.New(e.meta, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.dp = dp
	t.Cleanup(func() {
		if err := dp.Close(); err != nil {
			t.Errorf("DataPath.Close: %v", err)
		}
	})
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeSeq writes data at offset 0 in randomly sized pieces and closes.
func writeSeq(t *testing.T, dp *client.DataPath, inode uint64, data []byte, r *rand.Rand) {
	t.Helper()
	ctx := ctxT(t)
	w := dp.NewWriter(inode)
	for off := 0; off < len(data); {
		n := min(len(data)-off, 1+r.IntN(200<<10))
		if got, err := w.WriteAt(ctx, data[off:off+n], int64(off)); err != nil || got != n {
			t.Fatalf("WriteAt(%d, %d) = %d, %v", off, n, got, err)
		}
		off += n
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// verify reads the file back whole, sequentially in pieces (read-ahead)
// and at random places, and compares with want.
func verify(t *testing.T, dp *client.DataPath, inode uint64, want []byte, r *rand.Rand) {
	t.Helper()
	ctx := ctxT(t)
	rd, err := dp.OpenReader(ctx, inode)
	if err != nil {
		t.Fatalf("OpenReader: %v", err)
	}
	defer rd.Close()
	if rd.Size() != int64(len(want)) {
		t.Fatalf("Size = %d, want %d", rd.Size(), len(want))
	}
	got := make([]byte, len(want)+10)
	n, err := rd.ReadAt(ctx, got, 0)
	if n != len(want) || (err != io.EOF) {
		t.Fatalf("ReadAt whole = %d, %v; want %d, EOF", n, err, len(want))
	}
	if !bytes.Equal(got[:n], want) {
		t.Fatalf("whole read differs at %d", firstDiff(got[:n], want))
	}
	// Sequential pieces: the read-ahead path.
	seq := make([]byte, 0, len(want))
	buf := make([]byte, 100<<10+3)
	for off := int64(0); ; {
		n, err := rd.ReadAt(ctx, buf, off)
		seq = append(seq, buf[:n]...)
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("sequential ReadAt at %d: %v", off, err)
		}
	}
	if !bytes.Equal(seq, want) {
		t.Fatalf("sequential read differs at %d (len %d, want %d)", firstDiff(seq, want), len(seq), len(want))
	}
	for range 10 {
		if len(want) == 0 {
			break
		}
		off := r.IntN(len(want))
		n := r.IntN(len(want)-off) + 1
		p := make([]byte, n)
		if got, err := rd.ReadAt(ctx, p, int64(off)); got != n || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, got, err)
		}
		if !bytes.Equal(p, want[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) differs at %d", off, n, firstDiff(p, want[off:off+n]))
		}
	}
	if n, err := rd.ReadAt(ctx, buf, int64(len(want))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at EOF = %d, %v", n, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		layout  erasure.Layout
		servers int
	}{
		{erasure.RS(4, 2), 6},
		{erasure.RS(6, 3), 9},
		{erasure.Replicated(3), 3},
	} {
		t.Run(tc.layout.String(), func(t *testing.T) {
			e := newEnv(t, tc.layout, tc.servers, nil)
			l := tc.layout.WithCellSize(testCell)
			row := int(l.StripeRow())
			sizes := []int{0, 1, testCell - 1, testCell, row - 1, row, row + 1, testChunk - 1, testChunk, testChunk + 1, 3*testChunk + 7}
			r := rand.New(rand.NewPCG(1, uint64(l)))
			for i, size := range sizes {
				inode := uint64(1000 + i)
				data := randBytes(r, size)
				writeSeq(t, e.dp, inode, data, r)
				verify(t, e.dp, inode, data, r)
			}
			if rep := e.meta.reported(); len(rep) != 0 {
				t.Errorf("healthy cluster, but bad shards reported: %v", rep)
			}
		})
	}
}

// TestRandomWrites overwrites a file at random places, with slices of all
// sizes crossing chunks, and compares with an in-memory model after each
// flush (newest slice wins, holes are zeros).
func TestRandomWrites(t *testing.T) {
	e := newEnv(t, erasure.RS(4, 2), 6, func(c *client.Config) { c.WriteBuffer = 300 << 10 })
	r := rand.New(rand.NewPCG(7, 7))
	const inode = 42
	var model []byte
	ctx := ctxT(t)
	w := e.dp.NewWriter(inode)
	for round := range 40 {
		off := r.IntN(3*testChunk + 100)
		n := 1 + r.IntN(700<<10)
		if round%5 == 0 {
			n = 1 + r.IntN(100) // small, replicated slices
		}
		p := randBytes(r, n)
		if got, err := w.WriteAt(ctx, p, int64(off)); err != nil || got != n {
			t.Fatalf("WriteAt(%d, %d) = %d, %v", off, n, got, err)
		}
		if off+n > len(model) {
			model = append(model, make([]byte, off+n-len(model))...)
		}
		copy(model[off:], p)
		if round%8 == 7 {
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			verify(t, e.dp, inode, model, r)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	verify(t, e.dp, inode, model, r)
}

// TestChunkserverDiesMidWrite stops the server of one shard while its
// stream is under way.
func TestChunkserverDiesMidWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		servers  int
		size     int
		replaced bool
	}{
		// A spare server takes the shard.
		{"substitute", 7, 2*testChunk + 12345, true},
		// No spare: commit with 5 of 6 shards. One slice only, since no
		// other RS(4,2) slice can be placed on the 5 left.
		{"k+1", 6, testChunk, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, erasure.RS(4, 2), tc.servers, nil)
			// Slice 101 goes to servers 0..5; kill server 2 (shard 2) at
			// its third cell.
			victim := e.servers[2]
			e.hooks.killAt(victim.addr, 3, func() { e.meta.markDead(victim.id); victim.stop(t) })

			r := rand.New(rand.NewPCG(3, 3))
			data := randBytes(r, tc.size)
			writeSeq(t, e.dp, 1, data, r)
			e.meta.mu.Lock()
			replaced, first := e.meta.replaced, e.meta.committed[0]
			e.meta.mu.Unlock()
			if tc.replaced && replaced == 0 {
				t.Errorf("no ReplaceShard after a chunkserver died")
			}
			if !tc.replaced && len(first.Shards) != 5 {
				t.Errorf("first slice committed with %d shards, want 5", len(first.Shards))
			}
			verify(t, e.dp, 1, data, r)
		})
	}
}

// TestWriteFailsWithTooFewShards stops m+1 servers: no slice can keep k+1
// shards, and the write must say so.
func TestWriteFailsWithTooFewShards(t *testing.T) {
	e := newEnv(t, erasure.RS(4, 2), 6, nil)
	for _, s := range e.servers[:2] {
		e.hooks.killAt(s.addr, 1, func() { e.meta.markDead(s.id); s.stop(t) })
	}
	ctx := ctxT(t)
	w := e.dp.NewWriter(1)
	data := randBytes(rand.New(rand.NewPCG(1, 2)), testChunk)
	if _, err := w.WriteAt(ctx, data, 0); err == nil || !strings.Contains(err.Error(), "need 5") {
		t.Fatalf("WriteAt = %v, want an error saying 5 shards are needed", err)
	}
	if err := w.Close(ctx); err == nil {
		t.Fatal("Close after a failed upload succeeded")
	}
	e.meta.mu.Lock()
	defer e.meta.mu.Unlock()
	if len(e.meta.committed) != 0 {
		t.Fatalf("%d slices committed", len(e.meta.committed))
	}
}

// TestDegradedRead stops m servers after writing: every read still
// returns the same bytes, and the missing shards are reported.
func TestDegradedRead(t *testing.T) {
	for _, tc := range []struct {
		layout  erasure.Layout
		servers int
	}{
		{erasure.RS(4, 2), 6},
		{erasure.RS(6, 3), 9},
		{erasure.Replicated(3), 3},
	} {
		t.Run(tc.layout.String(), func(t *testing.T) {
			e := newEnv(t, tc.layout, tc.servers, nil)
			r := rand.New(rand.NewPCG(5, 5))
			data := randBytes(r, 3*testChunk+7)
			writeSeq(t, e.dp, 1, data, r)
			for _, s := range e.servers[:tc.layout.Tolerates()] {
				s.stop(t)
			}
			verify(t, e.dp, 1, data, r)
			waitFor(t, func() bool { return len(e.meta.reported()) == tc.layout.Tolerates() }, "reports of the stopped servers")
			rep := e.meta.reported()
			for _, s := range e.servers[:tc.layout.Tolerates()] {
				if rep[s.id] == 0 {
					t.Errorf("stopped %s not reported; reports: %v", s.id, rep)
				}
			}
			// One more loss is too many: reads fail and say why.
			e.servers[tc.layout.Tolerates()].stop(t)
			rd, err := e.dp.OpenReader(ctxT(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			_, err = rd.ReadAt(ctxT(t), make([]byte, 10), 0)
			if !errors.Is(err, erasure.ErrTooFewShards) {
				t.Fatalf("ReadAt with m+1 servers down = %v, want ErrTooFewShards", err)
			}
		})
	}
}

// TestCorruptCell flips bytes in every cell one server returns: reads are
// still right, and that server's shards are reported.
func TestCorruptCell(t *testing.T) {
	for _, tc := range []struct {
		layout  erasure.Layout
		servers int
	}{
		{erasure.RS(4, 2), 6},
		{erasure.Replicated(3), 3},
	} {
		t.Run(tc.layout.String(), func(t *testing.T) {
			e := newEnv(t, tc.layout, tc.servers, nil)
			r := rand.New(rand.NewPCG(9, 9))
			data := randBytes(r, 2*testChunk+99)
			writeSeq(t, e.dp, 1, data, r)
			victim := e.servers[0]
			e.hooks.mu.Lock()
			e.hooks.flipAddr = victim.addr
			e.hooks.mu.Unlock()
			verify(t, e.dp, 1, data, r)
			waitFor(t, func() bool { return e.meta.reported()[victim.id] > 0 }, "report of the corrupting server")
			if rep := e.meta.reported(); len(rep) != 1 {
				t.Errorf("reports = %v, want only %s", rep, victim.id)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
