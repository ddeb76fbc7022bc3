package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// statMaster answers GetAttr of inode i with size 10*i and Lookup of name
// "fN" with inode N; other names and inode 0 are ENOENT. Single calls wait
// for gate; it counts the calls of each kind.
type statMaster struct {
	masterpb.UnimplementedMasterServer
	gate chan struct{}

	mu      sync.Mutex
	singles int
	batches []int // sizes
}

func (m *statMaster) answer(q *masterpb.StatQuery) (*masterpb.Attr, error) {
	if q.Name == "" {
		if q.Inode == 0 {
			return nil, masterpb.ErrnoError(syscall.ENOENT, "no inode 0")
		}
		return &masterpb.Attr{Inode: q.Inode, Size: 10 * q.Inode}, nil
	}
	var n uint64
	if _, err := fmt.Sscanf(q.Name, "f%d", &n); err != nil {
		return nil, masterpb.ErrnoError(syscall.ENOENT, "no "+q.Name)
	}
	return &masterpb.Attr{Inode: n, Size: q.Inode}, nil
}

func (m *statMaster) single(ctx context.Context, q *masterpb.StatQuery) (*masterpb.Attr, error) {
	m.mu.Lock()
	m.singles++
	m.mu.Unlock()
	select {
	case <-m.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return m.answer(q)
}

// waitSingles waits until the master holds n single calls at its gate.
func (m *statMaster) waitSingles(t *testing.T, n int) {
	t.Helper()
	waitCount(t, "single calls the master holds", n, func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.singles
	})
}

// waitCount waits up to 30 s for count to return n.
func waitCount(t *testing.T, what string, n int, count func() int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := count()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s, want %d", got, what, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (m *statMaster) GetAttr(ctx context.Context, req *masterpb.GetAttrRequest) (*masterpb.GetAttrResponse, error) {
	a, err := m.single(ctx, &masterpb.StatQuery{Inode: req.Inode})
	return &masterpb.GetAttrResponse{Attr: a}, err
}

func (m *statMaster) Lookup(ctx context.Context, req *masterpb.LookupRequest) (*masterpb.LookupResponse, error) {
	a, err := m.single(ctx, &masterpb.StatQuery{Inode: req.Parent, Name: req.Name})
	return &masterpb.LookupResponse{Attr: a}, err
}

// batchingMaster is a statMaster that knows BatchStat.
type batchingMaster struct{ *statMaster }

func (m batchingMaster) BatchStat(_ context.Context, req *masterpb.BatchStatRequest) (*masterpb.BatchStatResponse, error) {
	m.mu.Lock()
	m.batches = append(m.batches, len(req.Queries))
	m.mu.Unlock()
	resp := &masterpb.BatchStatResponse{}
	for _, q := range req.Queries {
		a, err := m.answer(q)
		r := &masterpb.StatResult{Attr: a}
		if err != nil {
			r = &masterpb.StatResult{Errno: uint32(masterpb.ErrnoOf(err)), Error: err.Error()}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func serveStats(t *testing.T, srv masterpb.MasterServer) *MasterConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	masterpb.RegisterMasterServer(g, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(l)
	}()
	conn, err := NewMasterConn(MasterConnConfig{Masters: []string{l.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-done
	})
	return conn
}

// queued waits until b has n calls queued.
func queued(t *testing.T, b *statBatcher, n int) {
	t.Helper()
	waitCount(t, "calls queued", n, func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.mu.queue)
	})
}

// statQueries is a mix of getattrs and lookups, some failing with ENOENT.
func statQueries(n int) []*masterpb.StatQuery {
	qs := make([]*masterpb.StatQuery, n)
	for i := range qs {
		switch i % 4 {
		case 0:
			qs[i] = &masterpb.StatQuery{Inode: uint64(i + 1)}
		case 1:
			qs[i] = &masterpb.StatQuery{Inode: 7, Name: fmt.Sprintf("f%d", i)}
		case 2:
			qs[i] = &masterpb.StatQuery{Inode: 7, Name: fmt.Sprintf("missing%d", i)}
		case 3:
			qs[i] = &masterpb.StatQuery{Inode: 0}
		}
	}
	return qs
}

// runStats asks every query at once while the master holds single calls,
// and checks each answer against what the master would say.
func runStats(t *testing.T, m *statMaster, b *statBatcher, qs []*masterpb.StatQuery) {
	t.Helper()
	ctx := context.Background()
	type result struct {
		a   *masterpb.Attr
		err error
	}
	results := make([]result, len(qs))
	var wg sync.WaitGroup
	start := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := b.stat(ctx, qs[i])
			results[i] = result{a, err}
		}()
	}
	// The first statMaxRunning go alone and wait at the master; the rest
	// queue behind them.
	for i := range statMaxRunning {
		start(i)
	}
	m.waitSingles(t, statMaxRunning)
	for i := statMaxRunning; i < len(qs); i++ {
		start(i)
	}
	queued(t, b, len(qs)-statMaxRunning)
	close(m.gate)
	wg.Wait()
	for i, q := range qs {
		want, werr := m.answer(q)
		got := results[i]
		if werr != nil {
			if !errors.Is(got.err, syscall.ENOENT) && masterpb.ErrnoOf(got.err) != syscall.ENOENT {
				t.Errorf("query %d %v: got %v, %v; want ENOENT", i, q, got.a, got.err)
			}
			continue
		}
		if got.err != nil || got.a.GetInode() != want.Inode || got.a.GetSize() != want.Size {
			t.Errorf("query %d %v: got %v, %v; want %v", i, q, got.a, got.err, want)
		}
	}
}

