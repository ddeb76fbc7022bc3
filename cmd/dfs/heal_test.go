package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/master"
)

// startHealCluster starts one master and n chunkservers that are declared
// dead after deadAfter, with repair configured by rc; Cleanup closes it.
func startHealCluster(t *testing.T, n int, deadAfter time.Duration, rc master.RepairConfig) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{
		Dir: t.TempDir(), Chunkservers: n, HeartbeatInterval: 200 * time.Millisecond,
		DeadAfter: deadAfter, Repair: rc,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFsckDfAdmin drives dfs fsck, df and admin against a cluster whose
// masters do not repair, so fsck's verdicts stay put.
func TestFsckDfAdmin(t *testing.T) {
	c := startHealCluster(t, 3, 3*time.Second, master.RepairConfig{Disabled: true})
	m := "--master=" + strings.Join(c.MasterAddrs(), ",")
	mustDfs(t, []byte(strings.Repeat("cairn", 1<<20)), "put", m, "-", "/big")

	waitExit := func(want int) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, out, errs := dfs(t, nil, "fsck", m, "/")
			if code == want {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("fsck: exit %d, want %d: %s %s", code, want, out, errs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if out := waitExit(0); !strings.Contains(out, "1 files: 1 healthy, 0 degraded, 0 lost; every file can bear 1 more shard losses") {
		t.Fatalf("fsck of a healthy cluster: %q", out)
	}
	out := mustDfs(t, nil, "df", m)
	if !strings.Contains(out, "total") || !strings.Contains(out, "cs1") || !strings.Contains(out, "cs3") || !strings.Contains(out, "USE%") {
		t.Fatalf("df: %q", out)
	}

	mustDfs(t, nil, "admin", m, "drain", "cs3")
	if out := mustDfs(t, nil, "status", m); !strings.Contains(out, "draining") {
		t.Fatalf("status after drain: %q", out)
	}
	mustDfs(t, nil, "admin", m, "undrain", "cs3")
	if code, _, errs := dfs(t, nil, "admin", m, "evict", "cs3"); code == 0 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("admin evict: exit %d, %q", code, errs)
	}

	if err := c.KillChunkserver(0); err != nil {
		t.Fatal(err)
	}
	if out := waitExit(1); !strings.Contains(out, "/big: degraded, can bear 0 more losses") || !strings.Contains(out, "cs1") {
		t.Fatalf("fsck after one loss: %q", out)
	}
	// Dead but still holding shards that nothing rebuilt (no repair
	// here): removing it would forget where they are.
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, _, errs := dfs(t, nil, "admin", m, "remove", "cs1")
		if code != 0 && strings.Contains(errs, "wait for repair") {
			break
		}
		if code == 0 || !strings.Contains(errs, "not yet declared dead") || time.Now().After(deadline) {
			t.Fatalf("remove of a dead chunkserver still holding shards: exit %d, %q", code, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.KillChunkserver(1); err != nil {
		t.Fatal(err)
	}
	if out := waitExit(2); !strings.Contains(out, "/big: LOST") {
		t.Fatalf("fsck after two losses: %q", out)
	}
}

// TestAdminRemove: a chunkserver is removed only once it is stopped and
// no committed slice needs a shard on it; then status no longer lists it.
func TestAdminRemove(t *testing.T) {
	c := startHealCluster(t, 4, 2*time.Second, master.RepairConfig{Interval: 250 * time.Millisecond})
	m := "--master=" + strings.Join(c.MasterAddrs(), ",")
	// Past the inline limit, so on chunkservers: three copies each on
	// three of the four servers.
	const size = 20000
	for i := range 4 {
		mustDfs(t, []byte(strings.Repeat("cairn", size+i)), "put", m, "-", fmt.Sprint("/f", i))
	}
	if code, _, errs := dfs(t, nil, "admin", m, "remove", "cs2"); code == 0 || !strings.Contains(errs, "stop it first") {
		t.Fatalf("remove of a live chunkserver: exit %d, %q", code, errs)
	}
	if code, _, errs := dfs(t, nil, "admin", m, "remove", "cs9"); code == 0 || !strings.Contains(errs, "no such chunkserver") {
		t.Fatalf("remove of an unknown chunkserver: exit %d, %q", code, errs)
	}
	if err := c.KillChunkserver(0); err != nil {
		t.Fatal(err)
	}
	// Refused while it is not yet dead or while repair has not yet
	// rebuilt its shards elsewhere; then accepted.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errs := dfs(t, nil, "admin", m, "remove", "cs1")
		if strings.Contains(errs, "wait for repair") {
			t.Logf("refused: %s", strings.TrimSpace(errs))
		}
		if code == 0 {
			if !strings.Contains(out, "removed cs1") {
				t.Fatalf("remove: %q", out)
			}
			break
		}
		if !strings.Contains(errs, "not yet declared dead") && !strings.Contains(errs, "wait for repair") {
			t.Fatalf("remove of a stopped chunkserver: exit %d, %q", code, errs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("remove still refused: %q", errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := mustDfs(t, nil, "status", m); strings.Contains(out, "cs1") || !strings.Contains(out, "cs2") {
		t.Fatalf("status after removing cs1: %q", out)
	}
	for i := range 4 {
		if out := mustDfs(t, nil, "cat", m, fmt.Sprint("/f", i)); out != strings.Repeat("cairn", size+i) {
			t.Fatalf("/f%d after the removal: %d bytes", i, len(out))
		}
	}
	if code, out, errs := dfs(t, nil, "fsck", m, "/"); code != 0 {
		t.Fatalf("fsck after the removal: exit %d: %s %s", code, out, errs)
	}
}
