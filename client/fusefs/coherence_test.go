package fusefs_test

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSameMountCoherence checks that two opens of one file on one mount
// see each other's writes at once, before any close or fsync, as two
// descriptors of a file on a local disk do. The reader's page cache is
// dropped before each read so that the read reaches the mount through
// the reader's own open.
func TestSameMountCoherence(t *testing.T) {
	c := startCluster(t, 1, 3)
	dir, _ := mount(t, c, mountConfig{})
	p := filepath.Join(dir, "shared")
	w, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(w)
	r, err := unix.Open(p, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(r)

	readAll := func(want string) {
		t.Helper()
		if err := unix.Fadvise(r, 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := unix.Pread(r, buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != want {
			t.Fatalf("read through the other open: %q, want %q", got, want)
		}
	}
	if _, err := unix.Pwrite(w, []byte("hello world"), 0); err != nil {
		t.Fatal(err)
	}
	readAll("hello world")
	// The reader has now read the file once; a later write by the other
	// open must not be hidden behind what it read before.
	if _, err := unix.Pwrite(w, []byte("HELLO"), 0); err != nil {
		t.Fatal(err)
	}
	readAll("HELLO world")
	if _, err := unix.Pwrite(w, []byte("!"), 11); err != nil {
		t.Fatal(err)
	}
	readAll("HELLO world!")
}
