package fusefs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnfs/cairn/client/fusefs"
)

// errnoOf returns the errno inside err (0 for nil, -1 for an error
// without one).
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return ^syscall.Errno(0)
}

func createFile(p string, data []byte) error {
	return os.WriteFile(p, data, 0o644)
}

func statMode(p string, want uint32) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if st.Mode != want {
		return fmt.Errorf("%s: mode %o, want %o", p, st.Mode, want)
	}
	return nil
}

func statNlink(p string, want uint64) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if uint64(st.Nlink) != want {
		return fmt.Errorf("%s: nlink %d, want %d", p, st.Nlink, want)
	}
	return nil
}

func readIs(p, want string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("%s holds %q, want %q", p, b, want)
	}
	return nil
}

// TestSyscalls runs a table of system calls on the mount, in order, each
// with the result a local ext4 gives.
func TestSyscalls(t *testing.T) {
	c := startCluster(t, 1, 3)
	d, _ := mount(t, c, mountConfig{})
	p := func(name string) string { return filepath.Join(d, name) }
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)

	steps := []struct {
		name string
		do   func() error
		want syscall.Errno
	}{
		{"mkdir", func() error { return unix.Mkdir(p("dir"), 0o750) }, 0},
		{"mkdir mode", func() error { return statMode(p("dir"), unix.S_IFDIR|0o750) }, 0},
		{"mkdir existing", func() error { return unix.Mkdir(p("dir"), 0o755) }, unix.EEXIST},
		{"mkdir in missing dir", func() error { return unix.Mkdir(p("nodir/x"), 0o755) }, unix.ENOENT},
		{"rmdir missing", func() error { return unix.Rmdir(p("nodir")) }, unix.ENOENT},
		{"create excl", func() error {
			fd, err := unix.Open(p("f"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o640)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}, 0},
		{"create mode", func() error { return statMode(p("f"), unix.S_IFREG|0o640) }, 0},
		{"create excl existing", func() error { _, err := unix.Open(p("f"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644); return err }, unix.EEXIST},
		{"open missing", func() error { _, err := unix.Open(p("missing"), unix.O_RDONLY, 0); return err }, unix.ENOENT},
		{"open file as dir", func() error { _, err := unix.Open(p("f"), unix.O_RDONLY|unix.O_DIRECTORY, 0); return err }, unix.ENOTDIR},
		{"open dir for writing", func() error { _, err := unix.Open(p("dir"), unix.O_WRONLY, 0); return err }, unix.EISDIR},
		{"mkdir under file", func() error { return unix.Mkdir(p("f/x"), 0o755) }, unix.ENOTDIR},
		{"rmdir file", func() error { return unix.Rmdir(p("f")) }, unix.ENOTDIR},
		{"unlink dir", func() error { return unix.Unlink(p("dir")) }, unix.EISDIR},
		{"write", func() error { return createFile(p("dir/a"), []byte("hello")) }, 0},
		{"rmdir non-empty", func() error { return unix.Rmdir(p("dir")) }, unix.ENOTEMPTY},
		{"append", func() error {
			f, err := os.OpenFile(p("dir/a"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteString(", world"); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}, 0},
		{"append read", func() error { return readIs(p("dir/a"), "hello, world") }, 0},
		{"O_TRUNC", func() error {
			f, err := os.OpenFile(p("dir/a"), os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteString("new"); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}, 0},
		{"O_TRUNC read", func() error { return readIs(p("dir/a"), "new") }, 0},
		{"truncate up", func() error { return unix.Truncate(p("dir/a"), 6) }, 0},
		{"truncate up read", func() error { return readIs(p("dir/a"), "new\x00\x00\x00") }, 0},
		{"truncate down", func() error { return unix.Truncate(p("dir/a"), 2) }, 0},
		{"truncate down read", func() error { return readIs(p("dir/a"), "ne") }, 0},
		{"truncate dir", func() error { return unix.Truncate(p("dir"), 0) }, unix.EISDIR},
		{"chmod", func() error { return unix.Chmod(p("f"), 0o4711) }, 0},
		{"chmod mode", func() error { return statMode(p("f"), unix.S_IFREG|0o4711) }, 0},
		{"chown", func() error { return unix.Chown(p("f"), 1234, 5678) }, 0},
		{"chown owner", func() error {
			var st unix.Stat_t
			if err := unix.Stat(p("f"), &st); err != nil {
				return err
			}
			if st.Uid != 1234 || st.Gid != 5678 {
				return fmt.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
			}
			return nil
		}, 0},
		{"utimes", func() error { return os.Chtimes(p("f"), mtime, mtime) }, 0},
		{"utimes mtime", func() error {
			fi, err := os.Stat(p("f"))
			if err != nil {
				return err
			}
			if !fi.ModTime().Equal(mtime) {
				return fmt.Errorf("mtime %v, want %v", fi.ModTime(), mtime)
			}
			return nil
		}, 0},
		{"link", func() error { return unix.Link(p("f"), p("dir/hard")) }, 0},
		{"link nlink", func() error { return statNlink(p("f"), 2) }, 0},
		{"link existing", func() error { return unix.Link(p("f"), p("dir/hard")) }, unix.EEXIST},
		{"link dir", func() error { return unix.Link(p("dir"), p("dirlink")) }, unix.EPERM},
		{"symlink", func() error { return unix.Symlink("dir/a", p("sym")) }, 0},
		{"symlink existing", func() error { return unix.Symlink("x", p("sym")) }, unix.EEXIST},
		{"readlink", func() error {
			s, err := os.Readlink(p("sym"))
			if err == nil && s != "dir/a" {
				return fmt.Errorf("readlink %q, want dir/a", s)
			}
			return err
		}, 0},
		{"read through symlink", func() error { return readIs(p("sym"), "ne") }, 0},
		{"readlink of file", func() error { _, err := os.Readlink(p("f")); return err }, unix.EINVAL},
		{"mkfifo", func() error { return unix.Mkfifo(p("fifo"), 0o600) }, 0},
		{"mkfifo mode", func() error { return statMode(p("fifo"), unix.S_IFIFO|0o600) }, 0},
		{"mknod socket", func() error { return unix.Mknod(p("sock"), unix.S_IFSOCK|0o644, 0) }, 0},
		{"mknod socket mode", func() error { return statMode(p("sock"), unix.S_IFSOCK|0o644) }, 0},
		{"rename", func() error { return unix.Rename(p("f"), p("g")) }, 0},
		{"rename gone", func() error { return unix.Access(p("f"), unix.F_OK) }, unix.ENOENT},
		{"rename missing", func() error { return unix.Rename(p("f"), p("h")) }, unix.ENOENT},
		{"rename over", func() error { return unix.Rename(p("dir/a"), p("dir/hard")) }, 0},
		{"rename over read", func() error { return readIs(p("dir/hard"), "ne") }, 0},
		{"rename over nlink", func() error { return statNlink(p("g"), 1) }, 0},
		{"rename noreplace existing", func() error {
			return unix.Renameat2(unix.AT_FDCWD, p("g"), unix.AT_FDCWD, p("dir/hard"), unix.RENAME_NOREPLACE)
		}, unix.EEXIST},
		{"rename noreplace", func() error {
			return unix.Renameat2(unix.AT_FDCWD, p("g"), unix.AT_FDCWD, p("g2"), unix.RENAME_NOREPLACE)
		}, 0},
		{"rename exchange", func() error {
			return unix.Renameat2(unix.AT_FDCWD, p("g2"), unix.AT_FDCWD, p("dir/hard"), unix.RENAME_EXCHANGE)
		}, 0},
		{"rename exchange result", func() error { return readIs(p("g2"), "ne") }, 0},
		{"rename exchange missing", func() error {
			return unix.Renameat2(unix.AT_FDCWD, p("g2"), unix.AT_FDCWD, p("nothere"), unix.RENAME_EXCHANGE)
		}, unix.ENOENT},
		{"rename dir into itself", func() error { return unix.Rename(p("dir"), p("dir/sub")) }, unix.EINVAL},
		{"rename file over dir", func() error { return unix.Rename(p("g2"), p("dir")) }, unix.EISDIR},
		{"rename dir over file", func() error { return unix.Rename(p("dir"), p("g2")) }, unix.ENOTDIR},
		{"mkdir empty", func() error { return unix.Mkdir(p("empty"), 0o755) }, 0},
		{"rename dir over non-empty dir", func() error { return unix.Rename(p("empty"), p("dir")) }, unix.ENOTEMPTY},
		{"setxattr", func() error { return unix.Setxattr(p("g2"), "user.colour", []byte("blue"), 0) }, 0},
		{"getxattr", func() error {
			buf := make([]byte, 64)
			n, err := unix.Getxattr(p("g2"), "user.colour", buf)
			if err == nil && string(buf[:n]) != "blue" {
				return fmt.Errorf("getxattr %q, want blue", buf[:n])
			}
			return err
		}, 0},
		{"getxattr size", func() error {
			n, err := unix.Getxattr(p("g2"), "user.colour", nil)
			if err == nil && n != 4 {
				return fmt.Errorf("getxattr size %d, want 4", n)
			}
			return err
		}, 0},
		{"getxattr small buffer", func() error { _, err := unix.Getxattr(p("g2"), "user.colour", make([]byte, 2)); return err }, unix.ERANGE},
		{"setxattr create existing", func() error { return unix.Setxattr(p("g2"), "user.colour", []byte("red"), unix.XATTR_CREATE) }, unix.EEXIST},
		{"setxattr replace missing", func() error { return unix.Setxattr(p("g2"), "user.size", []byte("1"), unix.XATTR_REPLACE) }, unix.ENODATA},
		{"listxattr", func() error {
			buf := make([]byte, 256)
			n, err := unix.Listxattr(p("g2"), buf)
			if err == nil && !bytes.Contains(buf[:n], []byte("user.colour\x00")) {
				return fmt.Errorf("listxattr %q lacks user.colour", buf[:n])
			}
			return err
		}, 0},
		{"removexattr", func() error { return unix.Removexattr(p("g2"), "user.colour") }, 0},
		{"getxattr removed", func() error { _, err := unix.Getxattr(p("g2"), "user.colour", make([]byte, 8)); return err }, unix.ENODATA},
		{"statfs", func() error {
			var st unix.Statfs_t
			if err := unix.Statfs(d, &st); err != nil {
				return err
			}
			if st.Blocks == 0 || st.Bsize == 0 {
				return fmt.Errorf("statfs: %d blocks of %d bytes", st.Blocks, st.Bsize)
			}
			return nil
		}, 0},
		{"fallocate", func() error {
			fd, err := unix.Open(p("g2"), unix.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.Fallocate(fd, 0, 0, 10); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				return err
			}
			if st.Size != 10 {
				return fmt.Errorf("size after fallocate %d, want 10", st.Size)
			}
			return nil
		}, 0},
		{"unlink", func() error { return unix.Unlink(p("g2")) }, 0},
		{"unlink missing", func() error { return unix.Unlink(p("g2")) }, unix.ENOENT},
		{"rmdir", func() error { return unix.Rmdir(p("empty")) }, 0},
		{"readdir", func() error {
			ents, err := os.ReadDir(d)
			if err != nil {
				return err
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if want := "[dir fifo sock sym]"; fmt.Sprint(names) != want {
				return fmt.Errorf("readdir %v, want %s", names, want)
			}
			return nil
		}, 0},
	}
	for _, s := range steps {
		if got := errnoOf(s.do()); got != s.want {
			t.Errorf("%s: errno %d (%v), want %d (%v)", s.name, got, got, s.want, s.want)
		}
	}
}

// TestRootSquash checks that root acts as nobody on a squashing mount:
// the master, not only the kernel, refuses what nobody may not do.
func TestRootSquash(t *testing.T) {
	c := startCluster(t, 1, 3)
	plain, _ := mount(t, c, mountConfig{})
	squashed, _ := mount(t, c, mountConfig{opts: fusefs.Options{RootSquash: true}})
	if err := os.Mkdir(filepath.Join(plain, "closed"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(plain, "open"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(plain, "open"), 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	err := os.WriteFile(filepath.Join(squashed, "closed", "f"), nil, 0o644)
	if got := errnoOf(err); got != unix.EACCES {
		t.Errorf("create in a root-owned 0755 dir as squashed root: %v, want EACCES", err)
	}
	if err := os.WriteFile(filepath.Join(squashed, "open", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(plain, "open", "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != fusefs.DefaultSquashID || st.Gid != fusefs.DefaultSquashID {
		t.Errorf("file created by squashed root is owned by %d:%d, want %d:%d", st.Uid, st.Gid, fusefs.DefaultSquashID, fusefs.DefaultSquashID)
	}
}

// TestUnflushedSize checks that bytes written and not yet committed
// count in the size the kernel sees through every path (stat, a listing,
// an O_APPEND write's offset).
func TestUnflushedSize(t *testing.T) {
	c := startCluster(t, 1, 3)
	d, _ := mount(t, c, mountConfig{opts: fusefs.Options{AttrTimeout: -1, EntryTimeout: -1}})
	p := filepath.Join(d, "growing")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte("a"), 100)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 100 {
		t.Fatalf("stat while written: %v, %v; want size 100", fi, err)
	}
	ents, err := os.ReadDir(d)
	if err != nil || len(ents) != 1 {
		t.Fatalf("readdir: %v, %v", ents, err)
	}
	if fi, err := ents[0].Info(); err != nil || fi.Size() != 100 {
		t.Fatalf("listing while written: %v, %v; want size 100", fi, err)
	}
	g, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteString("z"); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := readIs(p, string(bytes.Repeat([]byte("a"), 100))+"z"); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnly checks that a read-only mount reads and refuses every
// change with EROFS.
func TestReadOnly(t *testing.T) {
	c := startCluster(t, 1, 3)
	rw, _ := mount(t, c, mountConfig{})
	ro, _ := mount(t, c, mountConfig{opts: fusefs.Options{ReadOnly: true}})
	if err := os.WriteFile(filepath.Join(rw, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := readIs(filepath.Join(ro, "f"), "data"); err != nil {
		t.Fatal(err)
	}
	for name, do := range map[string]func() error{
		"create":   func() error { return os.WriteFile(filepath.Join(ro, "g"), nil, 0o644) },
		"write":    func() error { return os.WriteFile(filepath.Join(ro, "f"), []byte("x"), 0o644) },
		"mkdir":    func() error { return unix.Mkdir(filepath.Join(ro, "d"), 0o755) },
		"unlink":   func() error { return unix.Unlink(filepath.Join(ro, "f")) },
		"chmod":    func() error { return unix.Chmod(filepath.Join(ro, "f"), 0o600) },
		"setxattr": func() error { return unix.Setxattr(filepath.Join(ro, "f"), "user.a", []byte("b"), 0) },
	} {
		if got := errnoOf(do()); got != unix.EROFS {
			t.Errorf("%s on a read-only mount: errno %v, want EROFS", name, got)
		}
	}
}

// TestAttrsWhileWriting checks chmod, chown and utimes made through a
// descriptor whose writes are still buffered (as tar, cp -p and rsync
// do): the mount shows them at once, another mount sees them with the
// bytes after the close, and the explicit mtime is the one that stays
// unless a write follows it.
func TestAttrsWhileWriting(t *testing.T) {
	c := startCluster(t, 1, 3)
	d, _ := mount(t, c, mountConfig{})
	other, _ := mount(t, c, mountConfig{opts: fusefs.Options{AttrTimeout: -1, EntryTimeout: -1}})
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		size       int  // bytes written before the changes (inline or a slice)
		writeAfter bool // one more write after them
	}{
		{name: "small", size: 100},
		{name: "large", size: 3 << 20},
		{name: "write after utimes", size: 100, writeAfter: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			data := bytes.Repeat([]byte{'a'}, tc.size)
			f, err := os.OpenFile(filepath.Join(d, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(data); err != nil {
				t.Fatal(err)
			}
			fd := int(f.Fd())
			ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, f.Name(), ts, 0); err != nil {
				t.Fatal(err)
			}
			if err := unix.Fchown(fd, 1234, 5678); err != nil {
				t.Fatal(err)
			}
			if err := unix.Fchmod(fd, 0o4751); err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode&0o7777 != 0o4751 || st.Uid != 1234 || st.Gid != 5678 || st.Mtim.Nano() != mtime.UnixNano() || st.Size != int64(tc.size) {
				t.Fatalf("fstat while open: mode %o, owner %d:%d, mtime %v, size %d", st.Mode, st.Uid, st.Gid, time.Unix(0, st.Mtim.Nano()), st.Size)
			}
			if tc.writeAfter {
				if _, err := f.Write([]byte("z")); err != nil {
					t.Fatal(err)
				}
				data = append(data, 'z')
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(other, name)
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			wantMtime := st.Mtim.Nano() == mtime.UnixNano()
			if tc.writeAfter {
				wantMtime = time.Since(time.Unix(0, st.Mtim.Nano())) < time.Hour
			}
			// The kernel drops setuid on chown and on write.
			if st.Mode&0o777 != 0o751 || st.Uid != 1234 || st.Gid != 5678 || !wantMtime || st.Size != int64(len(data)) {
				t.Fatalf("stat on another mount: mode %o, owner %d:%d, mtime %v, size %d", st.Mode, st.Uid, st.Gid, time.Unix(0, st.Mtim.Nano()), st.Size)
			}
			if err := readIs(p, string(data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAttrsAfterOwnCommit: a write elsewhere in the file commits the
// buffered bytes with a deferred chmod; stat must not go back to the
// mode from before it.
func TestAttrsAfterOwnCommit(t *testing.T) {
	c := startCluster(t, 1, 3)
	d, _ := mount(t, c, mountConfig{})
	f, err := os.OpenFile(filepath.Join(d, "f"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("a"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("b"), 1<<20); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o777 != 0o600 || st.Size != 1<<20+1 {
		t.Fatalf("fstat after the commit: mode %o, size %d; want 600, %d", st.Mode&0o777, st.Size, 1<<20+1)
	}
}
