package master

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/cairnfs/cairn/master/internal/registry"
	"github.com/cairnfs/cairn/master/internal/repair"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// registryService implements masterpb.RegistryServer: chunkserver soft
// state, kept by the leader only (followers answer NotLeader) and rebuilt
// after every leader change.
//
// Protocol for a chunkserver: Register, then FullReport, then Heartbeat
// every heartbeat_interval_ms. A heartbeat answered NotFound (with errno
// ENOENT) means this leader does not know the chunkserver — it is new, or
// leadership changed — and the chunkserver must Register again and send a
// FullReport. A heartbeat response with full_report_wanted asks for a
// FullReport too (none has completed since the last registration).
type registryService struct {
	masterpb.UnimplementedRegistryServer
	s *Server
}

func (r *registryService) Register(ctx context.Context, req *masterpb.RegisterRequest) (*masterpb.RegisterResponse, error) {
	s := r.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if req.Id == "" || req.Address == "" {
		return nil, invalid("register", "chunkserver ID and address are required (got %q, %q)", req.Id, req.Address)
	}
	reg := s.registry()
	prev, err := reg.Register(req.Id, req.Address, req.Rack, req.CapacityBytes, req.FreeBytes)
	if err != nil {
		return nil, invalid("register", "%v", err)
	}
	if prev != req.Address {
		s.log.Info("chunkserver registered", "chunkserver", req.Id, "address", req.Address, "previous", prev, "rack", req.Rack)
	}
	// A process that registers again has lost the orders it was running.
	s.repair.forget(req.Id)
	if err := s.recordChunkserver(ctx, req.Id, req.Address); err != nil {
		return nil, err
	}
	return &masterpb.RegisterResponse{HeartbeatIntervalMs: uint32(reg.HeartbeatInterval().Milliseconds())}, nil
}

func (r *registryService) Heartbeat(ctx context.Context, req *masterpb.HeartbeatRequest) (*masterpb.HeartbeatResponse, error) {
	s := r.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	reg := s.registry()
	err := reg.Heartbeat(req.Id, req.CapacityBytes, req.FreeBytes, req.ActiveStreams, shardIDs(req.Added), shardIDs(req.Removed))
	if err != nil {
		return nil, unknownChunkserver("heartbeat", err)
	}
	sv, ok := reg.Get(req.Id)
	return &masterpb.HeartbeatResponse{FullReportWanted: ok && !sv.Reported, Orders: s.repair.ordersFor(req.Id)}, nil
}

// unknownChunkserver is the answer to a chunkserver the leader does not
// know: NotFound, errno ENOENT, "register again".
func unknownChunkserver(op string, err error) error {
	if errors.Is(err, registry.ErrUnknown) {
		return errnoErr(syscall.ENOENT, op, "%v; register again", err)
	}
	return invalid(op, "%v", err)
}

func (r *registryService) FullReport(stream masterpb.Registry_FullReportServer) error {
	s := r.s
	if err := s.leaderOnly(stream.Context()); err != nil {
		return err
	}
	reg := s.registry()
	id := ""
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			if id != "" {
				reg.AbortFullReport(id)
			}
			return invalid("full report", "chunkserver %q: stream ended before the last batch", id)
		}
		if err != nil {
			if id != "" {
				reg.AbortFullReport(id)
			}
			return s.toStatus(err)
		}
		if id == "" {
			id = msg.Id
		} else if msg.Id != id {
			reg.AbortFullReport(id)
			return invalid("full report", "batches from %q and %q in one stream", id, msg.Id)
		}
		ids := make([]registry.ShardID, len(msg.Shards))
		for i, sh := range msg.Shards {
			ids[i] = registry.ShardID{Slice: sh.GetShard().GetSliceId(), Index: sh.GetShard().GetIndex()}
		}
		if err := reg.FullReport(id, ids, msg.Last); err != nil {
			return unknownChunkserver("full report", err)
		}
		if msg.Last {
			return stream.SendAndClose(&masterpb.FullReportResponse{})
		}
	}
}

// ReportCorrupt is the scrubber's report: the shards leave the server's
// inventory and are marked unreadable there, so the next repair scan
// rebuilds them elsewhere and then deletes the bad copies.
func (r *registryService) ReportCorrupt(ctx context.Context, req *masterpb.ReportCorruptRequest) (*masterpb.ReportCorruptResponse, error) {
	s := r.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	reg := s.registry()
	sv, ok := reg.Get(req.Id)
	if !ok {
		return nil, unknownChunkserver("report corrupt", registry.ErrUnknown)
	}
	if err := reg.Heartbeat(req.Id, sv.Capacity, sv.Free, sv.ActiveStreams, nil, shardIDs(req.Shards)); err != nil {
		return nil, unknownChunkserver("report corrupt", err)
	}
	s.log.Warn("chunkserver reports corrupt shards", "chunkserver", req.Id, "shards", len(req.Shards))
	s.repair.reportBad(req.Id, repairKeys(req.Shards))
	return &masterpb.ReportCorruptResponse{}, nil
}

// OrderDone records an order's outcome: a rebuilt shard's new location
// goes through Raft before the answer. Orders this leader did not issue
// are acknowledged and ignored.
func (r *registryService) OrderDone(ctx context.Context, req *masterpb.OrderDoneRequest) (*masterpb.OrderDoneResponse, error) {
	if err := r.s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if err := r.s.repair.done(ctx, req.Id, req.OrderId, req.Error); err != nil {
		return nil, r.s.toStatus(err)
	}
	return &masterpb.OrderDoneResponse{}, nil
}

func repairKeys(in []*chunkpb.ShardID) []repair.Key {
	out := make([]repair.Key, 0, len(in))
	for _, sh := range in {
		if sh != nil {
			out = append(out, repair.Key{Slice: sh.SliceId, Index: sh.Index})
		}
	}
	return out
}

func shardIDs(in []*chunkpb.ShardID) []registry.ShardID {
	if len(in) == 0 {
		return nil
	}
	out := make([]registry.ShardID, len(in))
	for i, sh := range in {
		out[i] = registry.ShardID{Slice: sh.GetSliceId(), Index: sh.GetIndex()}
	}
	return out
}
