package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// dialImpatient returns a client that gives up on a master after two
// seconds (a paused master answers nothing) and on a shard stream after
// one second without a cell.
func dialImpatient(t *testing.T, c *cluster.Cluster) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.ClientConfig{
		Masters: c.MasterAddrs(), CallTimeout: 2 * time.Second, RetryTimeout: 60 * time.Second,
		IOTimeout: 60 * time.Second,
		Data:      client.Config{ShardStallTimeout: time.Second, ReadAhead: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// randomBytes returns n bytes drawn from seed.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// readFile reads p whole through the client.
func readFile(t *testing.T, cl *client.Client, p string) []byte {
	t.Helper()
	f, err := cl.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

// newLeader waits for a master other than old to lead.
func newLeader(t *testing.T, c *cluster.Cluster, old int) {
	t.Helper()
	waitFor(t, 20*time.Second, "a new master leader", func() (bool, string) {
		ms := c.Masters()
		for i, m := range ms {
			if m.Leader && i != old {
				return true, ""
			}
		}
		return false, fmt.Sprint(ms)
	})
}

// maxApplied returns the highest index a master has applied: after a
// write acknowledged by the leader, at least the write's.
func maxApplied(c *cluster.Cluster) uint64 {
	var m uint64
	for _, mi := range c.Masters() {
		m = max(m, mi.AppliedIndex)
	}
	return m
}

// waitConverged waits until exactly one master leads, none is old, and
// every master has applied at least index.
func waitConverged(t *testing.T, c *cluster.Cluster, old int, index uint64) {
	t.Helper()
	waitFor(t, 30*time.Second, "one leader and every master caught up", func() (bool, string) {
		ms := c.Masters()
		leaders := 0
		ok := true
		for i, m := range ms {
			if m.Leader {
				leaders++
				ok = ok && i != old
			}
			ok = ok && m.AppliedIndex >= index
		}
		return ok && leaders == 1, fmt.Sprintf("want index %d: %+v", index, ms)
	})
}

// TestPauseMasterLeader pauses the master leader of a three-master
// cluster: the other two elect a leader and a write through the client
// succeeds. Resumed, the old leader rejoins as a follower and applies the
// write.
func TestPauseMasterLeader(t *testing.T) {
	c := startRepair(t, 3, func(cfg *cluster.Config) {
		cfg.Masters = 3
		cfg.DeadAfter = 10 * time.Second
		cfg.HeartbeatCallTimeout = time.Second
	})
	cl := dialImpatient(t, c)
	writeFile(t, cl, "/before", []byte("before the pause"))
	old := c.Leader()
	if old < 0 {
		t.Fatal("no leader")
	}
	if err := c.PauseMaster(old); err != nil {
		t.Fatal(err)
	}
	if ms := c.Masters(); !ms[old].Paused {
		t.Fatalf("master %d not reported paused: %+v", old, ms[old])
	}
	newLeader(t, c, old)
	// The new leader places data once the chunkservers, held by the
	// paused one until their calls time out, have registered with it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(200<<10, 1)
	writeFile(t, cl, "/during", data)
	index := maxApplied(c)
	if got := c.Masters()[old].AppliedIndex; got >= index {
		t.Fatalf("the paused master applied index %d, beyond the write's %d", got, index)
	}

	if err := c.ResumeMaster(old); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, old, index)
	if got := readFile(t, cl, "/during"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(data))
	}
}

// TestPartitionMasterLeader cuts the master leader off from the other two
// masters: the majority elects a leader and takes writes, while the old
// leader refuses linearizable reads and writes instead of answering from
// its stale state. Healed, the masters converge on one leader.
func TestPartitionMasterLeader(t *testing.T) {
	c := startRepair(t, 3, func(cfg *cluster.Config) {
		cfg.Masters = 3
		cfg.DeadAfter = 10 * time.Second
	})
	cl := dialImpatient(t, c)
	writeFile(t, cl, "/before", []byte("before the partition"))
	old := c.Leader()
	if old < 0 {
		t.Fatal("no leader")
	}
	if err := c.Partition([]cluster.Node{cluster.Master(old)}); err != nil {
		t.Fatal(err)
	}
	newLeader(t, c, old)
	data := randomBytes(100<<10, 2)
	writeFile(t, cl, "/majority", data)
	index := maxApplied(c)

	// The test process still reaches the isolated master.
	cc, err := grpc.NewClient(c.MasterAddrs()[old], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	mc := masterpb.NewMasterClient(cc)
	header := &masterpb.RequestHeader{RequestId: []byte("partition-test-1"), ClientId: "partition-test"}
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"read", func(ctx context.Context) error {
			_, err := mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: 1})
			return err
		}},
		{"read layout", func(ctx context.Context) error {
			_, err := mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: 1})
			return err
		}},
		{"write", func(ctx context.Context) error {
			_, err := mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: header, Parent: 1, Name: "minority", Mode: 0o755})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			err := tc.call(ctx)
			if code := status.Code(err); code != codes.Unavailable {
				t.Fatalf("the isolated old leader answered %v (code %v), want NotLeader or Unavailable", err, code)
			}
		})
	}

	c.Heal()
	waitConverged(t, c, -1, index)
	if got := readFile(t, cl, "/majority"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(data))
	}
	if _, err := cl.Stat(context.Background(), "/minority"); err == nil {
		t.Fatal("the write refused by the isolated master exists after the heal")
	}
}

