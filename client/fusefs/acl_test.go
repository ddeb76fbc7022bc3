package fusefs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNoACLs checks that POSIX ACL attributes are not supported, as on an
// ext4 mounted noacl, while other attributes are, and that ls -l, which
// asks for ACLs on every entry, is content with that.
func TestNoACLs(t *testing.T) {
	c := startCluster(t, 1, 3)
	dir, _ := mount(t, c, mountConfig{})
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
		if _, err := unix.Getxattr(p, name, make([]byte, 64)); err != unix.EOPNOTSUPP {
			t.Errorf("getxattr %s: %v, want EOPNOTSUPP", name, err)
		}
	}
	// (The kernel answers for a default ACL on a regular file itself.)
	if err := unix.Setxattr(p, "system.posix_acl_access", []byte{2, 0, 0, 0}, 0); err != unix.EOPNOTSUPP {
		t.Errorf("setxattr system.posix_acl_access: %v, want EOPNOTSUPP", err)
	}
	if err := unix.Removexattr(p, "system.posix_acl_access"); err != unix.EOPNOTSUPP {
		t.Errorf("removexattr system.posix_acl_access: %v, want EOPNOTSUPP", err)
	}
	if err := unix.Setxattr(p, "user.k", []byte("v"), 0); err != nil {
		t.Fatalf("setxattr user.k: %v", err)
	}
	if _, err := unix.Getxattr(p, "user.k", make([]byte, 8)); err != nil {
		t.Fatalf("getxattr user.k: %v", err)
	}
	out, err := exec.Command("ls", "-l", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("ls -l: %v: %s", err, out)
	}
}
