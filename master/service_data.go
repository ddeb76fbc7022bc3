package master

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/master/internal/placement"
	"github.com/cairnfs/cairn/master/internal/registry"
	"github.com/cairnfs/cairn/master/internal/repair"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// AllocateSlice chooses a layout (the file's inherited policy or the
// cluster default, see chooseLayout) and chunkservers for a new slice of
// the file, records the pending slice through Raft and returns one write
// token per shard, signed with the cluster key, allowing that shard's
// length for the requested slice length and valid for Config.TokenTTL.
// A retry with the same request ID returns the slice recorded the first
// time, with fresh tokens.
func (m *masterService) AllocateSlice(ctx context.Context, req *masterpb.AllocateSliceRequest) (*masterpb.AllocateSliceResponse, error) {
	const op = "allocate"
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	if req.Length == 0 || req.Length > fsm.MaxSliceLength {
		return nil, invalid(op, "inode %d: slice length %d outside 1..%d", req.Inode, req.Length, uint64(fsm.MaxSliceLength))
	}
	policy, err := s.fsm.LayoutPolicy(req.Inode)
	if err != nil {
		return nil, s.toStatus(err)
	}
	if err := s.registryWarm(op); err != nil {
		return nil, err
	}
	view := s.registry().View()
	live := 0
	for _, c := range view {
		if c.Status == placement.Live {
			live++
		}
	}
	l, err := s.chooseLayout(policy, live, req.Length)
	if err != nil {
		return nil, invalid(op, "inode %d: %v", req.Inode, err)
	}
	ids, err := s.place(view, l, req.Length)
	if err != nil {
		return nil, s.toStatus(fmt.Errorf("master: allocate for inode %d: %w", req.Inode, err))
	}
	shards := make([]*masterpb.ShardLocation, len(ids))
	for i, id := range ids {
		shards[i] = &masterpb.ShardLocation{Index: uint32(i), ChunkserverId: id, Address: s.addressOf(id)}
	}
	now := s.now()
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_AllocateSlice{AllocateSlice: &fsmpb.AllocateSlice{
		Inode:           req.Inode,
		Length:          req.Length,
		Layout:          wirelayout.ToProto(l),
		Shards:          shards,
		ExpiresUnixNano: now.Add(s.cfg.SliceTTL).UnixNano(),
	}}})
	if err != nil {
		return nil, err
	}
	if res.Duplicate {
		// The first attempt chose the layout and servers; answer with
		// those.
		sl, err := s.fsm.GetSlice(res.SliceID)
		if err != nil {
			return nil, s.toStatus(err)
		}
		if l, err = wirelayout.FromProto(sl.Layout); err != nil {
			return nil, s.toStatus(err)
		}
		shards = sl.Shards
	}
	return &masterpb.AllocateSliceResponse{
		SliceId: res.SliceID,
		Layout:  wirelayout.ToProto(l),
		Shards:  s.withTokens(res.SliceID, l, req.Length, shards, now),
	}, nil
}

// place chooses a chunkserver per shard.
func (s *Server) place(view []placement.Candidate, l erasure.Layout, length uint64) ([]string, error) {
	spec := placement.Spec{Layout: l.String(), ShardSize: uint64(l.ShardLength(int64(length), 0)), Reserve: s.cfg.Reserve}
	s.mu.Lock()
	defer s.mu.Unlock()
	return placement.Place(view, l.Shards(), spec, s.mu.rng)
}

// addressOf returns chunkserver id's current address, or "".
func (s *Server) addressOf(id string) string {
	if sv, ok := s.registry().Get(id); ok {
		return sv.Address
	}
	return ""
}

// withTokens copies shards with a write token each.
func (s *Server) withTokens(slice uint64, l erasure.Layout, length uint64, shards []*masterpb.ShardLocation, now time.Time) []*masterpb.ShardLocation {
	out := make([]*masterpb.ShardLocation, len(shards))
	for i, sh := range shards {
		out[i] = &masterpb.ShardLocation{
			Index:         sh.Index,
			ChunkserverId: sh.ChunkserverId,
			Address:       sh.Address,
			Token:         s.mintWrite(slice, l, length, sh.Index, now),
		}
		if addr := s.addressOf(sh.ChunkserverId); addr != "" {
			out[i].Address = addr
		}
	}
	return out
}

func (s *Server) mintWrite(slice uint64, l erasure.Layout, length uint64, index uint32, now time.Time) *chunkpb.Token {
	maxBytes := uint64(l.ShardLength(int64(length), int(index)))
	return s.signer.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, slice, index, maxBytes, now.Add(s.cfg.TokenTTL))
}

