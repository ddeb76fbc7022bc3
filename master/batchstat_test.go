package master

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestBatchStat checks that every query of a BatchStat is answered as its
// single Lookup or GetAttr would be, failures included, and that an
// oversized batch is refused.
func TestBatchStat(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	mc := c.masterClient("m1")
	ctx := context.Background()
	d, err := mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: "d", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	f, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: d.Attr.Inode, Name: "f", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	queries := []*masterpb.StatQuery{
		{Inode: 1},
		{Inode: d.Attr.Inode, Name: "f"},
		{Inode: f.Attr.Inode},
		{Inode: 1, Name: "missing"},
		{Inode: 9999},
		{Inode: f.Attr.Inode, Name: "x"},           // not a directory
		{Inode: 1, Name: "a/b"},                    // bad name
		{Inode: 1, Name: strings.Repeat("n", 300)}, // too long
		{Inode: 1, Name: "d"},
	}
	resp, err := mc.BatchStat(ctx, &masterpb.BatchStatRequest{Queries: queries})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != len(queries) {
		t.Fatalf("%d results for %d queries", len(resp.Results), len(queries))
	}
	for i, q := range queries {
		var want *masterpb.Attr
		var werr error
		if q.Name == "" {
			var r *masterpb.GetAttrResponse
			if r, werr = mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: q.Inode}); werr == nil {
				want = r.Attr
			}
		} else {
			var r *masterpb.LookupResponse
			if r, werr = mc.Lookup(ctx, &masterpb.LookupRequest{Parent: q.Inode, Name: q.Name}); werr == nil {
				want = r.Attr
			}
		}
		got := resp.Results[i]
		if werr != nil {
			errno := masterpb.ErrnoOf(werr)
			if got.Errno == 0 || syscall.Errno(got.Errno) != errno || got.Attr != nil || got.Error == "" {
				t.Errorf("query %d %v: got %v, single call failed with %v", i, q, got, werr)
			}
			continue
		}
		if got.Errno != 0 || !proto.Equal(got.Attr, want) {
			t.Errorf("query %d %v: got %v, single call answered %v", i, q, got, want)
		}
	}

	_, err = mc.BatchStat(ctx, &masterpb.BatchStatRequest{Queries: make([]*masterpb.StatQuery, MaxBatchStat+1)})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)
}
