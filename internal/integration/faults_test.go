package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
)

// startClusterConfig starts a cluster from cfg (Dir and HeartbeatInterval
// filled in when zero) and waits for it to be ready.
func startClusterConfig(t *testing.T, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 200 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cfg)
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

// dialConfig dials the cluster with cfg (IOTimeout defaulted).
func dialConfig(t *testing.T, cfg client.ClientConfig) *client.Client {
	t.Helper()
	if cfg.IOTimeout == 0 {
		cfg.IOTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, cfg)
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

// randomBytes returns n pseudo-random bytes from seed.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// writeInPieces writes data to f in piece-sized Writes, calling between
// (if not nil) after each piece with the number of bytes written so far.
func writeInPieces(t *testing.T, f *client.File, data []byte, piece int, between func(written int)) {
	t.Helper()
	for off := 0; off < len(data); off += piece {
		end := min(off+piece, len(data))
		if n, err := f.Write(data[off:end]); err != nil || n != end-off {
			t.Fatalf("Write at %d: %d, %v", off, n, err)
		}
		if between != nil {
			between(end)
		}
	}
}

// checkFile reads p with a fresh Open and compares it with want.
func checkFile(t *testing.T, cl *client.Client, p string, want []byte) {
	t.Helper()
	got := readFile(t, cl, p)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: read %d bytes, differing from the %d written at byte %d", p, len(got), len(want), firstDiff(got, want))
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

// TestFileReaderConformance runs testing/iotest.TestReader on a File of
// a file made of several slices, and checks ReadAt and Seek at and past
// the end.
func TestFileReaderConformance(t *testing.T) {
	t.Parallel() // each test has its own cluster
	// Small cells and a small write buffer make a small file of several
	// slices: striped ones of 64 KiB (8 rows of 8 KiB) and a replicated
	// tail shorter than a row. (iotest.TestReader reads a few bytes at a
	// time, so the file must be small.)
	c := startClusterConfig(t, cluster.Config{Chunkservers: 3, DefaultLayout: "RS(2,1)/4KiB"})
	const slice = 64 << 10
	cl := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs(), Data: client.Config{WriteBuffer: slice, ReadAhead: 32 << 10}})
	ctx := context.Background()
	data := randomBytes(1, 3*slice+5000)

	f, err := cl.Create(ctx, "/multi")
	if err != nil {
		t.Fatal(err)
	}
	writeInPieces(t, f, data, 10007, nil)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f, err = cl.Open(ctx, "/multi")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := iotest.TestReader(f, data); err != nil {
		t.Fatal(err)
	}

	size := int64(len(data))
	buf := make([]byte, 1000)
	// A ReadAt that crosses the end is short, with io.EOF.
	if n, err := f.ReadAt(buf, size-100); n != 100 || err != io.EOF || !bytes.Equal(buf[:n], data[size-100:]) {
		t.Fatalf("ReadAt across the end: %d, %v", n, err)
	}
	// One that ends exactly at the end may return nil or io.EOF.
	if n, err := f.ReadAt(buf, size-int64(len(buf))); n != len(buf) || (err != nil && err != io.EOF) || !bytes.Equal(buf, data[size-int64(len(buf)):]) {
		t.Fatalf("ReadAt up to the end: %d, %v", n, err)
	}
	for _, off := range []int64{size, size + 1, size + 10<<20} {
		if n, err := f.ReadAt(buf, off); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt(%d) at or past the end (%d): %d, %v", off, size, n, err)
		}
	}
	if n, err := f.ReadAt(buf[:0], size+5); n != 0 || err != nil {
		t.Fatalf("empty ReadAt past the end: %d, %v", n, err)
	}
	if _, err := f.ReadAt(buf, -1); err == nil {
		t.Fatal("ReadAt at a negative offset succeeded")
	}
	// A ReadAt across a slice boundary.
	if n, err := f.ReadAt(buf, slice-500); n != len(buf) || err != nil || !bytes.Equal(buf, data[slice-500:slice+500]) {
		t.Fatalf("ReadAt across slices: %d, %v", n, err)
	}

	// Seek past the end is allowed; Read there gives io.EOF.
	if pos, err := f.Seek(10, io.SeekEnd); err != nil || pos != size+10 {
		t.Fatalf("Seek past the end: %d, %v", pos, err)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read past the end: %d, %v", n, err)
	}
	if pos, err := f.Seek(-300, io.SeekCurrent); err != nil || pos != size-290 {
		t.Fatalf("Seek back: %d, %v", pos, err)
	}
	// A Read at the tail is short without error, then io.EOF.
	if n, err := f.Read(buf); n != 290 || err != nil || !bytes.Equal(buf[:n], data[size-290:]) {
		t.Fatalf("Read at the tail: %d, %v", n, err)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end: %d, %v", n, err)
	}
	if _, err := f.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("Seek to a negative offset succeeded")
	}
	if _, err := f.Seek(0, 42); err == nil {
		t.Fatal("Seek with a bad whence succeeded")
	}
	if pos, err := f.Seek(0, io.SeekCurrent); err != nil || pos != size {
		t.Fatalf("offset after failed Seeks: %d, %v", pos, err)
	}
}