// ReplaceShard picks a substitute chunkserver for one shard of a pending
// slice (its server failed mid-write), records it through Raft, and
// returns it with a fresh write token.
func (m *masterService) ReplaceShard(ctx context.Context, req *masterpb.ReplaceShardRequest) (*masterpb.ReplaceShardResponse, error) {
	const op = "replaceshard"
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	sl, err := s.pendingSlice(op, req.SliceId)
	if err != nil {
		return nil, err
	}
	l, err := wirelayout.FromProto(sl.Layout)
	if err != nil {
		return nil, s.toStatus(err)
	}
	if int(req.Index) >= l.Shards() {
		return nil, invalid(op, "slice %d has %d shards, no shard %d", req.SliceId, l.Shards(), req.Index)
	}
	current := make([]string, l.Shards())
	for _, sh := range sl.Shards {
		if int(sh.Index) < len(current) {
			current[sh.Index] = sh.ChunkserverId
		}
	}
	if err := s.registryWarm(op); err != nil {
		return nil, err
	}
	spec := placement.Spec{
		Layout:    l.String(),
		ShardSize: uint64(l.ShardLength(int64(sl.Length), int(req.Index))),
		Reserve:   s.cfg.Reserve,
		Exclude:   req.ExcludeChunkservers,
	}
	view := s.registry().View()
	s.mu.Lock()
	id, err := placement.Replace(view, current, int(req.Index), spec, s.mu.rng)
	s.mu.Unlock()
	if err != nil {
		return nil, s.toStatus(fmt.Errorf("master: replace shard %d/%d: %w", req.SliceId, req.Index, err))
	}
	loc := &masterpb.ShardLocation{Index: req.Index, ChunkserverId: id, Address: s.addressOf(id)}
	if _, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_ReplaceShard{ReplaceShard: &fsmpb.ReplaceShard{
		SliceId: req.SliceId, Shard: loc,
	}}}); err != nil {
		return nil, err
	}
	// A retried request was applied once; answer with what is recorded.
	if sl, err := s.fsm.GetSlice(req.SliceId); err == nil {
		for _, sh := range sl.Shards {
			if sh.Index == req.Index {
				loc = &masterpb.ShardLocation{Index: sh.Index, ChunkserverId: sh.ChunkserverId, Address: sh.Address}
			}
		}
	}
	if addr := s.addressOf(loc.ChunkserverId); addr != "" {
		loc.Address = addr
	}
	loc.Token = s.mintWrite(req.SliceId, l, sl.Length, req.Index, s.now())
	return &masterpb.ReplaceShardResponse{Shard: loc}, nil
}

// pendingSlice returns slice id if it is allocated and not committed.
func (s *Server) pendingSlice(op string, id uint64) (*fsmpb.Slice, error) {
	sl, err := s.fsm.GetSlice(id)
	if err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) && fe.Errno == syscall.ENOENT {
			return nil, errnoErr(syscall.ENOENT, op, "slice %d is not allocated, or expired", id)
		}
		return nil, s.toStatus(err)
	}
	if sl.Committed {
		return nil, errnoErr(syscall.EEXIST, op, "slice %d is already committed", id)
	}
	return sl, nil
}

// minShards is how many acknowledged shards a commit needs: k+1 of an
// RS(k,m) slice and 2 copies of a replicated one (1 if it has one copy),
// so that a committed slice survives one more loss while repair restores
// the rest (DESIGN.md, write path).
func minShards(l erasure.Layout) int {
	if l.IsReplicated() {
		return min(2, l.Shards())
	}
	return l.DataShards() + 1
}

