package fusefs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnfs/cairn/client/fusefs"
)

// TestCallerIdentity checks that each request acts as the process
// behind it: files an unprivileged process creates are its own, and what
// it may not do fails.
func TestCallerIdentity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	c := startCluster(t, 1, 3)
	dir, _ := mount(t, c, mountConfig{opts: fusefs.Options{AllowOther: true}})
	// The user must be able to walk to the mount point.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "closed"), 0o755); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 1000, 1001
	as := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		return cmd
	}
	if out, err := as("mkdir", filepath.Join(open, "sub")).CombinedOutput(); err != nil {
		t.Fatalf("mkdir as %d: %v: %s", uid, err, out)
	}
	if out, err := as("touch", filepath.Join(open, "sub", "f")).CombinedOutput(); err != nil {
		t.Fatalf("touch as %d: %v: %s", uid, err, out)
	}
	for _, p := range []string{filepath.Join(open, "sub"), filepath.Join(open, "sub", "f")} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s made by %d:%d is owned by %d:%d", p, uid, gid, st.Uid, st.Gid)
		}
	}
	if out, err := as("touch", filepath.Join(dir, "closed", "f")).CombinedOutput(); err == nil {
		t.Errorf("touch as %d in a root-owned 0755 directory succeeded: %s", uid, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "closed", "f")); !os.IsNotExist(err) {
		t.Errorf("stat of the refused file: %v, want ENOENT", err)
	}
	if out, err := as("chmod", "0600", filepath.Join(dir, "closed")).CombinedOutput(); err == nil {
		t.Errorf("chmod as %d of a root-owned directory succeeded: %s", uid, out)
	}
}