// TestKillChunkserverDuringWrite kills one chunkserver of seven while a
// large RS(4,2) file is being written: Close succeeds and the file reads
// back identical.
func TestKillChunkserverDuringWrite(t *testing.T) {
	t.Parallel() // each test has its own cluster
	c := startClusterConfig(t, cluster.Config{Chunkservers: 7, DefaultLayout: "RS(4,2)"})
	// 8 MiB slices: several are uploaded during the Writes, some before
	// and some after the kill.
	cl := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs(), Data: client.Config{WriteBuffer: 8 << 20}})
	// 200 MiB even under the race detector: the kill must land in the
	// middle of a long stream of slices, as in real use.
	size, killAt := 200<<20, 90<<20
	data := randomBytes(2, size)

	f, err := cl.Create(context.Background(), "/big")
	if err != nil {
		t.Fatal(err)
	}
	// The kill runs alongside the Writes, so it may land while a slice's
	// shard streams are open or between slices; both must succeed.
	var killErr chan error
	writeInPieces(t, f, data, 1<<20, func(written int) {
		if written >= killAt && killErr == nil {
			killErr = make(chan error, 1)
			go func() { killErr <- c.KillChunkserver(2) }()
		}
	})
	if err := f.Close(); err != nil {
		t.Fatalf("Close after a chunkserver died: %v", err)
	}
	if err := <-killErr; err != nil {
		t.Fatal(err)
	}
	checkFile(t, cl, "/big", data)
	// A second client, with no cached state, reads it too.
	checkFile(t, dialCluster(t, c.MasterAddrs()), "/big", data)
}

// TestDegradedReads writes several RS(4,2) files on six chunkservers,
// kills two (m) of them, and reads every file back.
func TestDegradedReads(t *testing.T) {
	t.Parallel() // each test has its own cluster
	c := startClusterConfig(t, cluster.Config{Chunkservers: 6, DefaultLayout: "RS(4,2)"})
	cl := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs(), Data: client.Config{WriteBuffer: 8 << 20}})

	// Sizes: under one stripe row (replicated), a few rows, several
	// slices with a ragged tail.
	sizes := []int{1, 5000, 1<<20 + 3, 4 << 20, 9<<20 + 77777, 17<<20 + 1}
	if raceEnabled {
		sizes = sizes[:5]
	}
	files := make(map[string][]byte)
	for i, n := range sizes {
		p := fmt.Sprintf("/f%d", i)
		files[p] = randomBytes(uint64(100+i), n)
		writeFile(t, cl, p, files[p])
	}
	for _, i := range []int{1, 4} {
		if err := c.KillChunkserver(i); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh client: nothing cached from the writes.
	cl2 := dialCluster(t, c.MasterAddrs())
	for p, want := range files {
		checkFile(t, cl2, p, want)
		checkFile(t, cl, p, want)
	}
}

// logRecorder is a slog.Handler that keeps the messages of every record.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// corruptCellsFile flips bytes in the middle of path in place.
func corruptCellsFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	off := fi.Size() / 2
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0x5a
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptCellOnDisk flips bytes of a stored data shard's cells file on
// one chunkserver while it runs: reads still return the written bytes, and
// the client reports the bad shard to the master (which logs it).
func TestCorruptCellOnDisk(t *testing.T) {
	t.Parallel() // each test has its own cluster
	rec := &logRecorder{}
	c := startClusterConfig(t, cluster.Config{Chunkservers: 6, DefaultLayout: "RS(4,2)", Logger: slog.New(rec)})
	cl := dialCluster(t, c.MasterAddrs())
	// 4 data shards of 2 MiB each: every shard is file-backed.
	data := randomBytes(3, 8<<20)
	writeFile(t, cl, "/c", data)

	// Find data shard 0's cells file (name "<slice>-0-<gen>.cells").
	var target string
	for i := range c.Chunkservers() {
		m, err := filepath.Glob(filepath.Join(c.ChunkserverDir(i), "shards", "*-0-*.cells"))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			target = m[0]
			break
		}
	}
	if target == "" {
		t.Fatal("no cells file of shard 0 on any chunkserver")
	}
	corruptCellsFile(t, target)

	cl2 := dialCluster(t, c.MasterAddrs())
	checkFile(t, cl2, "/c", data)
	// The ReadAt path too, over the corrupt region of shard 0 (the file's
	// cells 0, 4, …: bytes [4 MiB, 5 MiB) hold shard 0's second cell).
	f, err := cl2.Open(context.Background(), "/c")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3<<20)
	if n, err := f.ReadAt(buf, 3<<20); n != len(buf) || err != nil || !bytes.Equal(buf, data[3<<20:6<<20]) {
		t.Fatalf("ReadAt over the corrupt cell: %d, %v", n, err)
	}
	f.Close()

	// The report is sent in the background: poll for the master's log.
	const msg = "bad shard reported"
	deadline := time.Now().Add(15 * time.Second)
	for rec.count(msg) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the master never logged %q", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKillLeaderDuringWrite kills the master leader of three while a file
