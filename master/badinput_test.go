package master

import (
	"context"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestEmptyRequests sends every unary RPC of every service an empty
// request: each must answer with a clear status (or succeed), never an
// internal error or a panic.
func TestEmptyRequests(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	cc := c.conn(c.nodes["m1"].grpcAddr)
	ctx := context.Background()
	for _, client := range []any{masterpb.NewMasterClient(cc), masterpb.NewRegistryClient(cc), masterpb.NewAdminClient(cc)} {
		v := reflect.ValueOf(client)
		typ := v.Type()
		for i := 0; i < typ.NumMethod(); i++ {
			m := typ.Method(i)
			// Unary: (ctx, *Req, ...CallOption) (*Resp, error).
			if m.Type.NumIn() != 4 || m.Type.NumOut() != 2 || m.Type.In(2).Kind() != reflect.Pointer {
				continue
			}
			req := reflect.New(m.Type.In(2).Elem())
			out := v.Method(i).Call([]reflect.Value{reflect.ValueOf(ctx), req})
			err, _ := out[1].Interface().(error)
			switch status.Code(err) {
			case codes.Internal, codes.Unknown:
				t.Errorf("%s(empty): %v", m.Name, err)
			default:
				t.Logf("%s(empty): %v", m.Name, status.Code(err))
			}
		}
	}
	// Streams: a full report from nobody, an empty stream.
	rc := masterpb.NewRegistryClient(cc)
	stream, err := rc.FullReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&masterpb.FullReportRequest{Id: "nobody", Shards: []*chunkpb.ShardInfo{nil}, Last: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.NotFound {
		t.Errorf("full report from an unknown chunkserver: %v", err)
	}
	stream, err = rc.FullReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty full report: %v", err)
	}
}
