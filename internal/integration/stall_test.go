package integration_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestHungChunkserverRead: a chunkserver that accepts ReadShard and then
// never answers (a hung disk, a stuck process) must not hold reads up for
// the whole read timeout: the stream is given up after the stall timeout
// and the cells are rebuilt from the other shards. The read timeout here
// is far beyond the test's own deadline, so only stall detection lets the
// reads finish.
func TestHungChunkserverRead(t *testing.T) {
	t.Parallel()
	c := startClusterConfig(t, cluster.Config{Chunkservers: 6, DefaultLayout: "RS(4,2)"})
	writer := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs()})
	files := map[string][]byte{}
	for i, n := range []int{4 << 20, 9<<20 + 77} {
		p := fmt.Sprintf("/f%d", i)
		files[p] = randomBytes(uint64(40+i), n)
		writeFile(t, writer, p, files[p])
	}

	// Hang a server the reads need: the holder of data shard 0 of /f0's
	// first slice (a parity holder is read only when something fails).
	hung := ""
	fi, err := writer.Stat(context.Background(), "/f0")
	if err != nil {
		t.Fatal(err)
	}
	err = writer.Conn().Do(context.Background(), func(ctx context.Context, mc masterpb.MasterClient) error {
		lay, err := mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: fi.Inode()})
		if err != nil {
			return err
		}
		for _, sl := range lay.Slices {
			for _, sh := range sl.Shards {
				if sh.Index == 0 && hung == "" {
					hung = sh.Address
				}
			}
		}
		return nil
	})
	if err != nil || hung == "" {
		t.Fatalf("no holder of data shard 0 of /f0 (%v)", err)
	}
	var held atomic.Int64
	hang := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if strings.HasSuffix(method, "/ReadShard") && cc.Target() == hung {
			held.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
	reader := dialConfig(t, client.ClientConfig{
		Masters:   c.MasterAddrs(),
		IOTimeout: 10 * time.Minute,
		Data: client.Config{
			ShardReadTimeout:  10 * time.Minute,
			ShardStallTimeout: 300 * time.Millisecond,
			DialOptions:       []grpc.DialOption{grpc.WithStreamInterceptor(hang)},
		},
	})
	for p, want := range files {
		checkFile(t, reader, p, want)
	}
	if held.Load() == 0 {
		t.Fatal("no read went to the hung chunkserver: the test proves nothing")
	}
}
