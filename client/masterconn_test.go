package client_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// scriptedMaster answers Mkdir with the next error of its script (nil:
// success) and records the request IDs it saw.
type scriptedMaster struct {
	masterpb.UnimplementedMasterServer
	mu     sync.Mutex
	script []error
	ids    [][]byte
}

func (s *scriptedMaster) Mkdir(_ context.Context, req *masterpb.MkdirRequest) (*masterpb.MkdirResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, req.Header.GetRequestId())
	if len(s.script) == 0 {
		return &masterpb.MkdirResponse{Attr: &masterpb.Attr{Inode: 7}}, nil
	}
	err := s.script[0]
	s.script = s.script[1:]
	return nil, err
}

func (s *scriptedMaster) calls() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.ids...)
}

func serveScripted(t *testing.T, m *scriptedMaster) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	masterpb.RegisterMasterServer(srv, m)
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

// TestMasterConnRetries follows a NotLeader answer to the leader, retries
// Unavailable with backoff, and sends the same request ID every time.
func TestMasterConnRetries(t *testing.T) {
	leader := &scriptedMaster{script: []error{
		masterpb.NotLeaderError("", "election in progress"),
		status.Error(codes.Unavailable, "busy"),
	}}
	leaderAddr := serveScripted(t, leader)
	follower := &scriptedMaster{script: []error{
		masterpb.NotLeaderError(leaderAddr, "not the leader"),
		masterpb.NotLeaderError(leaderAddr, "not the leader"),
		masterpb.NotLeaderError(leaderAddr, "not the leader"),
	}}
	followerAddr := serveScripted(t, follower)

	conn, err := client.NewMasterConn(client.MasterConnConfig{Masters: []string{followerAddr}, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &masterpb.MkdirRequest{Header: &masterpb.RequestHeader{RequestId: []byte("req-1")}, Parent: 1, Name: "d"}
	var resp *masterpb.MkdirResponse
	err = conn.Do(context.Background(), func(ctx context.Context, mc masterpb.MasterClient) error {
		var err error
		resp, err = mc.Mkdir(ctx, req)
		return err
	})
	if err != nil || resp.Attr.GetInode() != 7 {
		t.Fatalf("Mkdir: %v, %v", resp, err)
	}
	all := append(follower.calls(), leader.calls()...)
	if len(leader.calls()) < 3 {
		t.Fatalf("leader saw %d calls, want 3 (two refusals, then success)", len(leader.calls()))
	}
	for _, id := range all {
		if !bytes.Equal(id, []byte("req-1")) {
			t.Fatalf("request IDs %q: a retry changed the ID", all)
		}
	}
}

// TestMasterConnGivesUp bounds retries by RetryTimeout and returns the
// last error; errors that are the file system's answer are not retried.
func TestMasterConnGivesUp(t *testing.T) {
	down := &scriptedMaster{}
	for range 1000 {
		down.script = append(down.script, status.Error(codes.Unavailable, "down"))
	}
	addr := serveScripted(t, down)
	// RetryTimeout leaves room for the first attempt even on a loaded CI
	// machine (a 2 s bound once expired before the first dial finished,
	// leaving no answer to return), and no attempt may end by CallTimeout
	// instead, which would make a timeout the last answer.
	conn, err := client.NewMasterConn(client.MasterConnConfig{Masters: []string{addr}, RetryTimeout: 5 * time.Second, CallTimeout: time.Minute,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mkdir := func(ctx context.Context, mc masterpb.MasterClient) error {
		_, err := mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: &masterpb.RequestHeader{RequestId: []byte("x")}})
		return err
	}
	start := time.Now()
	err = conn.Do(context.Background(), mkdir)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v, want the last Unavailable", err)
	}
	// The bound is generous: a loaded CI machine may be slow to dial, and
	// an attempt in flight when the time runs out is allowed to finish.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("gave up after %v, want about 5s", d)
	}
	n := len(down.calls())
	if n < 3 {
		t.Fatalf("%d attempts, want several", n)
	}

	exists := &scriptedMaster{script: []error{masterpb.ErrnoError(syscall.EEXIST, "exists")}}
	conn2, err := client.NewMasterConn(client.MasterConnConfig{Masters: []string{serveScripted(t, exists)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	err = conn2.Do(context.Background(), mkdir)
	if masterpb.ErrnoOf(err) != syscall.EEXIST || len(exists.calls()) != 1 {
		t.Fatalf("EEXIST: %v after %d calls, want one call", err, len(exists.calls()))
	}
	if !errors.Is(syscall.EEXIST, fs.ErrExist) {
		t.Fatal("errno mapping assumption broken")
	}
}
