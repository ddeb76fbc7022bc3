package fusefs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lockWaitBound is how long a blocked lock may take to be granted once
// the holder lets go, or a killed waiter to go away: far beyond what
// either needs, it only keeps a broken mount from hanging the test.
const lockWaitBound = 30 * time.Second

// TestLockWaitAcrossMounts checks F_SETLKW between two mounts: the
// waiter is granted the lock once the holder unlocks, never before; and a
// waiter killed while it waits goes away and is never granted anything.
func TestLockWaitAcrossMounts(t *testing.T) {
	c := startCluster(t, 1, 3)
	a, _ := mount(t, c, mountConfig{})
	b, _ := mount(t, c, mountConfig{})
	if err := os.WriteFile(filepath.Join(a, "lockfile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fa, err := os.OpenFile(filepath.Join(a, "lockfile"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.OpenFile(filepath.Join(b, "lockfile"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	whole := func(typ int16) *unix.Flock_t { return &unix.Flock_t{Type: typ} }

	if err := unix.FcntlFlock(fa.Fd(), unix.F_SETLK, whole(unix.F_WRLCK)); err != nil {
		t.Fatalf("lock on the first mount: %v", err)
	}
	var unlocked atomic.Bool
	granted := make(chan error, 1)
	go func() {
		err := unix.FcntlFlock(fb.Fd(), unix.F_SETLKW, whole(unix.F_WRLCK))
		if err == nil && !unlocked.Load() {
			t.Error("F_SETLKW on the second mount was granted while the first mount held the lock")
		}
		granted <- err
	}()
	// Give the waiter time to start waiting; should it not have yet, the
	// test still checks that it is granted.
	time.Sleep(300 * time.Millisecond)
	unlocked.Store(true)
	if err := unix.FcntlFlock(fa.Fd(), unix.F_SETLK, whole(unix.F_UNLCK)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-granted:
		if err != nil {
			t.Fatalf("F_SETLKW on the second mount: %v", err)
		}
	case <-time.After(lockWaitBound):
		t.Fatal("F_SETLKW on the second mount still waits after the first mount unlocked")
	}
	if err := unix.FcntlFlock(fa.Fd(), unix.F_SETLK, whole(unix.F_WRLCK)); err != unix.EAGAIN {
		t.Fatalf("lock on the first mount while the second holds it: %v, want EAGAIN", err)
	}
	if err := unix.FcntlFlock(fb.Fd(), unix.F_SETLK, whole(unix.F_UNLCK)); err != nil {
		t.Fatal(err)
	}

	// A blocking flock(1) on the second mount, killed while the first
	// mount holds the flock.
	flockBin, err := exec.LookPath("flock")
	if err != nil {
		t.Fatalf("flock(1) of util-linux: %v", err)
	}
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock on the first mount: %v", err)
	}
	waiter := exec.Command(flockBin, "--exclusive", filepath.Join(b, "lockfile"), "true")
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- waiter.Wait() }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-exited:
		t.Fatalf("flock(1) on the second mount finished (%v) while the first mount held the lock", err)
	default:
	}
	if err := waiter.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(lockWaitBound):
		t.Fatal("a killed flock(1) waiting on the mount did not go away")
	}
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	// Nothing may hold the flock now: not the dead waiter's open, which
	// its exit closed, nor a wait the mount kept up on its behalf, which
	// the pause gives time to (wrongly) take the lock.
	time.Sleep(time.Second)
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock on the first mount after the waiter was killed: %v", err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Fatalf("flock on the second mount while the first holds it: %v, want EWOULDBLOCK", err)
	}
}
