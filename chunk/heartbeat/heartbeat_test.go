package heartbeat_test

import (
	"context"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/chunk/heartbeat"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeRegistry is a master's Registry service. A follower answers every
// call NotLeader naming leader; the leader forgets the chunkserver after
// its first heartbeat, once (to test re-registration).
type fakeRegistry struct {
	masterpb.UnimplementedRegistryServer
	leader string // "" on the leader itself

	mu                        sync.Mutex
	registers, beats, reports int
	forgot                    bool
	shards                    int
}

func (f *fakeRegistry) refuse() error {
	if f.leader != "" {
		return masterpb.NotLeaderError(f.leader, "not the leader")
	}
	return nil
}

func (f *fakeRegistry) Register(_ context.Context, req *masterpb.RegisterRequest) (*masterpb.RegisterResponse, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers++
	return &masterpb.RegisterResponse{HeartbeatIntervalMs: 5}, nil
}

func (f *fakeRegistry) Heartbeat(_ context.Context, req *masterpb.HeartbeatRequest) (*masterpb.HeartbeatResponse, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beats++
	if !f.forgot {
		f.forgot = true
		return nil, masterpb.ErrnoError(syscall.ENOENT, "unknown chunkserver; register again")
	}
	return &masterpb.HeartbeatResponse{}, nil
}

func (f *fakeRegistry) FullReport(stream masterpb.Registry_FullReportServer) error {
	if err := f.refuse(); err != nil {
		return err
	}
	n := 0
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		n += len(msg.Shards)
		if msg.Last {
			f.mu.Lock()
			f.reports++
			f.shards = n
			f.mu.Unlock()
			return stream.SendAndClose(&masterpb.FullReportResponse{})
		}
	}
}

func (f *fakeRegistry) counts() (registers, beats, reports, shards int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.registers, f.beats, f.reports, f.shards
}

func serve(t *testing.T, r *fakeRegistry) string {
	t.Helper()
	return serveRegistry(t, r)
}

func serveRegistry(t *testing.T, r masterpb.RegistryServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	masterpb.RegisterRegistryServer(srv, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return l.Addr().String()
}

type node struct{}

func (node) ID() string                      { return "cs-1" }
func (node) Addr() string                    { return "127.0.0.1:1" }
func (node) Usage() (uint64, uint64, uint64) { return 100, 50, 2 }

func TestRegistersAndFollowsLeader(t *testing.T) {
	leader := &fakeRegistry{}
	leaderAddr := serve(t, leader)
	follower := &fakeRegistry{leader: leaderAddr}
	followerAddr := serve(t, follower)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- heartbeat.Run(ctx, heartbeat.Config{
			Masters:            []string{followerAddr},
			Node:               node{},
			FullReportInterval: time.Millisecond,
			ListShards: func(ctx context.Context, fn func([]*chunkpb.ShardInfo) error) error {
				return fn([]*chunkpb.ShardInfo{{Shard: &chunkpb.ShardID{SliceId: 1}}, {Shard: &chunkpb.ShardID{SliceId: 2}}})
			},
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		registers, beats, reports, shards := leader.counts()
		if registers >= 2 && beats >= 3 && reports >= 4 {
			if shards != 2 {
				t.Fatalf("full report had %d shards, want 2", shards)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader saw %d registrations, %d heartbeats, %d reports; want a re-registration after NotFound and periodic reports", registers, beats, reports)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadConfig(t *testing.T) {
	if err := heartbeat.Run(context.Background(), heartbeat.Config{Node: node{}}); err == nil {
		t.Fatal("Run without masters succeeded")
	}
}
