package master

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairnfs/cairn/master/internal/registry"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// membershipTimeout bounds how long a membership change may wait to be
// committed.
const membershipTimeout = 30 * time.Second

// adminService implements masterpb.AdminServer, on the leader only.
type adminService struct {
	masterpb.UnimplementedAdminServer
	s *Server
}

// AddMaster adds a voter to the Raft group. address is the new master's
// Raft address; grpc_address, if given, goes into the master directory at
// once. The new master must have been started with Join (empty state); it
// catches up from the log or, if the log was compacted, from a snapshot
// streamed by the leader. Adding a master that is already a member with
// the same address succeeds and changes nothing.
func (a *adminService) AddMaster(ctx context.Context, req *masterpb.AddMasterRequest) (*masterpb.AddMasterResponse, error) {
	const op = "addmaster"
	s := a.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if req.Id == "" || req.Address == "" {
		return nil, invalid(op, "master ID and Raft address are required")
	}
	if req.GrpcAddress != "" {
		if err := s.setMaster(ctx, &fsmpb.SetMaster{Id: req.Id, GrpcAddress: req.GrpcAddress}); err != nil {
			return nil, err
		}
	}
	if err := s.raft.AddVoter(raft.ServerID(req.Id), raft.ServerAddress(req.Address), 0, membershipTimeout).Error(); err != nil {
		return nil, s.toStatus(err)
	}
	s.log.Info("master added", "id", req.Id, "raft", req.Address, "grpc", req.GrpcAddress)
	return &masterpb.AddMasterResponse{}, nil
}

// RemoveMaster removes a master from the Raft group and the directory.
// Removing the leader itself is allowed: it steps down once the change
// commits and the others elect a new leader.
func (a *adminService) RemoveMaster(ctx context.Context, req *masterpb.RemoveMasterRequest) (*masterpb.RemoveMasterResponse, error) {
	const op = "removemaster"
	s := a.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.toStatus(err)
	}
	member := false
	for _, sv := range f.Configuration().Servers {
		member = member || sv.ID == raft.ServerID(req.Id)
	}
	if !member {
		return nil, errnoErr(syscall.ENOENT, op, "master %q is not a member", req.Id)
	}
	// The directory entry goes first: once the leader removes itself it
	// can propose nothing more.
	if err := s.setMaster(ctx, &fsmpb.SetMaster{Id: req.Id, Remove: true}); err != nil {
		return nil, err
	}
	if err := s.raft.RemoveServer(raft.ServerID(req.Id), 0, membershipTimeout).Error(); err != nil {
		return nil, s.toStatus(err)
	}
	s.log.Info("master removed", "id", req.Id)
	return &masterpb.RemoveMasterResponse{}, nil
}

func (s *Server) setMaster(ctx context.Context, m *fsmpb.SetMaster) error {
	_, err := s.propose(ctx, nil, &fsmpb.Command{Op: &fsmpb.Command_SetMaster{SetMaster: m}})
	return err
}

// Drain marks a chunkserver as draining: it takes no new shards, keeps
// serving reads, and repair moves its shards to other servers (least
// redundant slices first, after any rebuilds). The mark is recorded
// through Raft, so a new leader keeps draining; Status shows the server
// "drained" once it holds no shard any slice needs.
func (a *adminService) Drain(ctx context.Context, req *masterpb.DrainRequest) (*masterpb.DrainResponse, error) {
	if err := a.s.setDrain(ctx, "drain", req.ChunkserverId, true); err != nil {
		return nil, err
	}
	return &masterpb.DrainResponse{}, nil
}

// Undrain clears a drain mark; shards already moved stay where they are.
func (a *adminService) Undrain(ctx context.Context, req *masterpb.UndrainRequest) (*masterpb.UndrainResponse, error) {
	if err := a.s.setDrain(ctx, "undrain", req.ChunkserverId, false); err != nil {
		return nil, err
	}
	return &masterpb.UndrainResponse{}, nil
}

func (s *Server) setDrain(ctx context.Context, op, id string, on bool) error {
	if err := s.leaderOnly(ctx); err != nil {
		return err
	}
	if id == "" {
		return invalid(op, "chunkserver ID is required")
	}
	if _, err := s.propose(ctx, nil, &fsmpb.Command{Op: &fsmpb.Command_SetDrain{SetDrain: &fsmpb.SetDrain{ChunkserverId: id, Draining: on}}}); err != nil {
		return err
	}
	if on {
		s.registry().Drain(id)
	} else {
		s.registry().Undrain(id)
	}
	return nil
}

