package cluster_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/master"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// BenchmarkRepair loses one of seven chunkservers holding RS(4,2) shards
// of CAIRN_BENCH_REPAIR_MIB MiB of files (default 512) and measures, with
// the throttle off:
//
//   - lost-MiB: the shard bytes the killed server held;
//   - repair-MB/s: those bytes over the time from the server being
//     declared dead to fsck finding every file healthy;
//   - raw-MB/s: a sequential write with fsync of 256 MiB into the same
//     file system, in the same run, and ratio = repair ÷ raw;
//   - full-s: seconds from the kill to full redundancy (including the
//     one-second dead-server grace the benchmark configures);
//   - client-write-MB/s and client-read-MB/s: what one writer and one
//     reader got while the repair ran.
//
// Every node shares the machine's cores, so on a small machine the
// figures are bound by CPU:
//
//	go test -run x -bench Repair -benchtime 1x ./internal/cluster/
func BenchmarkRepair(b *testing.B) {
	total := 512 << 20
	if s := os.Getenv("CAIRN_BENCH_REPAIR_MIB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			total = n << 20
		}
	}
	for _, load := range []bool{false, true} {
		b.Run(map[bool]string{false: "idle", true: "client-load"}[load], func(b *testing.B) {
			for range b.N {
				benchRepairOnce(b, total, load)
			}
		})
	}
}

func benchRepairOnce(b *testing.B, total int, load bool) {
	dir := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := cluster.Start(ctx, cluster.Config{
		Dir: dir, Chunkservers: 7, HeartbeatInterval: 200 * time.Millisecond, DeadAfter: time.Second,
		FullReportInterval: -1,
		Repair:             master.RepairConfig{Interval: 200 * time.Millisecond, MaxOrders: 64},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	cancel()
	cl, err := client.Dial(context.Background(), client.ClientConfig{Masters: c.MasterAddrs(), IOTimeout: 60 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()

	const fileSize = 64 << 20
	buf := make([]byte, fileSize)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for i := 0; i < total/fileSize; i++ {
		writeFile(b, cl, fmt.Sprintf("/f%d", i), buf)
	}
	var lost int64
	for _, sh := range storedShards(b, c.Chunkservers()[0].Addr) {
		lost += int64(sh.Length)
	}
	raw := rawMBps(b, filepath.Join(dir, "raw"), 256<<20)

	killed := time.Now()
	if err := c.KillChunkserver(0); err != nil {
		b.Fatal(err)
	}
	for chunkserverState(b, cl, "cs1") != "dead" {
		time.Sleep(20 * time.Millisecond)
	}
	dead := time.Now()

	// Client load while the repair runs.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wrote, read atomic.Int64
	var wg sync.WaitGroup
	if load {
		wg.Add(2)
		go loadWrites(loadCtx, &wg, cl, buf[:16<<20], &wrote)
		go loadReads(loadCtx, &wg, cl, total/fileSize, &read)
	}
	for !allHealthy(b, cl) {
		time.Sleep(250 * time.Millisecond)
	}
	full := time.Now()
	stopLoad()
	wg.Wait()
	repairTime := full.Sub(dead)
	repair := float64(lost) / 1e6 / repairTime.Seconds()
	b.ReportMetric(float64(lost)/(1<<20), "lost-MiB")
	b.ReportMetric(repair, "repair-MB/s")
	b.ReportMetric(raw, "raw-MB/s")
	b.ReportMetric(repair/raw, "ratio")
	b.ReportMetric(full.Sub(killed).Seconds(), "full-s")
	if load {
		b.ReportMetric(float64(wrote.Load())/1e6/repairTime.Seconds(), "client-write-MB/s")
		b.ReportMetric(float64(read.Load())/1e6/repairTime.Seconds(), "client-read-MB/s")
	}
}

func loadWrites(ctx context.Context, wg *sync.WaitGroup, cl *client.Client, data []byte, wrote *atomic.Int64) {
	defer wg.Done()
	for i := 0; ctx.Err() == nil; i++ {
		if put(cl, fmt.Sprintf("/load%d", i), data) == nil {
			wrote.Add(int64(len(data)))
		}
	}
}

func loadReads(ctx context.Context, wg *sync.WaitGroup, cl *client.Client, files int, read *atomic.Int64) {
	defer wg.Done()
	for i := 0; ctx.Err() == nil; i++ {
		f, err := cl.Open(ctx, fmt.Sprintf("/f%d", i%files))
		if err != nil {
			continue
		}
		n, _ := io.Copy(io.Discard, f)
		f.Close()
		read.Add(n)
	}
}

func rawMBps(b *testing.B, path string, n int) float64 {
	b.Helper()
	block := make([]byte, 1<<20)
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += len(block) {
		if _, err := f.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	d := time.Since(start)
	os.Remove(path)
	return float64(n) / 1e6 / d.Seconds()
}

func allHealthy(b *testing.B, cl *client.Client) bool {
	var healthy bool
	err := cl.Conn().Do(context.Background(), func(ctx context.Context, mc masterpb.MasterClient) error {
		healthy = true
		st, err := mc.Fsck(ctx, &masterpb.FsckRequest{Path: "/"})
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
			healthy = healthy && r.Health == masterpb.FsckResponse_HEALTH_HEALTHY
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	return healthy
}
