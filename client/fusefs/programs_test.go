package fusefs_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sh runs a shell command line in dir and returns its output; the test
// fails if the command does. Commands run in child processes, so their
// page faults and blocking calls on the mount never stall this process,
// which serves the mount. The shell changes into dir itself: with
// cmd.Dir the child would chdir between fork and exec, while this
// process's forking thread waits for it and the Go runtime may not let
// the goroutines that serve the mount run (a stop-the-world waits for
// that thread), which hung the test for good (golang/go#11155).
func sh(t *testing.T, dir, line string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", "cd '"+strings.ReplaceAll(dir, "'", `'\''`)+"' && "+line)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=cairn", "GIT_AUTHOR_EMAIL=cairn@example.com",
		"GIT_COMMITTER_NAME=cairn", "GIT_COMMITTER_EMAIL=cairn@example.com", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return string(out)
}

func needPrograms(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed", n)
		}
	}
}

// sourceTree writes a small tree of files, links and modes to dir.
func sourceTree(t *testing.T, dir string) {
	t.Helper()
	for i := range 40 {
		sub := filepath.Join(dir, fmt.Sprintf("pkg%d", i%5))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		body := strings.Repeat(fmt.Sprintf("line %d of file %d\n", i, i), 10+i*40)
		f := filepath.Join(sub, fmt.Sprintf("f%d.go", i))
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		// Old, distinct times and a mode of their own, which the copying
		// programs must carry over (they set them before closing).
		when := time.Date(2001, 2, 3, 4, 5, i, 0, time.UTC)
		if err := os.Chtimes(f, when, when); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o600+fs.FileMode(i%3)*0o040); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("pkg0/f0.go", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
}

// sameAttrs checks that every regular file under src has a copy under
// dst with the same mode and modification time (to the second: tar keeps
// no more).
func sameAttrs(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		want, err := os.Stat(p)
		if err != nil {
			return err
		}
		got, err := os.Stat(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		if got.Mode() != want.Mode() || got.ModTime().Unix() != want.ModTime().Unix() {
			return fmt.Errorf("%s: mode %v, mtime %v; want %v, %v", rel, got.Mode(), got.ModTime(), want.Mode(), want.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrograms runs real programs on the mount: cp -a and diff -r, tar
// and rsync both ways, git, sqlite3 in rollback-journal and WAL modes.
func TestPrograms(t *testing.T) {
	needPrograms(t, "sh", "cp", "diff", "tar")
	c := startCluster(t, 1, 3)
	mnt, _ := mount(t, c, mountConfig{})
	local := t.TempDir()
	src := filepath.Join(local, "src")
	sourceTree(t, src)

	t.Run("cp-diff", func(t *testing.T) {
		sh(t, local, "cp -a src "+filepath.Join(mnt, "copy"))
		sh(t, local, "diff -r src "+filepath.Join(mnt, "copy"))
		sameAttrs(t, src, filepath.Join(mnt, "copy"))
		// And back.
		sh(t, local, "cp -a "+filepath.Join(mnt, "copy")+" back && diff -r src back")
	})
	t.Run("tar", func(t *testing.T) {
		sh(t, local, "tar cf "+filepath.Join(mnt, "src.tar")+" src")
		if err := os.Mkdir(filepath.Join(mnt, "untar"), 0o755); err != nil {
			t.Fatal(err)
		}
		sh(t, filepath.Join(mnt, "untar"), "tar xf ../src.tar && diff -r src "+src)
		sameAttrs(t, src, filepath.Join(mnt, "untar", "src"))
		sh(t, mnt, "tar cf "+filepath.Join(local, "again.tar")+" -C untar src")
		sh(t, local, "mkdir again && tar xf again.tar -C again && diff -r src again/src")
	})
	t.Run("rsync", func(t *testing.T) {
		needPrograms(t, "rsync")
		sh(t, local, "rsync -a src/ "+filepath.Join(mnt, "rsynced")+"/ && diff -r src "+filepath.Join(mnt, "rsynced"))
		sameAttrs(t, src, filepath.Join(mnt, "rsynced"))
		// A change on the mount goes back the other way.
		if err := os.WriteFile(filepath.Join(mnt, "rsynced", "pkg2", "f2.go"), []byte("changed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		sh(t, local, "rsync -a "+filepath.Join(mnt, "rsynced")+"/ rback/ && diff -r "+filepath.Join(mnt, "rsynced")+" rback")
		if err := readIs(filepath.Join(local, "rback", "pkg2", "f2.go"), "changed\n"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("git", func(t *testing.T) {
		needPrograms(t, "git")
		repo := filepath.Join(mnt, "repo")
		sh(t, local, "cp -a src "+repo)
		sh(t, repo, "git init -q && git add -A && git commit -qm first")
		if err := os.WriteFile(filepath.Join(repo, "pkg1", "new.go"), []byte("package pkg1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if st := sh(t, repo, "git status --porcelain"); !strings.Contains(st, "?? pkg1/new.go") {
			t.Fatalf("git status:\n%s", st)
		}
		sh(t, repo, "git add -A && git commit -qm second && git gc -q")
		if log := sh(t, repo, "git log --oneline"); strings.Count(log, "\n") != 2 {
			t.Fatalf("git log:\n%s", log)
		}
		if st := sh(t, repo, "git status --porcelain && git fsck --no-progress 2>&1"); st != "" {
			t.Fatalf("git status or fsck after commit:\n%s", st)
		}
	})
	t.Run("sqlite3", func(t *testing.T) {
		needPrograms(t, "sqlite3")
		for _, mode := range []string{"delete", "wal"} {
			db := filepath.Join(mnt, "db-"+mode+".sqlite")
			script := fmt.Sprintf(`PRAGMA journal_mode=%s;
CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
INSERT INTO t SELECT i, printf('value %%d', i) FROM n;
BEGIN; UPDATE t SET v = 'changed' WHERE k %% 7 = 0; COMMIT;
SELECT count(*), sum(k), count(CASE WHEN v = 'changed' THEN 1 END) FROM t;
PRAGMA integrity_check;`, mode)
			out := sh(t, mnt, fmt.Sprintf("sqlite3 %s <<'EOF'\n%s\nEOF", db, script))
			if !strings.Contains(out, "2000|2001000|285") || !strings.Contains(out, "ok") {
				t.Errorf("sqlite3 in %s mode:\n%s", mode, out)
			}
			// A second process reads what the first committed.
			if out := sh(t, mnt, "sqlite3 "+db+" 'SELECT count(*) FROM t'"); strings.TrimSpace(out) != "2000" {
				t.Errorf("sqlite3 reopen in %s mode: %q", mode, out)
			}
		}
	})
}
