package fusefs_test

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

var fsxOps = flag.Int("fsx.ops", 0, "operations of TestFSX (default 2000, 150 under the race detector; the issue's full run is 10000)")

// mmapEnv, when set in a re-executed test binary, makes it an mmap reader
// (see mmapRead).
const mmapEnv = "CAIRN_FSX_MMAP"

func TestMain(m *testing.M) {
	if spec := os.Getenv(mmapEnv); spec != "" {
		os.Exit(mmapMain(spec))
	}
	os.Exit(m.Run())
}

// mmapMain maps "path size off n" read-only and writes bytes [off, off+n)
// to standard output.
func mmapMain(spec string) int {
	var path string
	var size, off, n int
	if _, err := fmt.Sscan(spec, &path, &size, &off, &n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer syscall.Munmap(m)
	if _, err := os.Stdout.Write(m[off : off+n]); err != nil {
		return 1
	}
	return 0
}

// mmapRead reads n bytes at off of the file at path through a shared
// read-only mapping of its first size bytes. It runs in a child process:
// a page fault on a FUSE mapping blocks its thread in the kernel, and a
// garbage collection that then stops the world would stop the very
// goroutines that serve the fault.
func mmapRead(path string, size, off, n int) ([]byte, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d", mmapEnv, path, size, off, n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.Bytes())
	}
	if len(out) != n {
		return nil, fmt.Errorf("read %d bytes, want %d", len(out), n)
	}
	return out, nil
}

// TestFSX is an fsx-style test: random writes, truncates, reads and mmap
// reads of one file at random offsets, each checked against an in-memory
// model of the file, with a fixed seed so a failure replays.
func TestFSX(t *testing.T) {
	c := startCluster(t, 1, 3)
	dir, _ := mount(t, c, mountConfig{})
	const maxSize = 256 << 10
	rng := rand.New(rand.NewPCG(1, 2))
	p := filepath.Join(dir, "fsx")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var model []byte
	buf := make([]byte, maxSize)
	check := func(i int, what string, off int, got []byte) {
		t.Helper()
		want := model[off : off+len(got)]
		if !bytes.Equal(got, want) {
			at := 0
			for at < len(got) && got[at] == want[at] {
				at++
			}
			t.Fatalf("op %d: %s of %d bytes at %d: first difference at file offset %d: got %#x, want %#x",
				i, what, len(got), off, off+at, got[at], want[at])
		}
	}
	ops := *fsxOps
	if ops == 0 {
		ops = 2000
		if raceEnabled {
			ops = 150
		}
	}
	for i := range ops {
		switch op := rng.IntN(10); {
		case op < 4: // write
			off := rng.IntN(maxSize - 1)
			n := 1 + rng.IntN(min(maxSize-off, 32<<10))
			data := buf[:n]
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			if _, err := f.WriteAt(data, int64(off)); err != nil {
				t.Fatalf("op %d: write %d at %d: %v", i, n, off, err)
			}
			if end := off + n; end > len(model) {
				model = append(model, make([]byte, end-len(model))...)
			}
			copy(model[off:], data)
		case op < 5: // truncate
			size := rng.IntN(maxSize)
			if err := f.Truncate(int64(size)); err != nil {
				t.Fatalf("op %d: truncate to %d: %v", i, size, err)
			}
			if size > len(model) {
				model = append(model, make([]byte, size-len(model))...)
			}
			model = model[:size]
		case op < 8: // read
			if len(model) == 0 {
				continue
			}
			off := rng.IntN(len(model))
			n := 1 + rng.IntN(min(len(model)-off, 64<<10))
			got := buf[:n]
			if _, err := f.ReadAt(got, int64(off)); err != nil {
				t.Fatalf("op %d: read %d at %d: %v", i, n, off, err)
			}
			check(i, "read", off, got)
		case op < 9: // mmap read
			if len(model) == 0 {
				continue
			}
			off := rng.IntN(len(model))
			n := 1 + rng.IntN(min(len(model)-off, 64<<10))
			got, err := mmapRead(p, len(model), off, n)
			if err != nil {
				t.Fatalf("op %d: mmap read of %d at %d: %v", i, n, off, err)
			}
			check(i, "mmap read", off, got)
		default: // size
			fi, err := f.Stat()
			if err != nil {
				t.Fatalf("op %d: stat: %v", i, err)
			}
			if fi.Size() != int64(len(model)) {
				t.Fatalf("op %d: size %d, want %d", i, fi.Size(), len(model))
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// What was closed is what another open reads.
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatalf("after close: file of %d bytes differs from the model of %d", len(got), len(model))
	}
}
