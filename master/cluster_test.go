package master

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// createLoad runs clients goroutines, each creating files <prefix><i>-<n> in the
// root directory through the leader (following NotLeader, reusing request
// IDs on retries) until stop is closed or each has made max. It returns
// the acknowledged names with their inodes.
func createLoad(t *testing.T, c *cluster, prefix string, clients, max int, stop <-chan struct{}, created *atomic.Int64) map[string]uint64 {
	t.Helper()
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; n < max; n++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("%s%02d-%06d", prefix, i, n)
				req := &masterpb.CreateRequest{Header: header(), Parent: fsm.RootInode, Name: name, Mode: 0o644, Exclusive: true}
				var resp *masterpb.CreateResponse
				err := c.call(context.Background(), func(ctx context.Context, cc *grpc.ClientConn) error {
					var err error
					resp, err = masterpb.NewMasterClient(cc).Create(ctx, req)
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
				mu.Lock()
				acked[name] = resp.Attr.Inode
				mu.Unlock()
				if created != nil {
					created.Add(1)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return acked
}

// checkAcked verifies that every acknowledged create is in the leader's
// root directory with its inode, and that no inode appears twice.
func checkAcked(t *testing.T, c *cluster, acked map[string]uint64) {
	t.Helper()
	leader := c.nodes[c.leader()].srv
	tree := dumpTree(t, leader.fsm)
	inodes := map[uint64]string{}
	for p, e := range tree {
		if other, dup := inodes[e.inode]; dup {
			t.Errorf("inode %d is both %s and %s", e.inode, other, p)
		}
		inodes[e.inode] = p
	}
	for name, ino := range acked {
		e, ok := tree["/"+name]
		if !ok {
			t.Errorf("acknowledged create %s is missing", name)
			continue
		}
		if e.inode != ino {
			t.Errorf("%s: inode %d, acknowledged %d", name, e.inode, ino)
		}
	}
	st, err := leader.fsm.StatFS()
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range tree {
		if e.typ == masterpb.FileType_FILE_TYPE_REGULAR {
			files++
		}
	}
	if int(st.RegularFiles) != files {
		t.Errorf("stats count %d files, the tree has %d", st.RegularFiles, files)
	}
}

// TestLeaderFailover kills the leader of three masters while 16 clients
// create files: a new leader must emerge within 3 s, and every
// acknowledged create must be there exactly once.
func TestLeaderFailover(t *testing.T) {
	c := newCluster(t, 3, nil)
	old := c.leader()

	var created atomic.Int64
	stop := make(chan struct{})
	var acked map[string]uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		acked = createLoad(t, c, "c", 16, 1<<30, stop, &created)
	}()
	waitFor(t, 20*time.Second, "creates before the kill", func() bool { return created.Load() >= 500 })

	killed := time.Now()
	c.stop(old)
	var elected time.Duration
	waitFor(t, 10*time.Second, "a new leader", func() bool {
		for _, nd := range c.running() {
			if nd.srv.IsLeader() {
				elected = time.Since(killed)
				return true
			}
		}
		return false
	})
	t.Logf("new leader %v after the kill", elected)
	if elected > 3*time.Second {
		t.Errorf("new leader took %v, want at most 3s", elected)
	}
	before := created.Load()
	waitFor(t, 20*time.Second, "creates after the failover", func() bool { return created.Load() >= before+500 })
	close(stop)
	<-done
	t.Logf("%d creates acknowledged", len(acked))
	checkAcked(t, c, acked)

	// The old leader comes back as a follower and catches up.
	c.restart(old)
	leader := c.nodes[c.leader()].srv
	want := dumpTree(t, leader.fsm)
	waitFor(t, 20*time.Second, "the old leader to catch up", func() bool {
		return sameTree(want, dumpTree(t, c.nodes[old].srv.fsm)) == nil
	})
}

// TestRestartAll restarts all three masters: the namespace and the applied
// index come back identical on every replica.
func TestRestartAll(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.leader()
	acked := createLoad(t, c, "c", 8, 50, nil, nil)
	ctx := context.Background()
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := masterpb.NewMasterClient(cc).Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: "dir", Mode: 0o700})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A chunkserver registered with this leader (which records it in the
	// replicated chunkserver directory)...
	heartbeat := func() error {
		return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := masterpb.NewRegistryClient(cc).Heartbeat(ctx, &masterpb.HeartbeatRequest{Id: "cs-1", CapacityBytes: 1 << 40, FreeBytes: 1 << 40})
			return err
		})
	}
	register := func() error {
		return c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := masterpb.NewRegistryClient(cc).Register(ctx, &masterpb.RegisterRequest{Id: "cs-1", Address: "127.0.0.1:1", CapacityBytes: 1 << 40, FreeBytes: 1 << 40})
			return err
		})
	}
	if err := register(); err != nil {
		t.Fatal(err)
	}
	if err := heartbeat(); err != nil {
		t.Fatal(err)
	}

	// Let every replica apply everything, then compare.
	leader := c.nodes[c.leader()].srv
	want := dumpTree(t, leader.fsm)
	waitFor(t, 10*time.Second, "replicas to converge", func() bool {
		for _, nd := range c.running() {
			if nd.srv.AppliedIndex() != leader.AppliedIndex() {
				return false
			}
		}
		return true
	})
	index := leader.AppliedIndex()
	for _, nd := range c.running() {
		if err := sameTree(want, dumpTree(t, nd.srv.fsm)); err != nil {
			t.Fatalf("%s before restart: %v", nd.id, err)
		}
	}

	for _, id := range c.order {
		c.stop(id)
	}
	for _, id := range c.order {
		c.restart(id)
	}
	// Straight after the restart, before any new entry, each replica's
	// state is what it was.
	for _, nd := range c.running() {
		if got := nd.srv.fsm.AppliedIndex(); got > index {
			t.Errorf("%s: applied index %d after restart, was %d", nd.id, got, index)
		}
		if err := sameTree(want, dumpTree(t, nd.srv.fsm)); err != nil {
			t.Errorf("%s after restart: %v", nd.id, err)
		}
	}
	leader = c.nodes[c.leader()].srv
	waitFor(t, 10*time.Second, "replicas to apply the new term's entry", func() bool {
		for _, nd := range c.running() {
			if nd.srv.fsm.AppliedIndex() != leader.fsm.AppliedIndex() || leader.fsm.AppliedIndex() <= index {
				return false
			}
		}
		return true
	})
	for _, nd := range c.running() {
		if err := sameTree(want, dumpTree(t, nd.srv.fsm)); err != nil {
			t.Errorf("%s: %v", nd.id, err)
		}
	}
	checkAcked(t, c, acked)

	// ...is unknown to the new leader (soft state), told to register
	// again, and then asked for a full report.
	wantErrno(t, heartbeat(), codes.NotFound, syscall.ENOENT)
	if err := register(); err != nil {
		t.Fatal(err)
	}
	err = c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		hb, err := masterpb.NewRegistryClient(cc).Heartbeat(ctx, &masterpb.HeartbeatRequest{Id: "cs-1"})
		if err == nil && !hb.FullReportWanted {
			t.Error("no full report asked for after re-registering")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotCatchUp keeps a follower stopped while the others apply many
// creates and truncate their logs; when it returns it catches up from a
// snapshot streamed by the leader.
func TestSnapshotCatchUp(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 32
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	leaderID := c.leader()
	var follower string
	for _, id := range c.order {
		if id != leaderID {
			follower = id
			break
		}
	}
	lastSeen := c.nodes[follower].srv.raft.LastIndex()
	c.stop(follower)

	total := 20000
	if raceEnabled {
		total = 3000
	}
	start := time.Now()
	acked := createLoad(t, c, "c", 64, total/64, nil, nil)
	t.Logf("%d creates in %v with a follower down", len(acked), time.Since(start))

	leader := c.nodes[c.leader()].srv
	waitFor(t, 20*time.Second, "the leader to compact its log past the follower", func() bool {
		first, err := leader.st.wal.FirstIndex()
		return err == nil && first > lastSeen+1
	})
	c.restart(follower)
	want := dumpTree(t, leader.fsm)
	waitFor(t, 30*time.Second, "the follower to catch up", func() bool {
		return c.nodes[follower].srv.AppliedIndex() >= leader.AppliedIndex()
	})
	if err := sameTree(want, dumpTree(t, c.nodes[follower].srv.fsm)); err != nil {
		t.Fatalf("follower state differs: %v", err)
	}
	if err := c.nodes[follower].srv.fsm.Verify(); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, c, acked)
}

