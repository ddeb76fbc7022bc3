package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/reedsolomon"
	"github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"

	"github.com/cairnfs/cairn/erasure"
)

// Baseline names; results refer to them.
const (
	baseDiskWrite = "disk-write"
	baseDiskRead  = "disk-read"
	baseFsync     = "disk-fsync"
	baseTCP       = "tcp-stream"
	baseTCPRTT    = "tcp-roundtrip"
	baseEncode    = "rs-encode"
	baseSHA       = "sha256"
)

// measureBaselines measures what the machine does without Cairn: the
// ceilings its figures are compared with. The disk measurements write a
// file in dir and remove it.
func measureBaselines(ctx context.Context, cfg *Config, dir string, prog *progress) ([]Baseline, error) {
	var out []Baseline
	steps := []func() ([]Baseline, error){
		func() ([]Baseline, error) { return diskBaselines(ctx, dir, cfg.BaselineSize, prog) },
		func() ([]Baseline, error) { return fsyncBaseline(ctx, dir, cfg.FsyncDuration, prog) },
		func() ([]Baseline, error) { return tcpBaselines(ctx, cfg.BaselineSize, prog) },
		func() ([]Baseline, error) { return encodeBaseline(cfg.Layout, cfg.BaselineSize, prog) },
		func() ([]Baseline, error) { return shaBaseline(cfg.BaselineSize, prog) },
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		b, err := step()
		if err != nil {
			return out, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// patternBlock returns a 1 MiB block of bytes that do not compress.
func patternBlock() []byte {
	b := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// diskBaselines writes size bytes sequentially in 1 MiB writes and fsyncs
// (the time includes the fsync), then evicts the file from the page cache
// with posix_fadvise(DONTNEED) and reads it back in 1 MiB reads. Dropping
// the whole cache needs root; evicting this one file needs nothing, and a
// read after it comes from the device.
func diskBaselines(ctx context.Context, dir string, size int64, prog *progress) ([]Baseline, error) {
	path := filepath.Join(dir, "disk-baseline")
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("disk baseline: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	block := patternBlock()
	bar := prog.start("baseline: disk write", size, "B")
	start := time.Now()
	for off := int64(0); off < size && ctx.Err() == nil; off += int64(len(block)) {
		if _, err := f.Write(block); err != nil {
			bar.done()
			return nil, fmt.Errorf("disk baseline: %w", err)
		}
		bar.add(int64(len(block)))
	}
	err = f.Sync()
	wall := time.Since(start)
	bar.done()
	if err != nil {
		return nil, fmt.Errorf("disk baseline: fsync: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	write := Baseline{Name: baseDiskWrite, Value: mbps(size, wall), Unit: "MB/s",
		Note: fmt.Sprintf("sequential %s in 1 MiB writes then fsync, timed together", human(size))}

	evict(f)
	bar = prog.start("baseline: disk read", size, "B")
	buf := make([]byte, 1<<20)
	start = time.Now()
	var n int64
	for ctx.Err() == nil {
		k, err := f.ReadAt(buf, n)
		n += int64(k)
		bar.add(int64(k))
		if err == io.EOF {
			break
		}
		if err != nil {
			bar.done()
			return nil, fmt.Errorf("disk baseline: read: %w", err)
		}
	}
	wall = time.Since(start)
	bar.done()
	read := Baseline{Name: baseDiskRead, Value: mbps(n, wall), Unit: "MB/s",
		Note: "sequential 1 MiB reads of that file after posix_fadvise(DONTNEED) evicted it from the page cache"}
	return []Baseline{write, read}, nil
}

// evict asks the kernel to drop f's clean pages from the page cache. It is
// advice: a kernel may keep them, which would make reads look faster.
func evict(f *os.File) {
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// fsyncBaseline counts 4 KiB write+fsync pairs per second for d: the
// ceiling of durable operations done one after another, which bounds
// every Raft commit and every small shard write.
func fsyncBaseline(ctx context.Context, dir string, d time.Duration, prog *progress) ([]Baseline, error) {
	path := filepath.Join(dir, "fsync-baseline")
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("fsync baseline: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	buf := patternBlock()[:fourKiB]
	bar := prog.start("baseline: fsync", int64(d/time.Millisecond), "ms")
	defer bar.done()
	start := time.Now()
	var n int64
	for time.Since(start) < d && ctx.Err() == nil {
		if _, err := f.WriteAt(buf, n*fourKiB); err != nil {
			return nil, fmt.Errorf("fsync baseline: %w", err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("fsync baseline: %w", err)
		}
		n++
		bar.n.Store(int64(time.Since(start) / time.Millisecond))
	}
	wall := time.Since(start)
	return []Baseline{{Name: baseFsync, Value: float64(n) / wall.Seconds(), Unit: "ops/s",
		Note: "4 KiB appends, each followed by fsync, one at a time"}}, ctx.Err()
}

// tcpBaselines measures loopback TCP: one stream's throughput in 1 MiB
// writes, and 1-byte request/response round trips per second on one
// connection (the floor under any RPC).
func tcpBaselines(ctx context.Context, size int64, prog *progress) ([]Baseline, error) {
	// Deferred in this order so that the listener and connections close
	// before the server goroutine is waited for.
	var wg sync.WaitGroup
	defer wg.Wait()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tcp baseline: %w", err)
	}
	defer ln.Close()
	received := make(chan int64, 1)
	// The server side: the first connection is drained, the second
	// echoed, each by its own goroutine that ends when the peer closes.
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		received <- n
		e, err := ln.Accept()
		if err != nil {
			return
		}
		defer e.Close()
		io.Copy(e, e)
	})

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("tcp baseline: %w", err)
	}
	block := patternBlock()
	bar := prog.start("baseline: tcp", size, "B")
	start := time.Now()
	var sent int64
	for sent < size && ctx.Err() == nil {
		k, err := c.Write(block)
		sent += int64(k)
		bar.add(int64(k))
		if err != nil {
			break
		}
	}
	c.Close()
	got := <-received
	wall := time.Since(start)
	bar.done()
	if got != sent || got <= 0 {
		return nil, fmt.Errorf("tcp baseline: sent %d bytes, peer received %d", sent, got)
	}
	stream := Baseline{Name: baseTCP, Value: mbps(got, wall), Unit: "MB/s",
		Note: fmt.Sprintf("one loopback connection, %s in 1 MiB writes", human(size))}

	e, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("tcp baseline: %w", err)
	}
	defer e.Close()
	const trips = 20000
	bar = prog.start("baseline: tcp round trips", trips, "trips")
	one := []byte{1}
	start = time.Now()
	var n int64
	for n < trips && ctx.Err() == nil {
		if _, err := e.Write(one); err != nil {
			break
		}
		if _, err := io.ReadFull(e, one); err != nil {
			break
		}
		n++
		bar.add(1)
	}
	wall = time.Since(start)
	bar.done()
	if n < trips {
		return nil, errors.Join(ctx.Err(), fmt.Errorf("tcp baseline: round trip %d failed", n))
	}
	rtt := Baseline{Name: baseTCPRTT, Value: float64(n) / wall.Seconds(), Unit: "ops/s",
		Note: "1-byte request and echo on one loopback connection, one at a time"}
	return []Baseline{stream, rtt}, nil
}

// encodeBaseline encodes stripe rows of 1 MiB cells with reedsolomon
// directly, in the benchmark's layout (RS(4,2) when it is replicated or
// the cluster's choice), counting data bytes.
func encodeBaseline(layout string, size int64, prog *progress) ([]Baseline, error) {
	k, m := 4, 2
	if layout != "" {
		if l, err := erasure.ParseLayout(layout); err == nil && l.IsRS() {
			k, m = l.DataShards(), l.ParityShards()
		}
	}
	enc, err := reedsolomon.New(k, m)
	if err != nil {
		return nil, fmt.Errorf("encode baseline: %w", err)
	}
	shards := make([][]byte, k+m)
	block := patternBlock()
	for i := range shards {
		shards[i] = make([]byte, 1<<20)
		copy(shards[i], block)
		shards[i][0] = byte(i)
	}
	row := int64(k) << 20
	bar := prog.start("baseline: reed-solomon", size, "B")
	defer bar.done()
	start := time.Now()
	var n int64
	for n < size {
		if err := enc.Encode(shards); err != nil {
			return nil, fmt.Errorf("encode baseline: %w", err)
		}
		n += row
		bar.add(row)
	}
	wall := time.Since(start)
	return []Baseline{{Name: baseEncode, Value: mbps(n, wall), Unit: "MB/s",
		Note: fmt.Sprintf("klauspost/reedsolomon RS(%d,%d) Encode of 1 MiB cells, data bytes counted", k, m)}}, nil
}

// shaBaseline hashes 1 MiB buffers with sha256-simd on one goroutine.
func shaBaseline(size int64, prog *progress) ([]Baseline, error) {
	block := patternBlock()
	bar := prog.start("baseline: sha256", size, "B")
	defer bar.done()
	start := time.Now()
	var n int64
	var sum [32]byte
	for n < size {
		sum = sha256.Sum256(block)
		block[0] ^= sum[0] // keep every hash's result in use
		n += int64(len(block))
		bar.add(int64(len(block)))
	}
	wall := time.Since(start)
	return []Baseline{{Name: baseSHA, Value: mbps(n, wall), Unit: "MB/s",
		Note: "minio/sha256-simd Sum256 of 1 MiB buffers on one core"}}, nil
}
