package cluster_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, dir string, masters, chunkservers int) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: dir, Masters: masters, Chunkservers: chunkservers, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func dial(t *testing.T, c *cluster.Cluster) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs(), IOTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestDegradedRead writes 20 MiB through the client, kills a chunkserver
// and reads the file back through a degraded read.
func TestDegradedRead(t *testing.T) {
	c := start(t, t.TempDir(), 1, 6)
	cl := dial(t, c)
	ctx := context.Background()

	data := make([]byte, 20<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	f, err := cl.Create(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.KillChunkserver(2); err != nil {
		t.Fatal(err)
	}
	f, err = cl.Open(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, not the %d written", len(got), len(data))
	}
}

// TestRestart stops a whole cluster and starts it again on the same
// directory: the namespace and the data survive.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c := start(t, dir, 1, 3)
	cl := dial(t, c)
	f, err := cl.Create(ctx, "/kept")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello, cairn")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = start(t, dir, 1, 3)
	cl = dial(t, c)
	f, err = cl.Open(ctx, "/kept")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || string(got) != "hello, cairn" {
		t.Fatalf("after restart: %q, %v", got, err)
	}
}

// TestLeaderChange kills the master leader of a three-master cluster: the
// chunkservers find the new leader and register with it, and a killed
// chunkserver comes back after a restart.
func TestLeaderChange(t *testing.T) {
	c := start(t, t.TempDir(), 3, 3)
	lead := c.Leader()
	if err := c.KillMaster(lead); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Leader() == lead {
		t.Fatal("the killed master still leads")
	}
	if err := c.KillChunkserver(0); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartMaster(ctx, lead); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartChunkserver(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if cs := c.Chunkservers(); !cs[0].Running {
		t.Fatalf("chunkserver 0 not running after restart: %+v", cs)
	}
}
