package integration_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/cairnfs/cairn/client"
)

// TestLayoutCache: opening an unchanged file again costs no GetLayout, and
// a change made by another client (a new version) is seen at the next open.
func TestLayoutCache(t *testing.T) {
	c := startCluster(t, 1, 6)
	var layouts atomic.Int64
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/GetLayout") {
			layouts.Add(1)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	reader := dialConfig(t, client.ClientConfig{Masters: c.MasterAddrs(), MasterDialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(count)}})
	writer := dialCluster(t, c.MasterAddrs())

	v1 := randomBytes(1, 3<<20+1)
	writeFile(t, writer, "/f", v1)
	for i := range 3 {
		if got := readFile(t, reader, "/f"); !bytes.Equal(got, v1) {
			t.Fatalf("read %d: wrong bytes", i)
		}
	}
	if n := layouts.Load(); n != 1 {
		t.Fatalf("three opens of an unchanged file made %d GetLayout calls, want 1", n)
	}
	v2 := randomBytes(2, 1<<20)
	writeFile(t, writer, "/f", v2)
	if got := readFile(t, reader, "/f"); !bytes.Equal(got, v2) {
		t.Fatalf("after another client rewrote the file: %d bytes, want the new %d", len(got), len(v2))
	}
	if n := layouts.Load(); n != 2 {
		t.Fatalf("%d GetLayout calls after the change, want 2", n)
	}
}
