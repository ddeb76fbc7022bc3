package master

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/token"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

func TestSingleMasterNamespace(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	mc := c.masterClient("m1")
	ctx := context.Background()

	d, err := mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: "a", Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	if d.Attr.Type != masterpb.FileType_FILE_TYPE_DIRECTORY || d.Attr.Mode&0o777 != 0o755 {
		t.Fatalf("mkdir attr %v", d.Attr)
	}
	f, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: d.Attr.Inode, Name: "f", Mode: 0o644, Exclusive: true})
	if err != nil || !f.Created {
		t.Fatalf("create: %v %v", f, err)
	}
	l, err := mc.Lookup(ctx, &masterpb.LookupRequest{Parent: d.Attr.Inode, Name: "f"})
	if err != nil || l.Attr.Inode != f.Attr.Inode {
		t.Fatalf("lookup: %v %v", l, err)
	}
	g, err := mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: f.Attr.Inode})
	if err != nil || g.Attr.Type != masterpb.FileType_FILE_TYPE_REGULAR {
		t.Fatalf("getattr: %v %v", g, err)
	}
	rd, err := mc.ReadDir(ctx, &masterpb.ReadDirRequest{Inode: d.Attr.Inode, WithAttrs: true})
	if err != nil || len(rd.Entries) != 1 || rd.Entries[0].Name != "f" || rd.Entries[0].Attr == nil {
		t.Fatalf("readdir: %v %v", rd, err)
	}
	if _, err := mc.Rename(ctx, &masterpb.RenameRequest{Header: header(), OldParent: d.Attr.Inode, OldName: "f", NewParent: 1, NewName: "g"}); err != nil {
		t.Fatal(err)
	}
	_, err = mc.Lookup(ctx, &masterpb.LookupRequest{Parent: d.Attr.Inode, Name: "f"})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
	if l, err := mc.Lookup(ctx, &masterpb.LookupRequest{Parent: 1, Name: "g"}); err != nil || l.Attr.Inode != f.Attr.Inode {
		t.Fatalf("lookup after rename: %v %v", l, err)
	}

	// A retried create (same request ID) is applied once and answers the
	// same; without a request ID an exclusive create of an existing name
	// fails.
	h := header()
	c1, err := mc.Create(ctx, &masterpb.CreateRequest{Header: h, Parent: 1, Name: "once", Mode: 0o644, Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := mc.Create(ctx, &masterpb.CreateRequest{Header: h, Parent: 1, Name: "once", Mode: 0o644, Exclusive: true})
	if err != nil || c2.Attr.Inode != c1.Attr.Inode {
		t.Fatalf("retried create: %v %v", c2, err)
	}
	_, err = mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: "once", Mode: 0o644, Exclusive: true})
	wantErrno(t, err, codes.AlreadyExists, syscall.EEXIST)

	// Errors carry errno.
	_, err = mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: "a", Mode: 0o755})
	wantErrno(t, err, codes.AlreadyExists, syscall.EEXIST)
	if _, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: d.Attr.Inode, Name: "x", Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	_, err = mc.Rmdir(ctx, &masterpb.RmdirRequest{Header: header(), Parent: 1, Name: "a"})
	wantErrno(t, err, codes.FailedPrecondition, syscall.ENOTEMPTY)
	_, err = mc.Rmdir(ctx, &masterpb.RmdirRequest{Header: header(), Parent: 1, Name: "g"})
	wantErrno(t, err, codes.FailedPrecondition, syscall.ENOTDIR)
	_, err = mc.Unlink(ctx, &masterpb.UnlinkRequest{Header: header(), Parent: 1, Name: "a"})
	wantErrno(t, err, codes.FailedPrecondition, syscall.EISDIR)
	_, err = mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: f.Attr.Inode, Name: "y", Mode: 0o644})
	wantErrno(t, err, codes.FailedPrecondition, syscall.ENOTDIR)
	_, err = mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: 999999})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
	_, err = mc.ReadDir(ctx, &masterpb.ReadDirRequest{Inode: 0})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
	for _, name := range []string{"", ".", "..", "a/b", "nul\x00", strings.Repeat("n", 256)} {
		want := syscall.EINVAL
		if len(name) > 255 {
			want = syscall.ENAMETOOLONG
		}
		_, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: name, Mode: 0o644})
		wantErrno(t, err, codes.InvalidArgument, want)
		_, err = mc.Lookup(ctx, &masterpb.LookupRequest{Parent: 1, Name: name})
		wantErrno(t, err, codes.InvalidArgument, want)
	}
	if _, err := mc.Unlink(ctx, &masterpb.UnlinkRequest{Header: header(), Parent: 1, Name: "g"}); err != nil {
		t.Fatal(err)
	}
	_, err = mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: f.Attr.Inode})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)

	// Permissions: uid 1000 may not create in root's 0755 directory, may
	// in its own, and may not chown.
	user := func() *masterpb.RequestHeader { h := header(); h.Uid, h.Gid = 1000, 1000; return h }
	_, err = mc.Create(ctx, &masterpb.CreateRequest{Header: user(), Parent: 1, Name: "u", Mode: 0o644})
	wantErrno(t, err, codes.PermissionDenied, syscall.EACCES)
	home, err := mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: "home", Mode: 0o777})
	if err != nil {
		t.Fatal(err)
	}
	uf, err := mc.Create(ctx, &masterpb.CreateRequest{Header: user(), Parent: home.Attr.Inode, Name: "u", Mode: 0o644})
	if err != nil || uf.Attr.Uid != 1000 {
		t.Fatalf("create as user: %v %v", uf, err)
	}
	root := uint32(0)
	_, err = mc.SetAttr(ctx, &masterpb.SetAttrRequest{Header: user(), Inode: uf.Attr.Inode, Uid: &root})
	wantErrno(t, err, codes.PermissionDenied, syscall.EPERM)
	mode := uint32(0o600)
	if _, err := mc.SetAttr(ctx, &masterpb.SetAttrRequest{Header: user(), Inode: uf.Attr.Inode, Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	// Attribute changes riding with a write obey the same rules, and
	// are refused before the bytes are written.
	_, err = mc.WriteInline(ctx, &masterpb.WriteInlineRequest{Header: user(), Inode: uf.Attr.Inode, Data: []byte("x"),
		Attrs: &masterpb.AttrUpdate{Uid: &root}})
	wantErrno(t, err, codes.PermissionDenied, syscall.EPERM)
	if a, err := mc.GetAttr(ctx, &masterpb.GetAttrRequest{Inode: uf.Attr.Inode}); err != nil || a.Attr.Size != 0 {
		t.Fatalf("a refused inline write left %v, %v", a, err)
	}
	mode = 0o640
	w, err := mc.WriteInline(ctx, &masterpb.WriteInlineRequest{Header: user(), Inode: uf.Attr.Inode, Data: []byte("x"),
		Attrs: &masterpb.AttrUpdate{Mode: &mode}})
	if err != nil || w.Attr.Size != 1 || w.Attr.Mode != 0o640 {
		t.Fatalf("inline write with chmod: %v, %v", w, err)
	}

	// Status and metrics.
	st, err := mc.Status(ctx, &masterpb.StatusRequest{})
	if err != nil || len(st.Masters) != 1 || st.Masters[0].State != "leader" || st.Masters[0].AppliedIndex == 0 {
		t.Fatalf("status: %v %v", st, err)
	}
}

// registerChunkservers registers n fake chunkservers cs-1..cs-n with 1 TB
// each and heartbeats them once.
func registerChunkservers(t *testing.T, rc masterpb.RegistryClient, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("cs-%d", i)
		r, err := rc.Register(ctx, &masterpb.RegisterRequest{Id: id, Address: fmt.Sprintf("127.0.0.1:%d", 9000+i),
			Rack: fmt.Sprintf("r%d", i%3), CapacityBytes: 1 << 40, FreeBytes: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		if r.HeartbeatIntervalMs == 0 {
			t.Fatal("no heartbeat interval")
		}
		hb, err := rc.Heartbeat(ctx, &masterpb.HeartbeatRequest{Id: id, CapacityBytes: 1 << 40, FreeBytes: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		if !hb.FullReportWanted {
			t.Fatal("a new chunkserver was not asked for a full report")
		}
		stream, err := rc.FullReport(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&masterpb.FullReportRequest{Id: id, Last: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
		hb, err = rc.Heartbeat(ctx, &masterpb.HeartbeatRequest{Id: id, CapacityBytes: 1 << 40, FreeBytes: 1 << 40})
		if err != nil || hb.FullReportWanted {
			t.Fatalf("heartbeat after report: %v %v", hb, err)
		}
	}
}

func TestSingleMasterSlices(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	cc := c.conn(c.nodes["m1"].grpcAddr)
	mc, rc := masterpb.NewMasterClient(cc), masterpb.NewRegistryClient(cc)
	ctx := context.Background()
	signer, _ := token.NewSigner(testKey)

	f, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: 1, Name: "f", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	ino := f.Attr.Inode

	// No chunkservers: Unavailable while the new leader's registry
	// refills (a heartbeat interval), then a clear error.
	for {
		_, err = mc.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: header(), Inode: ino, Length: 1 << 20})
		if status.Code(err) != codes.Unavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantErrno(t, err, codes.ResourceExhausted, syscall.ENOSPC)

	// A heartbeat from an unknown chunkserver: register again.
	_, err = rc.Heartbeat(ctx, &masterpb.HeartbeatRequest{Id: "nobody"})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
	if !strings.Contains(err.Error(), "register again") {
		t.Fatalf("heartbeat error %v does not say to register again", err)
	}
	_, err = rc.Register(ctx, &masterpb.RegisterRequest{Id: "cs-x"})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)

	registerChunkservers(t, rc, 6)

	// 8 MiB with 6 live chunkservers: RS(4,2) on 6 distinct servers.
	const length = 8 << 20
	a, err := mc.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: header(), Inode: ino, Length: length})
	if err != nil {
		t.Fatal(err)
	}
	l, err := wirelayout.FromProto(a.Layout)
	if err != nil || l != erasure.RS(4, 2) {
		t.Fatalf("layout %v (%v), want RS(4,2)", a.Layout, err)
	}
	if len(a.Shards) != 6 {
		t.Fatalf("%d shards", len(a.Shards))
	}
	seen := map[string]bool{}
	for i, sh := range a.Shards {
		if sh.Index != uint32(i) || seen[sh.ChunkserverId] || sh.Address == "" {
			t.Fatalf("shard %d: %v (seen %v)", i, sh, seen)
		}
		seen[sh.ChunkserverId] = true
		n := uint64(l.ShardLength(length, i))
		if err := signer.Verify(sh.Token, chunkpb.TokenOp_TOKEN_OP_WRITE, a.SliceId, uint32(i), n, time.Now()); err != nil {
			t.Fatalf("shard %d token: %v", i, err)
		}
		if err := signer.Verify(sh.Token, chunkpb.TokenOp_TOKEN_OP_WRITE, a.SliceId, uint32(i), n+1, time.Now()); err == nil {
			t.Fatalf("shard %d token allows more than the shard's length", i)
		}
	}

	// Commit and read the layout back.
	cm, err := mc.CommitSlice(ctx, &masterpb.CommitSliceRequest{Header: header(), Inode: ino, SliceId: a.SliceId, Length: length, Shards: a.Shards})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Attr.Size != length {
		t.Fatalf("size after commit %d", cm.Attr.Size)
	}
	gl, err := mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: ino})
	if err != nil {
		t.Fatal(err)
	}
	if len(gl.Slices) != 1 || gl.Slices[0].SliceId != a.SliceId || len(gl.Slices[0].Shards) != 6 || gl.Slices[0].Shards[0].Address == "" {
		t.Fatalf("layout: %v", gl)
	}
	// Committing again, or an unknown slice, is refused.
	_, err = mc.CommitSlice(ctx, &masterpb.CommitSliceRequest{Header: header(), Inode: ino, SliceId: a.SliceId, Length: length})
	wantErrno(t, err, codes.AlreadyExists, syscall.EEXIST)
	_, err = mc.CommitSlice(ctx, &masterpb.CommitSliceRequest{Header: header(), Inode: ino, SliceId: 12345, Length: 1})
	wantErrno(t, err, codes.NotFound, syscall.ENOENT)
	_, err = mc.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: header(), Inode: 1, Length: 1})
	wantErrno(t, err, codes.FailedPrecondition, syscall.EISDIR)
	_, err = mc.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: header(), Inode: ino})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)

	// A short slice is replicated m+1 = 3 times; a shard can be moved.
	small, err := mc.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: header(), Inode: ino, Length: 100})
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := wirelayout.FromProto(small.Layout); l != erasure.Replicated(3) {
		t.Fatalf("short slice layout %v", small.Layout)
	}
	old := small.Shards[1].ChunkserverId
	rs, err := mc.ReplaceShard(ctx, &masterpb.ReplaceShardRequest{Header: header(), SliceId: small.SliceId, Index: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Shard.ChunkserverId == old || rs.Shard.ChunkserverId == small.Shards[0].ChunkserverId || rs.Shard.ChunkserverId == small.Shards[2].ChunkserverId {
		t.Fatalf("substitute %q for %q among %v", rs.Shard.ChunkserverId, old, small.Shards)
	}
	if err := signer.Verify(rs.Shard.Token, chunkpb.TokenOp_TOKEN_OP_WRITE, small.SliceId, 1, 100, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The commit must name the substitute, not the replaced server.
	_, err = mc.CommitSlice(ctx, &masterpb.CommitSliceRequest{Header: header(), Inode: ino, SliceId: small.SliceId, Offset: length, Length: 100, Shards: small.Shards})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)
	shards := []*masterpb.ShardLocation{small.Shards[0], rs.Shard}
	if _, err := mc.CommitSlice(ctx, &masterpb.CommitSliceRequest{Header: header(), Inode: ino, SliceId: small.SliceId, Offset: length, Length: 100, Shards: shards}); err != nil {
		t.Fatal(err)
	}

	// A directory policy wider than the cluster: a clear error.
	wide, err := mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: "wide", Mode: 0o755, Layout: wirelayout.ToProto(erasure.RS(8, 3))})
	if err != nil {
		t.Fatal(err)
	}
	wf, err := mc.Create(ctx, &masterpb.CreateRequest{Header: header(), Parent: wide.Attr.Inode, Name: "f", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mc.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: header(), Inode: wf.Attr.Inode, Length: 64 << 20})
	wantErrno(t, err, codes.ResourceExhausted, syscall.ENOSPC)
	if !strings.Contains(err.Error(), "RS(8,3) needs 11 chunkservers, 6 are eligible") {
		t.Fatalf("too-few error does not explain: %v", err)
	}
	_, err = mc.Mkdir(ctx, &masterpb.MkdirRequest{Header: header(), Parent: 1, Name: "bad", Mode: 0o755,
		Layout: &chunkpb.Layout{Kind: chunkpb.Layout_KIND_STRIPED, DataShards: 2, ParityShards: 3}})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)

	st, err := mc.Status(ctx, &masterpb.StatusRequest{})
	if err != nil || len(st.Chunkservers) != 6 || st.Slices != 2 || st.Chunkservers[0].State != "live" {
		t.Fatalf("status: %v %v", st, err)
	}
	fs, err := mc.StatFS(ctx, &masterpb.StatFSRequest{})
	if err != nil || fs.TotalBytes != 6<<40 || fs.Inodes != 4 {
		t.Fatalf("statfs: %v %v", fs, err)
	}

	// A packed slice: its extents place its bytes; offset and length
	// must then be 0, so a master that ignored extents would refuse.
	packed, err := mc.AllocateSlice(ctx, &masterpb.AllocateSliceRequest{Header: header(), Inode: ino, Length: 8192})
	if err != nil {
		t.Fatal(err)
	}
	exts := []*masterpb.Extent{{FileOffset: 4096, SliceOffset: 0, Length: 4096}, {FileOffset: 3 << 20, SliceOffset: 4096, Length: 4096}}
	_, err = mc.CommitSlice(ctx, &masterpb.CommitSliceRequest{Header: header(), Inode: ino, SliceId: packed.SliceId, Length: 8192, Extents: exts})
	wantErrno(t, err, codes.InvalidArgument, syscall.EINVAL)
	if _, err := mc.CommitSlice(ctx, &masterpb.CommitSliceRequest{Header: header(), Inode: ino, SliceId: packed.SliceId, Extents: exts, Shards: packed.Shards}); err != nil {
		t.Fatal(err)
	}
	gl, err = mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: ino, Offset: 0, Length: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range gl.Slices {
		if r.SliceId == packed.SliceId {
			got = append(got, fmt.Sprintf("%d+%d@%d/%d", r.FileOffset, r.Length, r.SliceOffset, r.SliceLength))
		}
	}
	if want := []string{"4096+4096@0/8192", "3145728+4096@4096/8192"}; !slices.Equal(got, want) {
		t.Fatalf("packed slice's refs %v, want %v", got, want)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	c.leader()
	addr := c.nodes["m1"].srv.HTTPAddr()
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s %s", path, resp.Status, b)
		}
		return string(b)
	}
	if body := get("/healthz"); !strings.HasPrefix(body, "ok Leader") {
		t.Fatalf("healthz: %q", body)
	}
	body := get("/metrics")
	for _, m := range []string{"cairn_master_raft_state", "cairn_master_raft_term", "cairn_master_commit_seconds",
		"cairn_master_proposals_per_entry", "cairn_master_inodes", "cairn_master_chunkservers_live", `master="m1"`} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	if body := get("/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ lists no goroutine profile: %.200q", body)
	}
	http.DefaultClient.CloseIdleConnections()
}