// is being written: the write rides out the election, Close succeeds and
// the file reads back identical.
func TestKillLeaderDuringWrite(t *testing.T) {
	t.Parallel() // each test has its own cluster
	c := startClusterConfig(t, cluster.Config{Masters: 3, Chunkservers: 3})
	cl := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs(), Data: client.Config{WriteBuffer: 2 << 20}})
	data := randomBytes(4, 12<<20+999)

	f, err := cl.Create(context.Background(), "/during")
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	deadAddr := ""
	writeInPieces(t, f, data, 1<<20, func(written int) {
		if written >= 5<<20 && !killed {
			killed = true
			lead := c.Leader()
			if lead < 0 {
				t.Fatal("no leader")
			}
			deadAddr = c.MasterAddrs()[lead]
			if err := c.KillMaster(lead); err != nil {
				t.Fatal(err)
			}
			// A newly elected leader knows no chunkserver until their
			// next heartbeats, and until then answers AllocateSlice with
			// ENOSPC (placement.ErrTooFewServers), which the Writer
			// returns from Write. Wait for the new leader's registry
			// before writing on; see the report on issue #4.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := f.Close(); err != nil {
		t.Fatalf("Close after the leader died: %v", err)
	}
	checkFile(t, cl, "/during", data)
	checkFile(t, dialCluster(t, c.MasterAddrs()), "/during", data)

	// Status asks every master for its own Raft state: the dead one shows
	// unreachable, the live ones their term and applied index, and one of
	// them leads once the group has settled (on a loaded machine the two
	// survivors may hold another election first: ask again until then).
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := cl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		leaders := 0
		for _, m := range st.Masters {
			switch {
			case m.Address == deadAddr:
				if m.State != "unreachable" {
					t.Fatalf("killed master %s shows %q, want unreachable", m.Id, m.State)
				}
			case m.AppliedIndex == 0 || m.Term == 0:
				t.Fatalf("live master %s shows applied index %d, term %d", m.Id, m.AppliedIndex, m.Term)
			case m.State == "leader":
				leaders++
			}
		}
		if len(st.Masters) != 3 || leaders > 1 {
			t.Fatalf("status lists %d masters with %d leaders, want 3 and at most 1: %v", len(st.Masters), leaders, st.Masters)
		}
		if leaders == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader in status after a minute: %v", st.Masters)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConcurrentReadersWriters runs writers of distinct files alongside
// readers of the files already closed, each from its own goroutine, some
// sharing a Client and some not.
func TestConcurrentReadersWriters(t *testing.T) {
	t.Parallel() // each test has its own cluster
	// Small cells, so that files of a few hundred KiB are striped.
	c := startClusterConfig(t, cluster.Config{Chunkservers: 6, DefaultLayout: "RS(4,2)/64KiB"})
	shared := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs(), Data: client.Config{WriteBuffer: 1 << 20}})
	own := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs(), Data: client.Config{WriteBuffer: 1 << 20}})
	if err := shared.Mkdir(context.Background(), "/cc", 0o755); err != nil {
		t.Fatal(err)
	}

	writers, filesEach := 4, 3
	if raceEnabled {
		filesEach = 2
	}
	var mu sync.Mutex
	closed := make(map[string][]byte) // files whose Close returned nil
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	read := func(cl *client.Client, p string, want []byte) error {
		f, err := cl.Open(context.Background(), p)
		if err != nil {
			return err
		}
		defer f.Close()
		got, err := io.ReadAll(f)
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s: read %d bytes, differing from the %d written at byte %d", p, len(got), len(want), firstDiff(got, want))
		}
		return nil
	}
	for w := range writers {
		cl := shared
		if w%2 == 1 {
			cl = own
		}
		wg.Go(func() {
			for i := range filesEach {
				p := fmt.Sprintf("/cc/w%d-%d", w, i)
				data := randomBytes(uint64(1000+w*filesEach+i), (w+1)*(300<<10)+i*40999)
				f, err := cl.Create(context.Background(), p)
				if err != nil {
					fail(err)
					return
				}
				for off := 0; off < len(data); off += 300 << 10 {
					if _, err := f.Write(data[off:min(off+300<<10, len(data))]); err != nil {
						f.Close()
						fail(err)
						return
					}
				}
				if err := f.Close(); err != nil {
					fail(err)
					return
				}
				mu.Lock()
				closed[p] = data
				var others []string
				for q := range closed {
					if !strings.HasPrefix(q, fmt.Sprintf("/cc/w%d-", w)) {
						others = append(others, q)
					}
				}
				mu.Unlock()
				// Read every other writer's closed file so far.
				for _, q := range others {
					mu.Lock()
					want := closed[q]
					mu.Unlock()
					if err := read(cl, q, want); err != nil {
						fail(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Finally every file, from both clients.
	for p, want := range closed {
		for _, cl := range []*client.Client{shared, own} {
			if err := read(cl, p, want); err != nil {
				t.Error(err)
			}
		}
	}
	if len(closed) != writers*filesEach {
		t.Errorf("%d files closed, want %d", len(closed), writers*filesEach)
	}
}
