package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/master"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// startRepair starts a cluster whose masters declare a silent chunkserver
// dead after three seconds (long enough that a heartbeat starved on a
// loaded machine does not kill a live server) and scan for repair work
// often.
func startRepair(t *testing.T, chunkservers int, mod func(*cluster.Config)) *cluster.Cluster {
	t.Helper()
	cfg := cluster.Config{
		Dir: t.TempDir(), Chunkservers: chunkservers, HeartbeatInterval: 200 * time.Millisecond,
		DeadAfter: 3 * time.Second,
		Repair:    master.RepairConfig{Interval: 250 * time.Millisecond, PerServer: 4},
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// writeFiles writes n files named /dir/fN of mixed sizes (striped and
// replicated slices) and returns their contents by path.
func writeFiles(t *testing.T, cl *client.Client, dir string, n int, seed uint64) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	if err := cl.MkdirAll(ctx, dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	sizes := []int{9<<20 + 12345, 300 << 10, 5 << 20, 20000}
	out := map[string][]byte{}
	for i := range n {
		data := make([]byte, sizes[i%len(sizes)])
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		p := fmt.Sprintf("%s/f%d", dir, i)
		writeFile(t, cl, p, data)
		out[p] = data
	}
	return out
}

func writeFile(t testing.TB, cl *client.Client, p string, data []byte) {
	t.Helper()
	if err := put(cl, p, data); err != nil {
		t.Fatal(err)
	}
}

func put(cl *client.Client, p string, data []byte) error {
	f, err := cl.Create(context.Background(), p)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func checkFiles(t *testing.T, cl *client.Client, files map[string][]byte) {
	t.Helper()
	for p, want := range files {
		f, err := cl.Open(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read back %d bytes that differ from the %d written", p, len(got), len(want))
		}
	}
}

// fsck runs the master's Fsck over p.
func fsck(t *testing.T, cl *client.Client, p string) []*masterpb.FsckResponse {
	t.Helper()
	var out []*masterpb.FsckResponse
	err := cl.Conn().Do(context.Background(), func(ctx context.Context, mc masterpb.MasterClient) error {
		out = out[:0]
		st, err := mc.Fsck(ctx, &masterpb.FsckRequest{Path: p})
		if err != nil {
			return err
		}
		for {
			r, err := st.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			out = append(out, r)
		}
	})
	if err != nil {
		t.Fatalf("fsck %s: %v", p, err)
	}
	return out
}

// unhealthy summarises the files fsck does not find healthy ("" if none).
func unhealthy(rs []*masterpb.FsckResponse) string {
	var bad []string
	for _, r := range rs {
		if r.Health != masterpb.FsckResponse_HEALTH_HEALTHY {
			bad = append(bad, fmt.Sprintf("%s %v %v", r.Path, r.Health, r.Problems))
		}
	}
	if len(bad) > 3 {
		bad = append(bad[:3], fmt.Sprintf("and %d more", len(bad)-3))
	}
	return fmt.Sprint(bad)[1 : len(fmt.Sprint(bad))-1]
}

// waitHealthy waits until fsck finds every file under p healthy. Under
// load a heartbeat can be late enough for its server to be suspect, which
// makes its files degraded for a moment; lost data does not come back, and
// waitFor then fails with fsck's last answer.
func waitHealthy(t *testing.T, cl *client.Client, p string) {
	t.Helper()
	waitFor(t, 30*time.Second, "fsck to find "+p+" healthy", func() (bool, string) {
		bad := unhealthy(fsck(t, cl, p))
		return bad == "", bad
	})
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func chunkserverState(t testing.TB, cl *client.Client, id string) string {
	t.Helper()
	st, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range st.Chunkservers {
		if cs.Id == id {
			return cs.State
		}
	}
	return "unknown"
}

// storedShards lists the shards a chunkserver holds.
func storedShards(t testing.TB, addr string) []*chunkpb.ShardInfo {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := chunkpb.NewChunkClient(cc).ListShards(context.Background(), &chunkpb.ListShardsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*chunkpb.ShardInfo
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Shards...)
	}
}

// TestRepairRestoresRedundancy kills chunkservers for good (one, then m
// at once): repair rebuilds their shards elsewhere until fsck finds every
// file healthy, and every file reads back identical. The killed servers
// then return, and the shards rebuilt elsewhere meanwhile are deleted from
// them.
func TestRepairRestoresRedundancy(t *testing.T) {
	for _, kill := range []int{1, 2} {
		t.Run(fmt.Sprintf("kill %d", kill), func(t *testing.T) {
			c := startRepair(t, 6+kill, nil)
			cl := dial(t, c)
			files := writeFiles(t, cl, "/data", 12, uint64(kill))
			if bad := unhealthy(fsck(t, cl, "/")); bad != "" {
				t.Fatalf("before any failure: %s", bad)
			}
			start := time.Now()
			for i := range kill {
				if err := c.KillChunkserver(i); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 20*time.Second, "the killed servers to be declared dead", func() (bool, string) {
				s := chunkserverState(t, cl, "cs1")
				return s == "dead", s
			})
			waitFor(t, 60*time.Second, "full redundancy", func() (bool, string) {
				bad := unhealthy(fsck(t, cl, "/"))
				return bad == "", bad
			})
			t.Logf("full redundancy %v after losing %d chunkservers", time.Since(start).Round(time.Millisecond), kill)
			// Status reports the latest scan, which may predate the last
			// rebuild by a scan interval.
			waitFor(t, 10*time.Second, "status to show no degraded slices", func() (bool, string) {
				st, err := cl.Status(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return st.SlicesDegraded == 0 && st.SlicesLost == 0 && st.RepairBytesLeft == 0, fmt.Sprint(st.SlicesDegraded, " degraded ", st.SlicesLost, " lost")
			})
			checkFiles(t, cl, files)

			for i := range kill {
				if err := c.RestartChunkserver(context.Background(), i); err != nil {
					t.Fatal(err)
				}
			}
			for i := range kill {
				addr := c.Chunkservers()[i].Addr
				waitFor(t, 30*time.Second, "surplus shards to leave the returning server", func() (bool, string) {
					n := len(storedShards(t, addr))
					return n == 0, fmt.Sprintf("%d shards left on cs%d", n, i+1)
				})
			}
			checkFiles(t, cl, files)
		})
	}
}

// TestScrubberFindsCorruption damages stored cells on three chunkservers:
// their scrubbers report the shards and repair rebuilds them elsewhere.
func TestScrubberFindsCorruption(t *testing.T) {
	c := startRepair(t, 7, func(cfg *cluster.Config) {
		cfg.ScrubBytesPerSecond = 256 << 20
		cfg.ScrubInterval = 200 * time.Millisecond
	})
	cl := dial(t, c)
	files := writeFiles(t, cl, "/data", 8, 3)
	var damaged []string
	// One damaged shard per slice: three of the same slice would be more
	// than a replicated or RS(4,2) slice bears.
	hit := map[uint64]bool{}
	for _, i := range []int{1, 3, 5} {
		names, err := c.CorruptShards(i, 1, uint64(i), func(slice uint64) bool { return !hit[slice] })
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			first, _, _ := strings.Cut(n, "-")
			slice, err := strconv.ParseUint(first, 10, 64)
			if err != nil {
				t.Fatalf("shard file %s: %v", n, err)
			}
			hit[slice] = true
			damaged = append(damaged, filepath.Join(c.ChunkserverDir(i), "shards", n))
		}
	}
	if len(damaged) != 3 {
		t.Fatalf("damaged %d shard files, want 3", len(damaged))
	}
	// A damaged copy is deleted once its replacement is recorded
	// elsewhere: the scrubber found it and repair rebuilt it.
	waitFor(t, 60*time.Second, "the damaged shards to be rebuilt elsewhere and deleted", func() (bool, string) {
		left := 0
		for _, p := range damaged {
			if _, err := os.Stat(p); err == nil {
				left++
			}
		}
		bad := unhealthy(fsck(t, cl, "/"))
		return left == 0 && bad == "", fmt.Sprintf("%d damaged copies remain; fsck: %s", left, bad)
	})
	checkFiles(t, cl, files)
}

// TestGarbageCollection deletes many files: their shards disappear from
// the chunkservers.
func TestGarbageCollection(t *testing.T) {
	c := startRepair(t, 6, nil)
	cl := dial(t, c)
	ctx := context.Background()
	n := 1000
	if testing.Short() || raceEnabled {
		n = 250
	}
	if err := cl.MkdirAll(ctx, "/many", 0o755); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				f, err := cl.Create(ctx, fmt.Sprintf("/many/f%d", i))
				if err == nil {
					// Past the inline limit, so that each file has shards.
					_, err = f.Write(bytes.Repeat([]byte{byte(i)}, client.DefaultInlineMax+1+i))
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := func() int {
		sum := 0
		for _, cs := range c.Chunkservers() {
			sum += len(storedShards(t, cs.Addr))
		}
		return sum
	}
	if got := total(); got < n {
		t.Fatalf("%d shards stored for %d files", got, n)
	}
	if err := cl.RemoveAll(ctx, "/many"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "garbage collection", func() (bool, string) {
		got := total()
		return got == 0, fmt.Sprintf("%d shards left", got)
	})
}

// TestDrain drains a chunkserver while files are being written: nothing
// is lost, the server ends up holding no shard any file needs (and then
// none at all), and it can be undrained.
func TestDrain(t *testing.T) {
	c := startRepair(t, 7, nil)
	cl := dial(t, c)
	files := writeFiles(t, cl, "/before", 8, 5)

	ctx, cancel := context.WithCancel(context.Background())
	during := map[string][]byte{}
	writeErr := make(chan error, 1)
	go func() {
		var err error
		for i := 0; ctx.Err() == nil && i < 40 && err == nil; i++ {
			data := bytes.Repeat([]byte(fmt.Sprint(i)), 150<<10+i*100<<10)
			p := fmt.Sprintf("/during-%d", i)
			if err = put(cl, p, data); err == nil {
				during[p] = data
			}
		}
		writeErr <- err
	}()
	drain(t, c, "cs2", true)
	waitFor(t, 60*time.Second, "cs2 to be drained", func() (bool, string) {
		s := chunkserverState(t, cl, "cs2")
		return s == "drained", s
	})
	cancel()
	if err := <-writeErr; err != nil {
		t.Fatalf("write during the drain: %v", err)
	}
	// Writes that raced the drain mark may have landed on cs2; the scans
	// move them too.
	waitFor(t, 60*time.Second, "cs2 to be drained after the writes", func() (bool, string) {
		s := chunkserverState(t, cl, "cs2")
		return s == "drained" && unhealthy(fsck(t, cl, "/")) == "", s
	})
	addr := c.Chunkservers()[1].Addr
	waitFor(t, 30*time.Second, "cs2's moved shards to be deleted", func() (bool, string) {
		n := len(storedShards(t, addr))
		return n == 0, fmt.Sprintf("%d shards left", n)
	})
	checkFiles(t, cl, files)
	checkFiles(t, cl, during)
	drain(t, c, "cs2", false)
	waitFor(t, 10*time.Second, "cs2 to be live again", func() (bool, string) {
		s := chunkserverState(t, cl, "cs2")
		return s == "live", s
	})
}

func drain(t *testing.T, c *cluster.Cluster, id string, on bool) {
	t.Helper()
	lead := c.Leader()
	if lead < 0 {
		t.Fatal("no leader")
	}
	cc, err := grpc.NewClient(c.MasterAddrs()[lead], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ac := masterpb.NewAdminClient(cc)
	if on {
		_, err = ac.Drain(context.Background(), &masterpb.DrainRequest{ChunkserverId: id})
	} else {
		_, err = ac.Undrain(context.Background(), &masterpb.UndrainRequest{ChunkserverId: id})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestFsckReportsLoss checks fsck's verdicts with repair off: healthy,
// degraded with the losses left to bear, and lost.
func TestFsckReportsLoss(t *testing.T) {
	c := startRepair(t, 6, func(cfg *cluster.Config) { cfg.Repair.Disabled = true })
	cl := dial(t, c)
	files := writeFiles(t, cl, "/d", 4, 9)
	// A heartbeat starved on a loaded machine makes a server briefly
	// suspect: wait for the steady state rather than sample it once.
	waitFor(t, 20*time.Second, "healthy files", func() (bool, string) {
		rs := fsck(t, cl, "/d")
		ok := len(rs) == len(files)
		for _, r := range rs {
			ok = ok && r.Health == masterpb.FsckResponse_HEALTH_HEALTHY && r.TolerableLosses == 2
		}
		return ok, fmt.Sprint(rs)
	})
	// /d/f0 and /d/f2 are striped RS(4,2) over all six servers; the
	// others are replicated on three.
	striped := map[string]bool{"/d/f0": true, "/d/f2": true}
	if got := len(fsck(t, cl, "/d/f1")); got != 1 {
		t.Fatalf("fsck of one file gave %d answers", got)
	}
	if err := c.KillChunkserver(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "degraded files", func() (bool, string) {
		rs := fsck(t, cl, "/d")
		ok := len(rs) == len(files)
		for _, r := range rs {
			switch {
			case striped[r.Path]:
				ok = ok && r.Health == masterpb.FsckResponse_HEALTH_DEGRADED && r.TolerableLosses == 1 && len(r.Problems) == 1
			case r.Health == masterpb.FsckResponse_HEALTH_HEALTHY:
				ok = ok && r.TolerableLosses == 2 && len(r.Problems) == 0
			default:
				ok = ok && r.TolerableLosses == 1 && len(r.Problems) == 1
			}
		}
		return ok, fmt.Sprint(rs)
	})
	for _, i := range []int{1, 2} {
		if err := c.KillChunkserver(i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "lost files", func() (bool, string) {
		lost := 0
		for _, r := range fsck(t, cl, "/d") {
			if striped[r.Path] && r.Health == masterpb.FsckResponse_HEALTH_LOST && r.TolerableLosses == 0 {
				lost++
			}
		}
		return lost == len(striped), fmt.Sprint(lost, " striped files lost")
	})
}

// TestLeaderChangeKeepsPlacement kills the master leader: the new leader
// refuses placement (Unavailable, which clients retry) until its registry
// has refilled, so a file written right after the takeover still gets
// the layout six chunkservers allow, and no server is taken for dead.
func TestLeaderChangeKeepsPlacement(t *testing.T) {
	c := startRepair(t, 6, func(cfg *cluster.Config) {
		cfg.Masters = 3
		cfg.HeartbeatInterval = time.Second
		cfg.DeadAfter = 10 * time.Second
	})
	cl := dial(t, c)
	files := writeFiles(t, cl, "/a", 2, 11)
	if err := c.KillMaster(c.Leader()); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("cairn"), 2<<20)
	writeFile(t, cl, "/after", data)
	files["/after"] = data
	for _, r := range fsck(t, cl, "/") {
		if r.Health != masterpb.FsckResponse_HEALTH_HEALTHY || r.TolerableLosses != 2 {
			t.Errorf("after the takeover: %v", r)
		}
	}
	st, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range st.Chunkservers {
		if cs.State != "live" {
			t.Errorf("chunkserver %s is %s after the takeover", cs.Id, cs.State)
		}
	}
	checkFiles(t, cl, files)
}
