package fusefs_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/fusefs"
	"github.com/cairnfs/cairn/internal/cluster"
)

var benchSize = flag.Int64("fusefs.bench.size", 64<<20, "bytes of the sequential benchmarks' file")

// benchSetup starts a cluster, dials a client and mounts it.
func benchSetup(b *testing.B) (*client.Client, string) {
	b.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skipf("no /dev/fuse: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: b.TempDir(), Masters: 1, Chunkservers: 6})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs(), IOTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	dir := b.TempDir()
	srv, err := fusefs.Mount(context.Background(), cl, dir, fusefs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		srv.Unmount()
		srv.Wait()
	})
	return cl, dir
}

// BenchmarkSequential writes then reads one file through the client
// library and through the mount, in the same run, so their ratio
// compares like with like.
func BenchmarkSequential(b *testing.B) {
	cl, dir := benchSetup(b)
	ctx := context.Background()
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 7)
	}
	size := *benchSize
	b.Run("write/library", func(b *testing.B) {
		b.SetBytes(size)
		for i := range b.N {
			f, err := cl.Create(ctx, fmt.Sprintf("/lib-%d", i))
			if err != nil {
				b.Fatal(err)
			}
			for off := int64(0); off < size; off += int64(len(block)) {
				if _, err := f.Write(block); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The mount is measured with dd, as a user would: bs=1M, and
	// conv=fsync so that the time includes the commit.
	mb := size >> 20
	b.Run("write/mount-dd", func(b *testing.B) {
		b.SetBytes(mb << 20)
		for i := range b.N {
			dd(b, fmt.Sprintf("if=/dev/zero of=%s bs=1M count=%d conv=fsync", filepath.Join(dir, fmt.Sprintf("mnt-%d", i)), mb))
		}
	})
	b.Run("read/library", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			f, err := cl.Open(ctx, "/lib-0")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, f, block); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("read/mount-dd", func(b *testing.B) {
		b.SetBytes(mb << 20)
		p := filepath.Join(dir, "mnt-0")
		for range b.N {
			// Read from the cluster, not from the page cache of the
			// previous round.
			dd(b, "if="+p+" iflag=nocache count=0")
			dd(b, "if="+p+" of=/dev/null bs=1M")
		}
	})
}

// dd runs dd with args.
func dd(b *testing.B, args string) {
	b.Helper()
	out, err := exec.Command("dd", strings.Fields(args)...).CombinedOutput()
	if err != nil {
		b.Fatalf("dd %s: %v\n%s", args, err, out)
	}
}

// BenchmarkCreateSmallFiles creates 4 KiB files, through the client
// library and through the mount in the same run: the difference is what
// FUSE costs, the rest is the cluster's (one namespace commit, one open
// registration, one slice upload and commit per file).
func BenchmarkCreateSmallFiles(b *testing.B) {
	cl, dir := benchSetup(b)
	data := make([]byte, 4096)
	round := 0 // a sub-benchmark runs several times: a directory each
	b.Run("library", func(b *testing.B) {
		ctx := context.Background()
		round++
		lib := fmt.Sprintf("/lib%d", round)
		if err := cl.Mkdir(ctx, lib, 0o755); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range b.N {
			f, err := cl.Create(ctx, fmt.Sprintf("%s/f%06d", lib, i))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "files/s")
	})
	b.Run("mount", func(b *testing.B) {
		round++
		sub := filepath.Join(dir, fmt.Sprintf("mnt%d", round))
		if err := os.Mkdir(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range b.N {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%06d", i)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "files/s")
	})
}

var benchEntries = flag.Int("fusefs.bench.entries", 1000, "entries of BenchmarkListDir's directory")

// BenchmarkListDir lists a directory of -fusefs.bench.entries files as
// ls -l does: the names, then each one's attributes.
func BenchmarkListDir(b *testing.B) {
	cl, dir := benchSetup(b)
	ctx := context.Background()
	if err := cl.Mkdir(ctx, "/big", 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range *benchEntries {
		f, err := cl.Create(ctx, fmt.Sprintf("/big/f%06d", i))
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	sub := filepath.Join(dir, "big")
	b.ResetTimer()
	for range b.N {
		ents, err := os.ReadDir(sub)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range ents {
			if _, err := e.Info(); err != nil {
				b.Fatal(err)
			}
		}
		if len(ents) != *benchEntries {
			b.Fatalf("listed %d entries, want %d", len(ents), *benchEntries)
		}
	}
}

var benchTarFiles = flag.Int("fusefs.bench.tarfiles", 300, "files in BenchmarkUntar's tarball")

// BenchmarkUntar extracts a tarball of small source files onto the local
// disk and onto the mount in the same run; the ratio of the two is the
// mount's cost for metadata-heavy work.
func BenchmarkUntar(b *testing.B) {
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("tar not installed")
	}
	_, dir := benchSetup(b)
	local := b.TempDir()
	src := filepath.Join(local, "src")
	for i := range *benchTarFiles {
		sub := filepath.Join(src, fmt.Sprintf("d%02d", i%20))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		body := strings.Repeat(fmt.Sprintf("source line of file %d\n", i), 1+i%200)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d.c", i)), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	tarball := filepath.Join(local, "src.tar")
	if out, err := exec.Command("tar", "cf", tarball, "-C", local, "src").CombinedOutput(); err != nil {
		b.Fatalf("tar cf: %v\n%s", err, out)
	}
	for _, where := range []struct{ name, dir string }{{"local", local}, {"mount", dir}} {
		round := 0
		b.Run(where.name, func(b *testing.B) {
			for range b.N {
				round++
				dst := filepath.Join(where.dir, fmt.Sprintf("x%d", round))
				if err := os.Mkdir(dst, 0o755); err != nil {
					b.Fatal(err)
				}
				if out, err := exec.Command("tar", "xf", tarball, "-C", dst).CombinedOutput(); err != nil {
					b.Fatalf("tar xf: %v\n%s", err, out)
				}
			}
		})
	}
}
