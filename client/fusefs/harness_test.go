package fusefs_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/fusefs"
	"github.com/cairnfs/cairn/internal/cluster"
)

// needFUSE skips the test where FUSE cannot work at all (no device, no
// fusermount3). Where both exist, a mount that fails is a failure.
func needFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skipf("no fusermount3: %v", err)
	}
}

func startCluster(t *testing.T, masters, chunkservers int) *cluster.Cluster {
	t.Helper()
	return startClusterConfig(t, cluster.Config{Masters: masters, Chunkservers: chunkservers})
}

// startClusterConfig starts a cluster of cfg in a temporary directory,
// with 200 ms heartbeats unless cfg says otherwise.
func startClusterConfig(t *testing.T, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.Dir = t.TempDir()
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 200 * time.Millisecond
	}
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cluster Close: %v", err)
		}
	})
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// mountConfig tunes a test mount.
type mountConfig struct {
	opts fusefs.Options
	// timeout bounds the client's retries and I/O (default 20s).
	timeout time.Duration
	// masterDialOpts are added to the client's master connections.
	masterDialOpts []grpc.DialOption
}

// mount dials c and mounts it on a fresh directory; Cleanup unmounts
// (also when the test failed) and closes the client.
func mount(t *testing.T, c *cluster.Cluster, mc mountConfig) (string, *fusefs.Server) {
	t.Helper()
	needFUSE(t)
	if mc.timeout == 0 {
		mc.timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.ClientConfig{
		Masters: c.MasterAddrs(), RetryTimeout: mc.timeout, IOTimeout: mc.timeout, CallTimeout: time.Second,
		MasterDialOptions: mc.masterDialOpts,
		Data:              client.Config{ShardReadTimeout: mc.timeout, SliceWriteTimeout: mc.timeout},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
	})
	dir := t.TempDir()
	if mc.opts.OpTimeout == 0 {
		mc.opts.OpTimeout = mc.timeout
	}
	srv, err := fusefs.Mount(context.Background(), cl, dir, mc.opts)
	if err != nil {
		t.Fatalf("mount on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
	})
	return dir, srv
}
