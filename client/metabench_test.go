package client_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
)

// The master's own benchmarks (go test -bench . ./master/) send one RPC
// per operation; these measure the same operations through the client
// library, as mounts and gateways make them: 64 callers over N Clients
// (like N processes), whose concurrent lookups and getattrs share
// BatchStat round trips and whose request IDs are the client's.
//
//	go test -run '^$' -bench 'Master(GetAttr|Create)' -benchtime 3s ./client/

const metaCallers = 64

func metaCluster(b *testing.B, masters int) *cluster.Cluster {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: b.TempDir(), Masters: masters, Chunkservers: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	return c
}

// metaClients returns n Clients of c.
func metaClients(b *testing.B, c *cluster.Cluster, n int) []client.Inodes {
	out := make([]client.Inodes, n)
	for i := range out {
		cl, err := client.Dial(context.Background(), client.ClientConfig{Masters: c.MasterAddrs()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cl.Close() })
		out[i] = cl.Inodes()
	}
	return out
}

// runCallers runs metaCallers goroutines that together call op b.N times;
// caller i uses clients[i%len(clients)].
func runCallers(b *testing.B, clients []client.Inodes, op func(in client.Inodes, n int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	for i := range metaCallers {
		wg.Go(func() {
			for {
				n := int(next.Add(1)) - 1
				if n >= b.N {
					return
				}
				if err := op(clients[i%len(clients)], n); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

func BenchmarkMasterGetAttr(b *testing.B) {
	for _, masters := range []int{1, 3} {
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("masters=%d/clients=%d", masters, n), func(b *testing.B) {
				c := metaCluster(b, masters)
				clients := metaClients(b, c, n)
				ctx := context.Background()
				const files = 1000
				inodes := make([]uint64, files)
				for i := range inodes {
					a, _, err := clients[0].Create(ctx, client.RootInode, fmt.Sprint("g", i), 0o644, false, false)
					if err != nil {
						b.Fatal(err)
					}
					inodes[i] = a.Inode
				}
				runCallers(b, clients, func(in client.Inodes, n int) error {
					_, err := in.GetAttr(ctx, inodes[n%files])
					return err
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "getattrs/s")
			})
		}
	}
}

func BenchmarkMasterCreate(b *testing.B) {
	for _, masters := range []int{1, 3} {
		b.Run(fmt.Sprintf("masters=%d/clients=8", masters), func(b *testing.B) {
			c := metaCluster(b, masters)
			clients := metaClients(b, c, 8)
			ctx := context.Background()
			runCallers(b, clients, func(in client.Inodes, n int) error {
				_, _, err := in.Create(ctx, client.RootInode, fmt.Sprintf("f%08d", n), 0o644, true, false)
				return err
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
