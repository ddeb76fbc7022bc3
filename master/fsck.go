package master

import (
	"fmt"
	"path"
	"strings"
	"syscall"

	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/master/internal/repair"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Fsck checks the files under a path (the whole namespace for "" or "/")
// against what the leader knows of the chunkservers, and streams one
// answer per regular file: healthy (every shard readable where recorded),
// degraded (with how many more shard losses its most fragile slice can
// bear) or lost (some slice has fewer shards than a read needs even if
// every server not heard from lately answers again), with the problems
// found: shards on dead or silent servers, shards
// reported corrupt (checksum errors found by scrubbers and readers), and
// shards with no location. It runs on the leader only, since only the
// leader's registry knows the chunkservers.
func (m *masterService) Fsck(req *masterpb.FsckRequest, stream masterpb.Master_FsckServer) error {
	s := m.s
	ctx := stream.Context()
	if err := s.linearize(ctx); err != nil {
		return err
	}
	if err := s.registryWarm("fsck"); err != nil {
		return err
	}
	p := path.Clean("/" + req.Path)
	ino := uint64(fsm.RootInode)
	typ := masterpb.FileType_FILE_TYPE_DIRECTORY
	for _, name := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if name == "" {
			continue
		}
		a, err := s.fsm.Lookup(ino, name)
		if err != nil {
			return s.toStatus(err)
		}
		ino, typ = a.Inode, a.Type
	}
	view := s.repair.view()
	var walk func(ino uint64, typ masterpb.FileType, p string, depth int) error
	walk = func(ino uint64, typ masterpb.FileType, p string, depth int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch typ {
		case masterpb.FileType_FILE_TYPE_REGULAR:
			resp, err := s.fsckFile(ino, p, view)
			if err != nil {
				return err
			}
			return stream.Send(resp)
		case masterpb.FileType_FILE_TYPE_DIRECTORY:
			if depth > 4096 {
				return errnoErr(syscall.ELOOP, "fsck", "%s: directory tree too deep", p)
			}
			after := ""
			for {
				entries, more, err := s.fsm.ReadDir(ino, after, fsm.DefaultReadDirLimit, false)
				if err != nil {
					return s.toStatus(err)
				}
				for _, e := range entries {
					if err := walk(e.Inode, e.Type, path.Join(p, e.Name), depth+1); err != nil {
						return err
					}
					after = e.Name
				}
				if !more || len(entries) == 0 {
					return nil
				}
			}
		}
		return nil
	}
	return walk(ino, typ, p, 0)
}

// fsckFile assesses one regular file's slices.
func (s *Server) fsckFile(ino uint64, p string, view fsckView) (*masterpb.FsckResponse, error) {
	_, refs, _, err := s.fsm.GetLayout(ino, 0, 0)
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &masterpb.FsckResponse{Path: p, Health: masterpb.FsckResponse_HEALTH_HEALTHY}
	tolerable := -1
	seen := map[uint64]bool{}
	for _, ref := range refs {
		if seen[ref.SliceId] {
			continue
		}
		seen[ref.SliceId] = true
		l, err := wirelayout.FromProto(ref.Layout)
		if err != nil {
			resp.Problems = append(resp.Problems, fmt.Sprintf("slice %d: bad layout: %v", ref.SliceId, err))
			resp.Health = masterpb.FsckResponse_HEALTH_LOST
			continue
		}
		rs := repair.Slice{ID: ref.SliceId, Layout: l, Length: ref.SliceLength}
		waiting := map[uint32]bool{}
		for _, sh := range ref.Shards {
			rs.Shards = append(rs.Shards, repair.Location{Index: sh.Index, Server: sh.ChunkserverId})
			k := repair.Key{Slice: rs.ID, Index: sh.Index}
			if view.corrupt[k] == sh.ChunkserverId {
				view.Bad[k] = true
			}
			st, ok := view.Servers[sh.ChunkserverId]
			if !ok {
				st = view.unknown
				view.Servers[sh.ChunkserverId] = st
			}
			waiting[sh.Index] = st == repair.Unsure
		}
		h := repair.Assess(rs, view.View)
		if t := max(h.Tolerable(), 0); tolerable < 0 || t < tolerable {
			tolerable = t
		}
		at := map[uint32]string{}
		for _, loc := range rs.Shards {
			at[loc.Index] = loc.Server
		}
		for _, i := range h.Lost {
			srv, ok := at[i]
			why := "no location"
			switch {
			case !ok:
			case view.Bad[repair.Key{Slice: rs.ID, Index: i}]:
				why = "corrupt or missing on " + srv
			default:
				why = "on dead chunkserver " + srv
			}
			resp.Problems = append(resp.Problems, fmt.Sprintf("slice %d shard %d: %s", rs.ID, i, why))
		}
		for _, loc := range rs.Shards {
			if waiting[loc.Index] {
				resp.Problems = append(resp.Problems, fmt.Sprintf("slice %d shard %d: chunkserver %s not heard from lately", rs.ID, loc.Index, loc.Server))
			}
		}
		resp.Health = max(resp.Health, sliceHealth(h))
	}
	if tolerable > 0 {
		resp.TolerableLosses = uint32(tolerable)
	}
	resp.NoShards = len(refs) == 0
	return resp, nil
}

// sliceHealth is fsck's verdict on one slice. Shards on servers that are
// only late (suspect, not yet dead) are not lost (repair.Health.Unreadable):
// a slice that needs them to be read is degraded until they report again
// or are declared dead, so a network blip does not make fsck cry "lost",
// and fsck agrees with the lost slices `dfs status` counts.
func sliceHealth(h repair.Health) masterpb.FsckResponse_Health {
	switch {
	case h.Unreadable():
		return masterpb.FsckResponse_HEALTH_LOST
	case !h.Healthy():
		return masterpb.FsckResponse_HEALTH_DEGRADED
	}
	return masterpb.FsckResponse_HEALTH_HEALTHY
}
