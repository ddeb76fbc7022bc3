package fusefs_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadAheadRaised checks that the mount asks the kernel for 1 MiB of
// read-ahead (the kernel's default for a FUSE mount is 128 KiB, which cut
// sequential reads into 128 KiB round trips), and that a file read
// sequentially still reads back whole.
func TestReadAheadRaised(t *testing.T) {
	c := startCluster(t, 1, 3)
	dir, _ := mount(t, c, mountConfig{})
	want := make([]byte, 3<<20+123)
	for i := range want {
		want[i] = byte(i*31 + i>>12)
	}
	p := filepath.Join(dir, "big")
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes back, not the %d written", len(got), len(want))
	}
	if os.Geteuid() != 0 {
		t.Skip("only root may set a mount's read-ahead")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	ra, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(string(ra)); s != "1024" {
		t.Errorf("read_ahead_kb %s, want 1024", s)
	}
}
