package master

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// benchClients is the number of concurrent clients in the benchmarks.
const benchClients = 64

// benchConns spreads the clients over this many gRPC connections.
const benchConns = 8

// runClients runs benchClients goroutines that together call op b.N
// times; op gets the client number and the call number.
func runClients(b *testing.B, op func(client, n int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	for i := 0; i < benchClients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				n := int(next.Add(1)) - 1
				if n >= b.N {
					return
				}
				if err := op(i, n); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// benchTargets returns benchConns Master clients of the leader, over gRPC
// or (direct) calling the service in process, which shows what the master
// does without the RPC cost.
func benchTargets(b *testing.B, c *cluster, direct bool) []benchTarget {
	leader := c.nodes[c.leader()]
	out := make([]benchTarget, benchConns)
	for i := range out {
		if direct {
			out[i] = &masterService{s: leader.srv}
			continue
		}
		cc, err := grpc.NewClient(leader.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		out[i] = clientAsServer{masterpb.NewMasterClient(cc)}
	}
	return out
}

// benchTarget is what the benchmarks call: a gRPC client or the service.
type benchTarget interface {
	Create(context.Context, *masterpb.CreateRequest) (*masterpb.CreateResponse, error)
	GetAttr(context.Context, *masterpb.GetAttrRequest) (*masterpb.GetAttrResponse, error)
}

// clientAsServer lets a gRPC client stand where the benchmark expects a
// server, for the two calls the benchmarks make.
type clientAsServer struct{ c masterpb.MasterClient }

func (c clientAsServer) Create(ctx context.Context, r *masterpb.CreateRequest) (*masterpb.CreateResponse, error) {
	return c.c.Create(ctx, r)
}

func (c clientAsServer) GetAttr(ctx context.Context, r *masterpb.GetAttrRequest) (*masterpb.GetAttrResponse, error) {
	return c.c.GetAttr(ctx, r)
}

func BenchmarkCreate(b *testing.B) {
	for _, masters := range []int{1, 3} {
		for _, direct := range []bool{false, true} {
			path := "grpc"
			if direct {
				path = "direct"
			}
			b.Run(fmt.Sprintf("masters=%d/%s", masters, path), func(b *testing.B) {
				c := newCluster(b, masters, benchTweak)
				targets := benchTargets(b, c, direct)
				ctx := context.Background()
				runClients(b, func(client, n int) error {
					_, err := targets[client%benchConns].Create(ctx, &masterpb.CreateRequest{
						Header: header(), Parent: 1, Name: fmt.Sprintf("f%08d", n), Mode: 0o644, Exclusive: true})
					return err
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
				dumpMetrics(b, c.nodes[c.leader()].srv)
			})
		}
	}
}

func BenchmarkGetAttr(b *testing.B) {
	for _, masters := range []int{1, 3} {
		for _, direct := range []bool{false, true} {
			path := "grpc"
			if direct {
				path = "direct"
			}
			b.Run(fmt.Sprintf("masters=%d/%s", masters, path), func(b *testing.B) {
				c := newCluster(b, masters, nil)
				targets := benchTargets(b, c, direct)
				ctx := context.Background()
				const files = 1000
				inodes := make([]uint64, files)
				for i := range inodes {
					r, err := targets[0].Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: fmt.Sprint("g", i), Mode: 0o644})
					if err != nil {
						b.Fatal(err)
					}
					inodes[i] = r.Attr.Inode
				}
				runClients(b, func(client, n int) error {
					_, err := targets[client%benchConns].GetAttr(ctx, &masterpb.GetAttrRequest{Inode: inodes[rand.IntN(files)]})
					return err
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "getattrs/s")
			})
		}
	}
}

func dumpMetrics(b *testing.B, s *Server) {
	mfs, err := s.cfg.Gatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil && h.GetSampleCount() > 0 {
				b.Logf("%s: n=%d mean=%.6g", mf.GetName(), h.GetSampleCount(), h.GetSampleSum()/float64(h.GetSampleCount()))
			}
		}
	}
}

// benchTweak applies CAIRN_BENCH_INFLIGHT and CAIRN_BENCH_BATCH.
func benchTweak(cfg *Config) {
	if v, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_INFLIGHT")); err == nil {
		cfg.MaxInFlight = v
	}
	if v, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_BATCH")); err == nil {
		cfg.MaxBatch = v
	}
	if v, err := time.ParseDuration(os.Getenv("CAIRN_BENCH_LINGER")); err == nil {
		cfg.BatchLinger = v
	}
}

// BenchmarkCreateScale creates CAIRN_BENCH_SCALE_FILES files (default
// 200,000; the figure is 2,000,000) through gRPC in directories of
// 10,000 on one master, from benchClients clients, and reports the create
// rate of the first and the last tenth, their ratio, and the peak RSS of
// the process (the master, its Pebble and the clients). Run it once:
//
//	CAIRN_BENCH_SCALE_FILES=2000000 go test -run '^$' -bench CreateScale -benchtime 1x -timeout 60m ./master/
func BenchmarkCreateScale(b *testing.B) {
	files := 200_000
	if v := os.Getenv("CAIRN_BENCH_SCALE_FILES"); v != "" {
		var err error
		if files, err = strconv.Atoi(v); err != nil || files < 100_000 {
			b.Fatalf("CAIRN_BENCH_SCALE_FILES=%q: want a number of at least 100000", v)
		}
	}
	const perDir = 10_000
	c := newCluster(b, 1, benchTweak)
	targets := benchTargets(b, c, false)
	ctx := context.Background()
	dirs := make([]uint64, (files+perDir-1)/perDir)
	for i := range dirs {
		r, err := targets[0].(clientAsServer).c.Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: fmt.Sprintf("d%04d", i), Mode: 0o755})
		if err != nil {
			b.Fatal(err)
		}
		dirs[i] = r.Attr.Inode
	}
	tenth := files / 10
	var done atomic.Int64
	var mu sync.Mutex
	stamps := map[int64]time.Time{}
	mark := func(n int64) {
		if n == int64(tenth) || n == int64(files-tenth) || n == int64(files) {
			mu.Lock()
			stamps[n] = time.Now()
			mu.Unlock()
		}
	}
	for range b.N {
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Pointer[error]
		for i := range benchClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := int(next.Add(1)) - 1
					if n >= files {
						return
					}
					_, err := targets[i%benchConns].Create(ctx, &masterpb.CreateRequest{
						Header: header(), Parent: dirs[n/perDir], Name: fmt.Sprintf("f%08d", n), Mode: 0o644, Exclusive: true})
					if err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
					mark(done.Add(1))
				}
			}()
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			b.Fatal(*err)
		}
		first := float64(tenth) / stamps[int64(tenth)].Sub(start).Seconds()
		last := float64(tenth) / stamps[int64(files)].Sub(stamps[int64(files-tenth)]).Seconds()
		b.ReportMetric(first, "first-tenth-creates/s")
		b.ReportMetric(last, "last-tenth-creates/s")
		b.ReportMetric(last/first, "last/first")
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
	b.ReportMetric(float64(files), "files")
}