func TestStatBatching(t *testing.T) {
	m := &statMaster{gate: make(chan struct{})}
	b := newStatBatcher(serveStats(t, batchingMaster{m}))
	defer b.close()
	qs := statQueries(2 + 300)
	runStats(t, m, b, qs)
	m.mu.Lock()
	defer m.mu.Unlock()
	// 300 queued calls: one batch of statMaxBatch and one of the rest, in
	// either order (both slots may drain).
	slices.Sort(m.batches)
	if m.singles != statMaxRunning || len(m.batches) != 2 || m.batches[0] != 300-statMaxBatch || m.batches[1] != statMaxBatch {
		t.Fatalf("master saw %d single calls and batches %v; want %d and [%d %d]", m.singles, m.batches, statMaxRunning, 300-statMaxBatch, statMaxBatch)
	}
}

// TestStatBatchingOldMaster checks that a master without BatchStat gets the
// queued calls one by one, and every later call goes alone.
func TestStatBatchingOldMaster(t *testing.T) {
	m := &statMaster{gate: make(chan struct{})}
	b := newStatBatcher(serveStats(t, m))
	defer b.close()
	runStats(t, m, b, statQueries(2+20))
	if !b.unbatched.Load() {
		t.Fatal("batching still on after Unimplemented")
	}
	if _, err := b.stat(context.Background(), &masterpb.StatQuery{Inode: 3}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.singles != 2+20+1 {
		t.Fatalf("master saw %d single calls, want %d", m.singles, 2+20+1)
	}
}

// TestStatWaitCanceled checks that a queued call gives up with its context
// and that close answers calls still queued.
func TestStatWaitCanceled(t *testing.T) {
	m := &statMaster{gate: make(chan struct{})}
	b := newStatBatcher(serveStats(t, batchingMaster{m}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range statMaxRunning {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.stat(ctx, &masterpb.StatQuery{Inode: 1})
		}()
	}
	m.waitSingles(t, statMaxRunning)
	wctx, wcancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.stat(wctx, &masterpb.StatQuery{Inode: 2})
		errc <- err
	}()
	queued(t, b, 1)
	wcancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait returned %v", err)
	}
	// Close with a call queued: the running ones end (their context ends
	// here), and the queued one is answered, not left waiting.
	go func() {
		_, err := b.stat(context.Background(), &masterpb.StatQuery{Inode: 3})
		errc <- err
	}()
	queued(t, b, 2)
	b.cancel()
	cancel()
	wg.Wait()
	b.close()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("call queued at close returned %v", err)
	}
}
