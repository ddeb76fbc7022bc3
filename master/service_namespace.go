package master

import (
	"context"
	"errors"
	"time"

	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// masterService implements masterpb.MasterServer: the namespace here,
// slices in service_data.go, handles, locks, leases and Concat in
// service_sessions.go.
type masterService struct {
	masterpb.UnimplementedMasterServer
	s *Server
}

// linearize returns once a read may be served from the local state
// machine (see readindex.go), or the status to answer with.
func (s *Server) linearize(ctx context.Context) error {
	if !s.leadership().leader {
		return s.notLeader()
	}
	start := time.Now()
	err := s.reads.wait(ctx)
	s.metrics.readSeconds.Observe(seconds(time.Since(start)))
	return s.toStatus(err)
}

// leaderOnly returns nil if this master leads and is ready, else the
// status to answer with (waiting for readiness if it leads).
func (s *Server) leaderOnly(ctx context.Context) error {
	_, err := s.awaitLeader(ctx)
	return s.toStatus(err)
}

// propose commits cmd through Raft with the header's request ID and the
// leader's time, and returns its result, or the status to answer with.
func (s *Server) propose(ctx context.Context, h *masterpb.RequestHeader, cmd *fsmpb.Command) (fsm.Result, error) {
	if err := s.leaderOnly(ctx); err != nil {
		return fsm.Result{}, err
	}
	cmd.NowUnixNano = s.now().UnixNano()
	cmd.RequestId = h.GetRequestId()
	cmd.ClientId = h.GetClientId()
	res, err := s.batch.propose(ctx, s.stopping, cmd)
	if err == nil {
		err = res.Err
	}
	return res, s.toStatus(err)
}

func (m *masterService) Lookup(ctx context.Context, req *masterpb.LookupRequest) (*masterpb.LookupResponse, error) {
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	a, err := m.s.fsm.Lookup(req.Parent, req.Name)
	if err != nil {
		return nil, m.s.toStatus(err)
	}
	return &masterpb.LookupResponse{Attr: a}, nil
}

func (m *masterService) GetAttr(ctx context.Context, req *masterpb.GetAttrRequest) (*masterpb.GetAttrResponse, error) {
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	a, err := m.s.fsm.GetAttr(req.Inode)
	if err != nil {
		return nil, m.s.toStatus(err)
	}
	return &masterpb.GetAttrResponse{Attr: a}, nil
}

// MaxBatchStat caps the queries of one BatchStat call.
const MaxBatchStat = 1024

// BatchStat answers each query as Lookup or GetAttr would, all after one
// linearizable read barrier: a write acknowledged before the call arrived is
// visible to every query in it.
func (m *masterService) BatchStat(ctx context.Context, req *masterpb.BatchStatRequest) (*masterpb.BatchStatResponse, error) {
	if len(req.Queries) > MaxBatchStat {
		return nil, invalid("batchstat", "%d queries, at most %d", len(req.Queries), MaxBatchStat)
	}
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	resp := &masterpb.BatchStatResponse{Results: make([]*masterpb.StatResult, len(req.Queries))}
	for i, q := range req.Queries {
		var a *masterpb.Attr
		var err error
		if q.GetName() == "" {
			a, err = m.s.fsm.GetAttr(q.GetInode())
		} else {
			a, err = m.s.fsm.Lookup(q.GetInode(), q.GetName())
		}
		var fe *fsm.Error
		switch {
		case err == nil:
			resp.Results[i] = &masterpb.StatResult{Attr: a}
		case errors.As(err, &fe):
			resp.Results[i] = &masterpb.StatResult{Errno: uint32(fe.Errno), Error: fe.Error()}
		default:
			// Not the file system's answer: the whole call fails, as the
			// single call would.
			return nil, m.s.toStatus(err)
		}
	}
	return resp, nil
}

func (m *masterService) SetAttr(ctx context.Context, req *masterpb.SetAttrRequest) (*masterpb.SetAttrResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if err := s.checkSetAttr(credOf(req.Header), req); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_SetAttr{SetAttr: &fsmpb.SetAttr{
		Inode:         req.Inode,
		Mode:          req.Mode,
		Uid:           req.Uid,
		Gid:           req.Gid,
		Size:          req.Size,
		AtimeUnixNano: req.AtimeUnixNano,
		MtimeUnixNano: req.MtimeUnixNano,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.SetAttrResponse{Attr: res.Attr}, nil
}

func (m *masterService) Mkdir(ctx context.Context, req *masterpb.MkdirRequest) (*masterpb.MkdirResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if req.Layout != nil {
		if _, err := wirelayout.FromProto(req.Layout); err != nil {
			return nil, invalid("mkdir", "layout: %v", err)
		}
	}
	c := credOf(req.Header)
	dir, err := s.checkDirWrite("mkdir", c, req.Parent)
	if err != nil {
		return nil, err
	}
	gid, mode := newOwnership(c, dir, req.Mode, true)
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Mkdir{Mkdir: &fsmpb.Mkdir{
		Parent: req.Parent, Name: req.Name, Mode: mode, Uid: c.uid, Gid: gid, Layout: req.Layout,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.MkdirResponse{Attr: res.Attr, Dirs: res.Dirs}, nil
}

func (m *masterService) Create(ctx context.Context, req *masterpb.CreateRequest) (*masterpb.CreateResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	openFor := ""
	if req.Open {
		// Opening holds a handle under the client's lease, as Open does.
		if _, err := s.session(ctx, "create", req.Header); err != nil {
			return nil, err
		}
		openFor = req.Header.GetClientId()
	}
	c := credOf(req.Header)
	dir, err := s.checkCreate(c, req.Parent, req.Name, req.Truncate)
	if err != nil {
		return nil, err
	}
	gid, mode := newOwnership(c, dir, req.Mode, false)
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Create{Create: &fsmpb.Create{
		Parent: req.Parent, Name: req.Name, Mode: mode, Uid: c.uid, Gid: gid,
		Exclusive: req.Exclusive, Truncate: req.Truncate, OpenForClient: openFor,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.CreateResponse{Attr: res.Attr, Created: res.Created, Handle: res.Handle, Dirs: res.Dirs}, nil
}

func (m *masterService) Mknod(ctx context.Context, req *masterpb.MknodRequest) (*masterpb.MknodResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	c := credOf(req.Header)
	dir, err := s.checkDirWrite("mknod", c, req.Parent)
	if err != nil {
		return nil, err
	}
	gid, mode := newOwnership(c, dir, req.Mode, req.Type == masterpb.FileType_FILE_TYPE_DIRECTORY)
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Mknod{Mknod: &fsmpb.Mknod{
		Parent: req.Parent, Name: req.Name, Type: req.Type, Mode: mode, Uid: c.uid, Gid: gid, Rdev: req.Rdev,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.MknodResponse{Attr: res.Attr, Dirs: res.Dirs}, nil
}

func (m *masterService) Unlink(ctx context.Context, req *masterpb.UnlinkRequest) (*masterpb.UnlinkResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if err := s.checkRemove("unlink", credOf(req.Header), req.Parent, req.Name); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Unlink{Unlink: &fsmpb.Unlink{
		Parent: req.Parent, Name: req.Name,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.UnlinkResponse{Dirs: res.Dirs}, nil
}

func (m *masterService) Rmdir(ctx context.Context, req *masterpb.RmdirRequest) (*masterpb.RmdirResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if err := s.checkRemove("rmdir", credOf(req.Header), req.Parent, req.Name); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Rmdir{Rmdir: &fsmpb.Rmdir{
		Parent: req.Parent, Name: req.Name,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.RmdirResponse{Dirs: res.Dirs}, nil
}

func (m *masterService) Rename(ctx context.Context, req *masterpb.RenameRequest) (*masterpb.RenameResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	c := credOf(req.Header)
	if err := s.checkRemove("rename", c, req.OldParent, req.OldName); err != nil {
		return nil, err
	}
	// The target entry is replaced (or, exchanging, moved), so the same
	// rules apply to it when it exists.
	if err := s.checkRemove("rename", c, req.NewParent, req.NewName); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Rename{Rename: &fsmpb.Rename{
		OldParent: req.OldParent, OldName: req.OldName, NewParent: req.NewParent, NewName: req.NewName, Mode: req.Mode,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.RenameResponse{Dirs: res.Dirs}, nil
}

func (m *masterService) Link(ctx context.Context, req *masterpb.LinkRequest) (*masterpb.LinkResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if _, err := s.checkDirWrite("link", credOf(req.Header), req.NewParent); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Link{Link: &fsmpb.Link{
		Inode: req.Inode, NewParent: req.NewParent, NewName: req.NewName,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.LinkResponse{Attr: res.Attr, Dirs: res.Dirs}, nil
}

func (m *masterService) Symlink(ctx context.Context, req *masterpb.SymlinkRequest) (*masterpb.SymlinkResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	c := credOf(req.Header)
	dir, err := s.checkDirWrite("symlink", c, req.Parent)
	if err != nil {
		return nil, err
	}
	gid, _ := newOwnership(c, dir, 0, false)
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_Symlink{Symlink: &fsmpb.Symlink{
		Parent: req.Parent, Name: req.Name, Target: req.Target, Uid: c.uid, Gid: gid,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.SymlinkResponse{Attr: res.Attr, Dirs: res.Dirs}, nil
}

func (m *masterService) Readlink(ctx context.Context, req *masterpb.ReadlinkRequest) (*masterpb.ReadlinkResponse, error) {
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	target, err := m.s.fsm.Readlink(req.Inode)
	if err != nil {
		return nil, m.s.toStatus(err)
	}
	return &masterpb.ReadlinkResponse{Target: target}, nil
}

func (m *masterService) ReadDir(ctx context.Context, req *masterpb.ReadDirRequest) (*masterpb.ReadDirResponse, error) {
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	entries, more, err := m.s.fsm.ReadDir(req.Inode, req.StartAfter, int(min(req.Limit, fsm.MaxReadDirLimit)), req.WithAttrs)
	if err != nil {
		return nil, m.s.toStatus(err)
	}
	return &masterpb.ReadDirResponse{Entries: entries, More: more}, nil
}

func (m *masterService) GetXattr(ctx context.Context, req *masterpb.GetXattrRequest) (*masterpb.GetXattrResponse, error) {
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	v, err := m.s.fsm.GetXattr(req.Inode, req.Name)
	if err != nil {
		return nil, m.s.toStatus(err)
	}
	return &masterpb.GetXattrResponse{Value: v}, nil
}

func (m *masterService) ListXattr(ctx context.Context, req *masterpb.ListXattrRequest) (*masterpb.ListXattrResponse, error) {
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	names, err := m.s.fsm.ListXattr(req.Inode)
	if err != nil {
		return nil, m.s.toStatus(err)
	}
	return &masterpb.ListXattrResponse{Names: names}, nil
}

func (m *masterService) SetXattr(ctx context.Context, req *masterpb.SetXattrRequest) (*masterpb.SetXattrResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if err := s.checkXattrWrite("setxattr", credOf(req.Header), req.Inode, req.Name); err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_SetXattr{SetXattr: &fsmpb.SetXattr{
		Inode: req.Inode, Name: req.Name, Value: req.Value, Flag: req.Flag,
	}}}); err != nil {
		return nil, err
	}
	return &masterpb.SetXattrResponse{}, nil
}

func (m *masterService) RemoveXattr(ctx context.Context, req *masterpb.RemoveXattrRequest) (*masterpb.RemoveXattrResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if err := s.checkXattrWrite("removexattr", credOf(req.Header), req.Inode, req.Name); err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_RemoveXattr{RemoveXattr: &fsmpb.RemoveXattr{
		Inode: req.Inode, Name: req.Name,
	}}}); err != nil {
		return nil, err
	}
	return &masterpb.RemoveXattrResponse{}, nil
}

// StatFS reports the namespace's inode count and the chunkservers' raw
// capacity and free space (before erasure coding), as the leader's
// registry knows them.
func (m *masterService) StatFS(ctx context.Context, _ *masterpb.StatFSRequest) (*masterpb.StatFSResponse, error) {
	if err := m.s.linearize(ctx); err != nil {
		return nil, err
	}
	st, err := m.s.fsm.StatFS()
	if err != nil {
		return nil, m.s.toStatus(err)
	}
	resp := &masterpb.StatFSResponse{Inodes: st.Inodes}
	for _, sv := range m.s.registry().Servers() {
		resp.TotalBytes += sv.Capacity
		resp.FreeBytes += sv.Free
	}
	if resp.TotalBytes > resp.FreeBytes {
		resp.UsedBytes = resp.TotalBytes - resp.FreeBytes
	}
	return resp, nil
}