// TestMembership adds a fourth master at runtime, lets it catch up, and
// removes it.
func TestMembership(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.leader()
	createLoad(t, c, "a", 4, 25, nil, nil)

	// Start m4 empty, waiting to be added.
	rl, gl := listenLocal(t, "127.0.0.1:0"), listenLocal(t, "127.0.0.1:0")
	nd := &node{id: "m4", dir: t.TempDir(), raftAddr: rl.Addr().String(), grpcAddr: gl.Addr().String()}
	c.nodes["m4"] = nd
	c.order = append(c.order, "m4")
	c.startWith(nd, rl, gl, func(cfg *Config) { cfg.Join = true })

	ctx := context.Background()
	err := c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := masterpb.NewAdminClient(cc).AddMaster(ctx, &masterpb.AddMasterRequest{Id: "m4", Address: nd.raftAddr, GrpcAddress: nd.grpcAddr})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	leader := c.nodes[c.leader()].srv
	want := dumpTree(t, leader.fsm)
	waitFor(t, 20*time.Second, "m4 to catch up", func() bool {
		return sameTree(want, dumpTree(t, nd.srv.fsm)) == nil
	})
	st, err := c.masterClient("m4").Status(ctx, &masterpb.StatusRequest{})
	if err != nil || len(st.Masters) != 4 {
		t.Fatalf("status on m4: %v %v", st, err)
	}
	// m4 is a follower: it sends clients to the leader.
	_, err = c.masterClient("m4").GetAttr(ctx, &masterpb.GetAttrRequest{Inode: 1})
	if addr, ok := masterpb.LeaderAddressOf(err); !ok || addr != leader.Addr() {
		t.Fatalf("m4 answered %v, want NotLeader with %s", err, leader.Addr())
	}
	// Writes commit with m4 in the group.
	createLoad(t, c, "b", 2, 10, nil, nil)

	err = c.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := masterpb.NewAdminClient(cc).RemoveMaster(ctx, &masterpb.RemoveMasterRequest{Id: "m4"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f := leader.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Configuration().Servers); n != 3 {
		t.Fatalf("%d members after removing m4", n)
	}
	c.stop("m4")
	createLoad(t, c, "c", 2, 10, nil, nil)
}

// TestSoleVoterReads checks when reads skip the leader's quorum round: on
// a one-master group only, and not from the moment a second voter is being
// added until it is removed again; reads are served throughout.
func TestSoleVoterReads(t *testing.T) {
	c := newCluster(t, 1, nil)
	m1 := c.nodes[c.leader()].srv
	ctx := context.Background()
	read := func(when string) {
		t.Helper()
		if _, err := c.masterClient("m1").GetAttr(ctx, &masterpb.GetAttrRequest{Inode: 1}); err != nil {
			t.Fatalf("read %s: %v", when, err)
		}
	}
	if !m1.reads.soleVoter() {
		t.Fatal("the only master is not taken for the sole voter")
	}
	read("alone")

	rl, gl := listenLocal(t, "127.0.0.1:0"), listenLocal(t, "127.0.0.1:0")
	nd := &node{id: "m2", dir: t.TempDir(), raftAddr: rl.Addr().String(), grpcAddr: gl.Addr().String()}
	c.nodes["m2"] = nd
	c.order = append(c.order, "m2")
	c.startWith(nd, rl, gl, func(cfg *Config) { cfg.Join = true })
	admin := masterpb.NewAdminClient(c.conn(m1.Addr()))
	if _, err := admin.AddMaster(ctx, &masterpb.AddMasterRequest{Id: "m2", Address: nd.raftAddr, GrpcAddress: nd.grpcAddr}); err != nil {
		t.Fatal(err)
	}
	if m1.reads.soleVoter() {
		t.Fatal("sole voter with a second voter in the group")
	}
	read("with two voters")

	if _, err := admin.RemoveMaster(ctx, &masterpb.RemoveMasterRequest{Id: "m2"}); err != nil {
		t.Fatal(err)
	}
	c.stop("m2")
	waitFor(t, 10*time.Second, "m1 to be the sole voter again", m1.reads.soleVoter)
	read("alone again")

	three := newCluster(t, 3, nil)
	if three.nodes[three.leader()].srv.reads.soleVoter() {
		t.Error("the leader of three masters taken for the sole voter")
	}
}
