package master

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/proto/masterpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

// testLogger discards logs unless CAIRN_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("CAIRN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// node is one master of a test cluster, restartable on the same
// directory and addresses.
type node struct {
	id                 string
	dir                string
	raftAddr, grpcAddr string
	srv                *Server
	cancel             context.CancelFunc
	done               chan error
}

// cluster is a set of masters over loopback in this process.
type cluster struct {
	t      testing.TB
	nodes  map[string]*node
	order  []string
	tweak  func(*Config)
	conns  map[string]*grpc.ClientConn
	connMu sync.Mutex
}

// newCluster creates n masters m1..mn that bootstrap together, and starts
// them. tweak, if not nil, adjusts every Config.
func newCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	c := &cluster{t: t, nodes: map[string]*node{}, tweak: tweak, conns: map[string]*grpc.ClientConn{}}
	var peers []Peer
	lis := map[string][2]net.Listener{}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("m%d", i)
		rl, gl := listenLocal(t, "127.0.0.1:0"), listenLocal(t, "127.0.0.1:0")
		nd := &node{id: id, dir: filepath.Join(t.TempDir(), id), raftAddr: rl.Addr().String(), grpcAddr: gl.Addr().String()}
		c.nodes[id] = nd
		c.order = append(c.order, id)
		peers = append(peers, Peer{ID: id, RaftAddr: nd.raftAddr})
		lis[id] = [2]net.Listener{rl, gl}
	}
	for _, id := range c.order {
		c.startWith(c.nodes[id], lis[id][0], lis[id][1], func(cfg *Config) {
			if n > 1 {
				cfg.Peers = peers
			}
		})
	}
	t.Cleanup(c.close)
	return c
}

func listenLocal(t testing.TB, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	// A restarted master rebinds its old port; the kernel may take a
	// moment to release it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (c *cluster) config(nd *node, rl, gl net.Listener) Config {
	cfg := Config{
		ID:           nd.id,
		Dir:          nd.dir,
		RaftListener: rl,
		GRPCListener: gl,
		ClusterKey:   testKey,
		Logger:       testLogger(),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

func (c *cluster) startWith(nd *node, rl, gl net.Listener, adjust func(*Config)) {
	c.t.Helper()
	cfg := c.config(nd, rl, gl)
	if adjust != nil {
		adjust(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		rl.Close()
		gl.Close()
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.srv, nd.cancel, nd.done = srv, cancel, make(chan error, 1)
	go func() { nd.done <- srv.Run(ctx) }()
}

// restart starts a stopped master again on its directory and addresses.
func (c *cluster) restart(id string) {
	c.t.Helper()
	nd := c.nodes[id]
	if nd.srv != nil {
		c.t.Fatalf("%s is running", id)
	}
	c.startWith(nd, listenLocal(c.t, nd.raftAddr), listenLocal(c.t, nd.grpcAddr), nil)
}

// stop stops a master and waits for Run to return.
func (c *cluster) stop(id string) {
	c.t.Helper()
	nd := c.nodes[id]
	if nd.srv == nil {
		return
	}
	nd.cancel()
	select {
	case err := <-nd.done:
		if err != nil {
			c.t.Errorf("%s: Run: %v", id, err)
		}
	case <-time.After(30 * time.Second):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		c.t.Fatalf("%s did not stop", id)
	}
	nd.srv = nil
}

func (c *cluster) close() {
	for _, id := range c.order {
		c.stop(id)
	}
	c.connMu.Lock()
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
	c.connMu.Unlock()
}

// leader waits for a ready leader and returns its ID.
func (c *cluster) leader() string {
	c.t.Helper()
	var id string
	waitFor(c.t, 10*time.Second, "a leader", func() bool {
		for _, nid := range c.order {
			if nd := c.nodes[nid]; nd.srv != nil && nd.srv.IsLeader() {
				id = nid
				return true
			}
		}
		return false
	})
	return id
}

func (c *cluster) running() []*node {
	var out []*node
	for _, id := range c.order {
		if nd := c.nodes[id]; nd.srv != nil {
			out = append(out, nd)
		}
	}
	return out
}

// conn returns a shared client connection to addr.
func (c *cluster) conn(addr string) *grpc.ClientConn {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns[addr] = cc
	return cc
}

func (c *cluster) masterClient(id string) masterpb.MasterClient {
	return masterpb.NewMasterClient(c.conn(c.nodes[id].grpcAddr))
}

// call runs fn against the leader, following NotLeader answers and trying
// other masters while none is known, for up to 20 s. fn receives the
// connection to use; the request it sends must be the same each time
// (same request ID) so that a retry is applied once.
func (c *cluster) call(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	addrs := make([]string, 0, len(c.order))
	for _, id := range c.order {
		addrs = append(addrs, c.nodes[id].grpcAddr)
	}
	addr := addrs[0]
	next := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(cctx, c.conn(addr))
		cancel()
		if err == nil {
			return nil
		}
		leader, notLeader := masterpb.LeaderAddressOf(err)
		retry := notLeader || status.Code(err) == codes.DeadlineExceeded
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		if leader != "" && leader != addr {
			addr = leader
			continue
		}
		next = (next + 1) % len(addrs)
		addr = addrs[next]
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func header() *masterpb.RequestHeader {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &masterpb.RequestHeader{RequestId: id, ClientId: "test"}
}

// tree is a namespace dump for comparisons: path -> attributes that must
// agree between replicas.
type treeEntry struct {
	inode, size, version uint64
	mode, nlink          uint32
	typ                  masterpb.FileType
	mtime                int64
}

// dumpTree walks the whole namespace of one master's state machine.
func dumpTree(t testing.TB, f *fsm.FSM) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	var walk func(dir uint64, path string)
	walk = func(dir uint64, path string) {
		after := ""
		for {
			entries, more, err := f.ReadDir(dir, after, fsm.MaxReadDirLimit, true)
			if err != nil {
				t.Fatalf("readdir %s: %v", path, err)
			}
			for _, e := range entries {
				p := path + "/" + e.Name
				a := e.Attr
				out[p] = treeEntry{inode: a.Inode, size: a.Size, version: a.Version, mode: a.Mode, nlink: a.Nlink, typ: a.Type, mtime: a.MtimeUnixNano}
				if e.Type == masterpb.FileType_FILE_TYPE_DIRECTORY {
					walk(e.Inode, p)
				}
				after = e.Name
			}
			if !more {
				return
			}
		}
	}
	walk(fsm.RootInode, "")
	return out
}

func sameTree(a, b map[string]treeEntry) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d entries vs %d", len(a), len(b))
	}
	for p, e := range a {
		if o, ok := b[p]; !ok || o != e {
			return fmt.Errorf("%s: %+v vs %+v", p, e, o)
		}
	}
	return nil
}

// errno asserts err carries the given code and errno.
func wantErrno(t testing.TB, err error, code codes.Code, errno error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v / %v", code, errno)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("code %v, want %v (%v)", got, code, err)
	}
	if got := masterpb.ErrnoOf(err); !errors.Is(got, errno) {
		t.Fatalf("errno %v, want %v (%v)", got, errno, err)
	}
	if masterpb.DetailOf(err) == nil {
		t.Fatalf("no ErrorDetail in %v", err)
	}
}
