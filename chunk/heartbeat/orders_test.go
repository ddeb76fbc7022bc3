package heartbeat_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/chunk/heartbeat"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// orderRegistry hands out a fixed set of orders with every heartbeat (as
// a master does until it hears they are done) and records the outcomes.
type orderRegistry struct {
	masterpb.UnimplementedRegistryServer
	orders []*masterpb.Order

	mu      sync.Mutex
	done    map[uint64]string
	corrupt []*chunkpb.ShardID
}

func (f *orderRegistry) Register(context.Context, *masterpb.RegisterRequest) (*masterpb.RegisterResponse, error) {
	return &masterpb.RegisterResponse{HeartbeatIntervalMs: 5}, nil
}

func (f *orderRegistry) FullReport(stream masterpb.Registry_FullReportServer) error {
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		if msg.Last {
			return stream.SendAndClose(&masterpb.FullReportResponse{})
		}
	}
}

func (f *orderRegistry) Heartbeat(context.Context, *masterpb.HeartbeatRequest) (*masterpb.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*masterpb.Order
	for _, o := range f.orders {
		if _, ok := f.done[o.Id]; !ok {
			out = append(out, o)
		}
	}
	return &masterpb.HeartbeatResponse{Orders: out}, nil
}

func (f *orderRegistry) OrderDone(_ context.Context, req *masterpb.OrderDoneRequest) (*masterpb.OrderDoneResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.done[req.OrderId]; dup {
		return nil, errors.New("order reported twice")
	}
	f.done[req.OrderId] = req.Error
	return &masterpb.OrderDoneResponse{}, nil
}

func (f *orderRegistry) ReportCorrupt(_ context.Context, req *masterpb.ReportCorruptRequest) (*masterpb.ReportCorruptResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.corrupt = append(f.corrupt, req.Shards...)
	return &masterpb.ReportCorruptResponse{}, nil
}

// fakeExec records the orders it runs and the most it ran at once.
type fakeExec struct {
	mu          sync.Mutex
	running     int
	peak        int
	reconstruct map[uint64]int // slice -> runs
	deleted     int
}

func (e *fakeExec) enter() {
	e.mu.Lock()
	e.running++
	e.peak = max(e.peak, e.running)
	e.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	e.mu.Lock()
	e.running--
	e.mu.Unlock()
}

func (e *fakeExec) Reconstruct(_ context.Context, req *chunkpb.ReconstructShardRequest) error {
	e.enter()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reconstruct[req.Shard.SliceId]++
	if req.Shard.SliceId == 13 {
		return errors.New("sources unreadable")
	}
	return nil
}

func (e *fakeExec) Delete(context.Context, *chunkpb.DeleteShardRequest) error {
	e.enter()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deleted++
	return nil
}

func TestRunsOrdersAndReportsCorruption(t *testing.T) {
	reg := &orderRegistry{done: map[uint64]string{}}
	for i := uint64(1); i <= 16; i++ {
		o := &masterpb.Order{Id: i}
		if i%4 == 0 {
			o.Work = &masterpb.Order_Delete{Delete: &chunkpb.DeleteShardRequest{Shard: &chunkpb.ShardID{SliceId: i}}}
		} else {
			o.Work = &masterpb.Order_Reconstruct{Reconstruct: &chunkpb.ReconstructShardRequest{Shard: &chunkpb.ShardID{SliceId: 10 + i}}}
		}
		reg.orders = append(reg.orders, o)
	}
	addr := serveRegistry(t, reg)
	exec := &fakeExec{reconstruct: map[uint64]int{}}
	q := heartbeat.NewCorruptQueue()
	q.Add([]*chunkpb.ShardID{{SliceId: 5, Index: 1}})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- heartbeat.Run(ctx, heartbeat.Config{
			Masters: []string{addr}, Node: node{}, MaxOrders: 3, Executor: exec, Corrupt: q,
			ListShards: func(context.Context, func([]*chunkpb.ShardInfo) error) error { return nil },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	second := false
	for {
		reg.mu.Lock()
		n, c := len(reg.done), len(reg.corrupt)
		reg.mu.Unlock()
		if n == 16 && c >= 2 {
			break
		}
		if n == 16 && c == 1 && !second {
			// A finding while registered goes out at once too.
			second = true
			q.Add([]*chunkpb.ShardID{{SliceId: 6, Index: 2}})
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 16 orders reported done, %d corrupt shards reported", n, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	exec.mu.Lock()
	defer exec.mu.Unlock()
	if exec.peak > 3 {
		t.Errorf("%d orders ran at once, limit 3", exec.peak)
	}
	for slice, runs := range exec.reconstruct {
		if runs != 1 {
			t.Errorf("reconstruct of slice %d ran %d times; the master repeats orders until done, each must run once", slice, runs)
		}
	}
	if exec.deleted != 4 || len(exec.reconstruct) != 12 {
		t.Errorf("ran %d deletes and %d rebuilds, want 4 and 12", exec.deleted, len(exec.reconstruct))
	}
	if reg.done[3] == "" || reg.done[2] != "" {
		t.Errorf("outcomes %v: order 3 (slice 13) should fail, order 2 succeed", reg.done)
	}
	if len(reg.corrupt) != 2 || reg.corrupt[0].SliceId != 5 || reg.corrupt[1].SliceId != 6 {
		t.Errorf("corrupt reports %v", reg.corrupt)
	}
}
