package master

import (
	"context"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/cairnfs/cairn/proto/masterpb"
)

func headerFor(client string) *masterpb.RequestHeader {
	h := header()
	h.ClientId = client
	return h
}

// TestLocksAndLeases: locks conflict across clients, a test (F_GETLK)
// names the blocker, an unlock frees the range, and a client that stops
// renewing its lease loses its locks and open handles while one that keeps
// renewing does not.
func TestLocksAndLeases(t *testing.T) {
	const lease = 400 * time.Millisecond
	c := newCluster(t, 1, func(cfg *Config) { cfg.ClientLease = lease })
	c.leader()
	mc := c.masterClient("m1")
	ctx := context.Background()

	f, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: "f", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	ino := f.Attr.Inode
	lock := func(client string, owner uint64, typ masterpb.LockRequest_Type, start, end uint64, test bool) *masterpb.LockResponse {
		t.Helper()
		r, err := mc.Lock(ctx, &masterpb.LockRequest{Header: headerFor(client), Inode: ino, Owner: owner, Type: typ, Start: start, End: end, Test: test})
		if err != nil {
			t.Fatalf("lock %s/%d: %v", client, owner, err)
		}
		return r
	}
	if r := lock("a", 1, masterpb.LockRequest_TYPE_WRITE, 0, 99, false); !r.Granted {
		t.Fatalf("first lock not granted: %v", r)
	}
	r := lock("b", 1, masterpb.LockRequest_TYPE_READ, 50, 50, false)
	if r.Granted || r.Conflict.GetHeader().GetClientId() != "a" || r.Conflict.End != 99 || r.Conflict.Type != masterpb.LockRequest_TYPE_WRITE {
		t.Fatalf("conflicting lock answered %v", r)
	}
	if r := lock("b", 1, masterpb.LockRequest_TYPE_READ, 100, 200, true); !r.Granted {
		t.Fatalf("test of a free range: %v", r)
	}
	lock("a", 1, masterpb.LockRequest_TYPE_UNLOCK, 0, 49, false)
	if r := lock("b", 1, masterpb.LockRequest_TYPE_WRITE, 0, 49, false); !r.Granted {
		t.Fatalf("lock after unlock: %v", r)
	}
	// A request without a client ID is refused.
	_, err = mc.Lock(ctx, &masterpb.LockRequest{Header: &masterpb.RequestHeader{}, Inode: ino, Type: masterpb.LockRequest_TYPE_WRITE})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)

	// Client a keeps renewing; b goes silent holding [0,49] and an open
	// handle on a file that is then unlinked.
	g, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: "g", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Open(ctx, &masterpb.OpenRequest{Header: headerFor("b"), Inode: g.Attr.Inode}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Unlink(ctx, &masterpb.UnlinkRequest{Header: header(), Parent: 1, Name: "g"}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: g.Attr.Inode}); err != nil {
		t.Fatalf("open unlinked file gone at once: %v", err)
	}
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(lease / 4):
			}
			if _, err := mc.KeepAlive(ctx, &masterpb.KeepAliveRequest{ClientId: "a"}); err != nil {
				t.Errorf("keepalive: %v", err)
				return
			}
		}
	}()
	waitFor(t, 20*lease, "b's lock to be released", func() bool {
		return lock("c", 1, masterpb.LockRequest_TYPE_WRITE, 0, 49, true).Granted
	})
	close(stop)
	<-renewed
	if r := lock("c", 1, masterpb.LockRequest_TYPE_WRITE, 50, 99, true); r.Granted {
		t.Fatalf("a's lock went although a renewed its lease")
	}
	_, err = mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: g.Attr.Inode})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
	if err := c.nodes["m1"].srv.fsm.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenUnlinkedRelease: the data of an open, unlinked file lives until
// its handle is released; Concat moves files' bytes into one.
func TestOpenUnlinkedRelease(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	mc := c.masterClient("m1")
	ctx := context.Background()
	f, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: "f", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	o, err := mc.Open(ctx, &masterpb.OpenRequest{Header: headerFor("x"), Inode: f.Attr.Inode})
	if err != nil || o.Handle == 0 {
		t.Fatalf("open: %v %v", o, err)
	}
	_, err = mc.Open(ctx, &masterpb.OpenRequest{Header: &masterpb.RequestHeader{}, Inode: f.Attr.Inode})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)
	if _, err := mc.Unlink(ctx, &masterpb.UnlinkRequest{Header: header(), Parent: 1, Name: "f"}); err != nil {
		t.Fatal(err)
	}
	a, err := mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: f.Attr.Inode})
	if err != nil || a.Attr.Nlink != 0 {
		t.Fatalf("orphan attr %v %v", a, err)
	}
	if _, err := mc.Release(ctx, &masterpb.ReleaseRequest{Header: header(), Inode: f.Attr.Inode, Handle: o.Handle}); err != nil {
		t.Fatal(err)
	}
	_, err = mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: f.Attr.Inode})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)

	// Concat of two empty parts; errors keep their errno.
	for _, n := range []string{"p1", "p2"} {
		if _, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: n, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = mc.Concat(ctx, &masterpb.ConcatRequest{Header: header(), Parent: 1, Name: "obj", Sources: []*masterpb.ConcatRequest_Source{{Parent: 1, Name: "p1"}, {Parent: 1, Name: "nope"}}})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
	cr, err := mc.Concat(ctx, &masterpb.ConcatRequest{Header: header(), Parent: 1, Name: "obj", Mode: 0o640, Sources: []*masterpb.ConcatRequest_Source{{Parent: 1, Name: "p1"}, {Parent: 1, Name: "p2"}}})
	if err != nil || cr.Attr.Mode&0o777 != 0o640 {
		t.Fatalf("concat: %v %v", cr, err)
	}
	_, err = mc.Lookup(ctx, &masterpb.LookupRequest{Parent: 1, Name: "p1"})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
}