// Status describes the cluster as this master sees it; any master answers
// (no NotLeader), so an operator can ask each one. Masters come from the
// Raft configuration: address is the gRPC address from the master
// directory (the Raft address when unknown); state, term and applied
// index are exact for the answering master, while for the others state
// is "leader", "follower" or "nonvoter" as this master believes, and term
// and applied index are 0. Chunkservers are the leader's registry (empty
// on a follower), a draining one shown "drained" once it holds no shard a
// slice needs; slices counts committed slices; degraded and lost slices
// and the bytes left to rebuild come from the leader's latest repair scan
// (0 on a follower); fragmented chunks are those waiting for compaction.
func (m *masterService) Status(ctx context.Context, _ *masterpb.StatusRequest) (*masterpb.StatusResponse, error) {
	s := m.s
	resp := &masterpb.StatusResponse{}
	dir := map[string]string{}
	if ms, err := s.fsm.Masters(); err == nil {
		for _, rec := range ms {
			dir[rec.Id] = rec.GrpcAddress
		}
	}
	dir[s.cfg.ID] = s.grpcAdvertise
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.toStatus(err)
	}
	_, leaderID := s.raft.LeaderWithID()
	for _, sv := range f.Configuration().Servers {
		info := &masterpb.MasterInfo{Id: string(sv.ID), Address: dir[string(sv.ID)]}
		if info.Address == "" {
			info.Address = string(sv.Address)
		}
		switch {
		case string(sv.ID) == s.cfg.ID:
			info.State = strings.ToLower(s.raft.State().String())
			info.Term = s.raft.CurrentTerm()
			info.AppliedIndex = s.AppliedIndex()
		case sv.ID == leaderID:
			info.State = "leader"
		case sv.Suffrage != raft.Voter:
			info.State = "nonvoter"
		default:
			info.State = "follower"
		}
		resp.Masters = append(resp.Masters, info)
	}
	sum, holding, _ := s.repair.status()
	for _, sv := range s.registry().Servers() {
		state := sv.Status()
		if n, scanned := holding[sv.ID]; state == "draining" && scanned && n == 0 {
			state = "drained"
		}
		resp.Chunkservers = append(resp.Chunkservers, &masterpb.ChunkserverInfo{
			Id: sv.ID, Address: sv.Address, Rack: sv.Rack, State: state,
			CapacityBytes: sv.Capacity, FreeBytes: sv.Free, Shards: uint64(sv.Shards),
		})
	}
	if s.IsLeader() {
		resp.SlicesDegraded = uint64(sum.Degraded)
		resp.SlicesLost = uint64(sum.Lost)
		resp.RepairBytesLeft = sum.BytesLeft
	}
	if st, err := s.fsm.StatFS(); err == nil {
		resp.Slices = st.CommittedSlices
	}
	if fr, err := s.fsm.ListFragmented(0, 0, MaxCountedFragments); err == nil {
		resp.FragmentedChunks = uint64(len(fr))
	}
	return resp, nil
}

// MaxCountedFragments bounds the fragmented chunks Status counts, so that
// a namespace full of them does not make every status call a long scan.
const MaxCountedFragments = 10000

// RemoveChunkserver forgets a retired chunkserver: its directory record,
// drain mark and registry entry, so that a new leader no longer waits for
// it to report and status no longer lists it. It is refused (EBUSY) while
// the server is alive, or while any committed slice still has a shard
// on it: drain it (or let repair rebuild what it held), stop it, then
// remove it. A removed server that starts again registers afresh, as a
// new, empty one.
func (a *adminService) RemoveChunkserver(ctx context.Context, req *masterpb.RemoveChunkserverRequest) (*masterpb.RemoveChunkserverResponse, error) {
	s := a.s
	const op = "remove chunkserver"
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	id := req.ChunkserverId
	if id == "" {
		return nil, invalid(op, "chunkserver ID is required")
	}
	dir, err := s.fsm.Chunkservers()
	if err != nil {
		return nil, s.toStatus(err)
	}
	known := false
	for _, rec := range dir {
		known = known || rec.Id == id
	}
	sv, registered := s.registry().Get(id)
	if !known && !registered {
		return nil, masterpb.ErrnoError(syscall.ENOENT, op+" "+id+": no such chunkserver")
	}
	switch {
	case registered && sv.State == registry.Suspect:
		return nil, masterpb.ErrnoError(syscall.EBUSY, fmt.Sprintf("%s %s: it is suspect (silent, not yet declared dead): if it is stopped, try again once it is dead", op, id))
	case registered && sv.State != registry.Dead:
		return nil, masterpb.ErrnoError(syscall.EBUSY, fmt.Sprintf("%s %s: it is %s; stop it first (drain it before, so that nothing it holds is lost)", op, id, sv.Status()))
	}
	held, err := s.shardsOn(ctx, id)
	if err != nil {
		return nil, s.toStatus(err)
	}
	if held > 0 {
		return nil, masterpb.ErrnoError(syscall.EBUSY, fmt.Sprintf("%s %s: committed slices still have %d shards on it; wait for repair to rebuild them elsewhere (dfs status)", op, id, held))
	}
	if _, err := s.propose(ctx, nil, &fsmpb.Command{Op: &fsmpb.Command_SetDrain{SetDrain: &fsmpb.SetDrain{ChunkserverId: id}}}); err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, nil, &fsmpb.Command{Op: &fsmpb.Command_SetChunkserver{SetChunkserver: &fsmpb.SetChunkserver{Id: id, Remove: true}}}); err != nil {
		return nil, err
	}
	s.registry().Remove(id)
	s.log.Info("chunkserver removed", "id", id)
	return &masterpb.RemoveChunkserverResponse{}, nil
}

// shardsOn counts the shards committed slices have on chunkserver id.
func (s *Server) shardsOn(ctx context.Context, id string) (int, error) {
	n := 0
	err := s.eachCommittedSlice(ctx, func(sl *fsmpb.Slice) {
		for _, sh := range sl.Shards {
			if sh.ChunkserverId == id {
				n++
			}
		}
	})
	return n, err
}