// shardHolders returns, for the first slice of p, the chunkserver index
// (0-based) holding each shard index.
func shardHolders(t *testing.T, c *cluster.Cluster, cl *client.Client, p string) map[uint32]int {
	t.Helper()
	fi, err := cl.Stat(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var resp *masterpb.GetLayoutResponse
	err = cl.Conn().Do(context.Background(), func(ctx context.Context, mc masterpb.MasterClient) error {
		resp, err = mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: fi.Inode()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Slices) == 0 {
		t.Fatalf("%s has no slices", p)
	}
	index := map[string]int{}
	for i, cs := range c.Chunkservers() {
		index[cs.ID] = i
	}
	out := map[uint32]int{}
	for _, sh := range resp.Slices[0].Shards {
		i, ok := index[sh.ChunkserverId]
		if !ok {
			t.Fatalf("shard %d on unknown chunkserver %q", sh.Index, sh.ChunkserverId)
		}
		out[sh.Index] = i
	}
	return out
}

// TestPauseChunkserverDuringRead pauses a chunkserver in the middle of a
// read of an RS(4,2) file: the client's stall detection gives up on it
// and the read completes from the other shards.
func TestPauseChunkserverDuringRead(t *testing.T) {
	c := startRepair(t, 6, func(cfg *cluster.Config) {
		cfg.DefaultLayout = "RS(4,2)"
		cfg.DeadAfter = 10 * time.Minute // no repair: the pause is short
	})
	cl := dialImpatient(t, c)
	data := randomBytes(12<<20, 3) // three stripe rows of 1 MiB cells
	writeFile(t, cl, "/file", data)
	holders := shardHolders(t, c, cl, "/file")
	for _, tc := range []struct {
		name  string
		shard uint32
	}{
		{"data shard", 0},
		{"parity shard", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, ok := holders[tc.shard]
			if !ok {
				t.Fatalf("no chunkserver holds shard %d: %v", tc.shard, holders)
			}
			f, err := cl.Open(context.Background(), "/file")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := make([]byte, len(data))
			first := 1 << 20
			if _, err := io.ReadFull(f, got[:first]); err != nil {
				t.Fatal(err)
			}
			if err := c.PauseChunkserver(cs); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.ResumeChunkserver(cs); err != nil {
					t.Error(err)
				}
			}()
			if _, err := io.ReadFull(f, got[first:]); err != nil {
				t.Fatalf("read with cs%d paused: %v", cs+1, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("read back bytes that differ from those written")
			}
		})
	}
}

// readShards reads every shard stored on the chunkserver at addr in full
// and returns how many bytes they held.
func readShards(t *testing.T, addr string) int {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cs := chunkpb.NewChunkClient(cc)
	total := 0
	for _, info := range storedShards(t, addr) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		st, err := cs.ReadShard(ctx, &chunkpb.ReadShardRequest{Shard: info.Shard})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		n := 0
		for {
			r, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				cancel()
				t.Fatalf("read shard %v: %v", info.Shard, err)
			}
			n += len(r.Data)
		}
		cancel()
		if uint64(n) != info.Length {
			t.Fatalf("shard %v: read %d bytes of %d", info.Shard, n, info.Length)
		}
		total += n
	}
	return total
}

// TestPartitionChunkserverFromMasters cuts a chunkserver off from the
// masters (and the other chunkservers): after the dead-after grace the
// master takes it for dead and rebuilds its shards elsewhere, while the
// test process can still read them from it. Healed, it comes back live
// and the copies it holds in surplus are deleted.
func TestPartitionChunkserverFromMasters(t *testing.T) {
	c := startRepair(t, 4, func(cfg *cluster.Config) { cfg.DefaultLayout = "RS(2,1)" })
	cl := dialImpatient(t, c)
	files := writeFiles(t, cl, "/d", 4, 4)
	cut, most := -1, 0
	for i, cs := range c.Chunkservers() {
		if n := len(storedShards(t, cs.Addr)); n > most {
			cut, most = i, n
		}
	}
	if cut < 0 {
		t.Fatal("no chunkserver holds a shard")
	}
	cs := c.Chunkservers()[cut]
	if err := c.Partition([]cluster.Node{cluster.Chunkserver(cut)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, cs.ID+" to be declared dead", func() (bool, string) {
		s := chunkserverState(t, cl, cs.ID)
		return s == "dead", s
	})
	if n := readShards(t, cs.Addr); n == 0 {
		t.Fatalf("read nothing from the partitioned %s", cs.ID)
	}
	waitFor(t, 60*time.Second, "full redundancy without "+cs.ID, func() (bool, string) {
		bad := unhealthy(fsck(t, cl, "/"))
		return bad == "", bad
	})
	if n := len(storedShards(t, cs.Addr)); n != most {
		t.Fatalf("the partitioned %s holds %d shards, not its %d: orders reached it", cs.ID, n, most)
	}
	checkFiles(t, cl, files)

	c.Heal()
	waitFor(t, 30*time.Second, cs.ID+" to be live and its surplus shards deleted", func() (bool, string) {
		s := chunkserverState(t, cl, cs.ID)
		n := len(storedShards(t, cs.Addr))
		return s == "live" && n == 0, fmt.Sprintf("%s, %d shards left", s, n)
	})
	waitHealthy(t, cl, "/")
	checkFiles(t, cl, files)
}