// CommitSlice validates a commit against the pending slice — the shards
// listed must be where the slice's shards were placed (or replaced), and
// enough of them — and commits it through Raft. An empty shard list means
// every allocated shard acknowledged.
func (m *masterService) CommitSlice(ctx context.Context, req *masterpb.CommitSliceRequest) (*masterpb.CommitSliceResponse, error) {
	const op = "commit"
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	shards, err := s.ackedShards(op, req.Header, req.Inode, req.SliceId, req.Shards)
	if err != nil {
		return nil, err
	}
	if err := s.checkAttrUpdate(req.Header, req.Inode, req.Attrs); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_CommitSlice{CommitSlice: &fsmpb.CommitSlice{
		Inode: req.Inode, SliceId: req.SliceId, Offset: req.Offset, Length: req.Length,
		Shards: shards, MtimeUnixNano: req.MtimeUnixNano, Attrs: req.Attrs, Extents: req.Extents,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.CommitSliceResponse{Attr: res.Attr}, nil
}

// GetLayout returns the committed slices covering a byte range of a file,
// with each shard's chunkserver address refreshed from the registry, and
// the file's inline bytes.
func (m *masterService) GetLayout(ctx context.Context, req *masterpb.GetLayoutRequest) (*masterpb.GetLayoutResponse, error) {
	s := m.s
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	attr, refs, inline, err := s.fsm.GetLayout(req.Inode, req.Offset, req.Length)
	if err != nil {
		return nil, s.toStatus(err)
	}
	reg := s.registry()
	addrs := map[string]string{}
	for _, r := range refs {
		for i, sh := range r.Shards {
			addr, ok := addrs[sh.ChunkserverId]
			if !ok {
				if sv, found := reg.Get(sh.ChunkserverId); found {
					addr = sv.Address
				}
				addrs[sh.ChunkserverId] = addr
			}
			if addr != "" && addr != sh.Address {
				r.Shards[i] = &masterpb.ShardLocation{Index: sh.Index, ChunkserverId: sh.ChunkserverId, Address: addr}
			}
		}
	}
	return &masterpb.GetLayoutResponse{Attr: attr, Slices: refs, InlineData: inline}, nil
}

// ReportBadShard records a client's report of a missing or corrupt shard:
// repair rebuilds it elsewhere if it is still recorded on that server.
func (m *masterService) ReportBadShard(ctx context.Context, req *masterpb.ReportBadShardRequest) (*masterpb.ReportBadShardResponse, error) {
	if err := m.s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	m.s.log.Warn("bad shard reported", "slice", req.SliceId, "index", req.Index, "chunkserver", req.ChunkserverId, "reason", req.Reason)
	// A reader cannot tell a damaged shard from a server that is down: a
	// report about a server that is not live is left to the dead-server
	// grace period, so a restart does not start a rebuild.
	if sv, ok := m.s.registry().Get(req.ChunkserverId); ok && sv.State == registry.Live {
		m.s.repair.reportBad(req.ChunkserverId, []repair.Key{{Slice: req.SliceId, Index: req.Index}})
	}
	return &masterpb.ReportBadShardResponse{}, nil
}

// WriteInline writes a small file's bytes into the namespace (see
// masterpb.WriteInlineRequest).
func (m *masterService) WriteInline(ctx context.Context, req *masterpb.WriteInlineRequest) (*masterpb.WriteInlineResponse, error) {
	s := m.s
	if err := s.leaderOnly(ctx); err != nil {
		return nil, err
	}
	// What is sure to be refused is refused before it costs a Raft
	// commit (a writer tries inline bytes before every first small flush
	// of a file it opened); the state machine checks again when applying.
	if req.Offset > fsm.InlineMax || uint64(len(req.Data)) > fsm.InlineMax-req.Offset {
		return nil, masterpb.ErrnoError(syscall.E2BIG, fmt.Sprintf("master: write inline to inode %d: [%d, +%d) beyond %d bytes", req.Inode, req.Offset, len(req.Data), fsm.InlineMax))
	}
	if chunked, err := s.fsm.HasChunks(req.Inode); err != nil {
		return nil, s.toStatus(err)
	} else if chunked {
		return nil, masterpb.ErrnoError(syscall.ENOTSUP, fmt.Sprintf("master: write inline to inode %d: the file has slices", req.Inode))
	}
	if err := s.checkAttrUpdate(req.Header, req.Inode, req.Attrs); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, req.Header, &fsmpb.Command{Op: &fsmpb.Command_WriteInline{WriteInline: &fsmpb.WriteInline{
		Inode: req.Inode, Offset: req.Offset, Data: req.Data, MtimeUnixNano: req.MtimeUnixNano, Attrs: req.Attrs,
	}}})
	if err != nil {
		return nil, err
	}
	return &masterpb.WriteInlineResponse{Attr: res.Attr}, nil
}

// ackedShards checks the shards a writer says acknowledged slice id
// against where the slice was placed, and returns them without tokens.
// A slice already committed passes with none when the request carries an
// ID (a retry, which the state machine answers from its request table);
// anything else not pending is refused here, before it costs a commit.
func (s *Server) ackedShards(op string, h *masterpb.RequestHeader, inode, id uint64, acked []*masterpb.ShardLocation) ([]*masterpb.ShardLocation, error) {
	sl, err := s.pendingSlice(op, id)
	if err != nil {
		if len(h.GetRequestId()) == 0 || masterpb.ErrnoOf(err) != syscall.EEXIST {
			return nil, err
		}
		return nil, nil
	}
	if sl.Inode != inode {
		return nil, invalid(op, "slice %d belongs to inode %d, not %d", id, sl.Inode, inode)
	}
	l, err := wirelayout.FromProto(sl.Layout)
	if err != nil {
		return nil, s.toStatus(err)
	}
	if len(acked) == 0 {
		return nil, nil
	}
	if len(acked) < minShards(l) {
		return nil, invalid(op, "slice %d (%s): %d shards acknowledged, need at least %d", id, l, len(acked), minShards(l))
	}
	placed := make(map[uint32]string, len(sl.Shards))
	for _, sh := range sl.Shards {
		placed[sh.Index] = sh.ChunkserverId
	}
	out := make([]*masterpb.ShardLocation, 0, len(acked))
	for _, sh := range acked {
		if sh == nil {
			return nil, invalid(op, "slice %d: empty shard location", id)
		}
		if want, ok := placed[sh.Index]; !ok || want != sh.ChunkserverId {
			return nil, invalid(op, "slice %d: shard %d was placed on %q, not %q", id, sh.Index, want, sh.ChunkserverId)
		}
		out = append(out, &masterpb.ShardLocation{Index: sh.Index, ChunkserverId: sh.ChunkserverId, Address: sh.Address})
	}
	return out, nil
}
