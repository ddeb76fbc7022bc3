package fsm

import (
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Repair and drain state.
//
// Repair rebuilds a lost shard on another chunkserver and then records the
// new location with MoveShard; a drain is an operator's mark, recorded with
// SetDrain so that a new leader keeps draining what the old one drained.
//
// Keys:
//
//	D <chunkserver ID>    empty; the chunkserver is being drained

const tDrain = 'D'

// MaxChunkserverIDLen bounds the chunkserver IDs SetDrain records.
const MaxChunkserverIDLen = 256

func drainKey(id string) []byte { return append([]byte{tDrain}, id...) }

func (t *txn) moveShard(c *fsmpb.MoveShard) (Result, error) {
	const op = "moveshard"
	obj := objSlice(c.SliceId)
	s := new(fsmpb.Slice)
	ok, err := getProto(t.b, sliceKey(c.SliceId), s, "slice")
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{}, newErr(op, obj, errNoEnt, "not a live slice")
	}
	if !s.Committed {
		return Result{}, newErr(op, obj, errInval, "slice not committed")
	}
	if c.Shard == nil || c.Shard.ChunkserverId == "" || int64(c.Shard.Index) >= int64(layoutWidth(s.Layout)) {
		return Result{}, newErr(op, obj, errInval, "bad shard location")
	}
	for _, sh := range s.Shards {
		if sh.Index != c.Shard.Index && sh.ChunkserverId == c.Shard.ChunkserverId {
			return Result{}, newErr(op, obj, errInval, "two shards of one slice on "+c.Shard.ChunkserverId)
		}
	}
	loc := stripTokens([]*masterpb.ShardLocation{c.Shard})[0]
	found := false
	for i, sh := range s.Shards {
		if sh.Index != loc.Index {
			continue
		}
		found = true
		if sh.ChunkserverId != c.From {
			// A newer move won; this order is stale.
			return Result{}, newErr(op, obj, syscall.ESTALE, "shard no longer on "+c.From)
		}
		s.Shards[i] = loc
	}
	if !found {
		if c.From != "" {
			return Result{}, newErr(op, obj, syscall.ESTALE, "shard has no location")
		}
		s.Shards = append(s.Shards, loc)
	}
	return Result{SliceID: c.SliceId}, setProto(t.b, sliceKey(c.SliceId), s)
}

func (t *txn) setDrain(c *fsmpb.SetDrain) (Result, error) {
	const op = "setdrain"
	if c.ChunkserverId == "" || len(c.ChunkserverId) > MaxChunkserverIDLen {
		return Result{}, newErr(op, "chunkserver", errInval, "bad chunkserver ID")
	}
	if c.Draining {
		return Result{}, t.b.Set(drainKey(c.ChunkserverId), nil, nil)
	}
	return Result{}, t.b.Delete(drainKey(c.ChunkserverId), nil)
}

// Drains returns the IDs of the chunkservers being drained, in order.
func (f *FSM) Drains() ([]string, error) {
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	p := []byte{tDrain}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, string(it.Key()[1:]))
	}
	return out, it.Close()
}

// ListSlices returns up to limit pending and committed slices with IDs
// above after, in ID order, for the repair scan.
func (f *FSM) ListSlices(after uint64, limit int) (out []*fsmpb.Slice, err error) {
	if limit <= 0 {
		limit = DefaultReadDirLimit
	}
	if after == ^uint64(0) {
		return nil, nil
	}
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: sliceKey(after + 1), UpperBound: prefixEnd([]byte{tSlice})})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		s := new(fsmpb.Slice)
		if err := proto.Unmarshal(it.Value(), s); err != nil {
			_ = it.Close()
			return nil, corrupt("slice", it.Key(), err)
		}
		out = append(out, s)
	}
	return out, it.Close()
}

// Chunkserver directory.
//
//	C <chunkserver ID>    ChunkserverRecord

const tChunkserver = 'C'

func chunkserverKey(id string) []byte { return append([]byte{tChunkserver}, id...) }

func (t *txn) setChunkserver(c *fsmpb.SetChunkserver) (Result, error) {
	const op = "setchunkserver"
	if c.Id == "" || len(c.Id) > MaxChunkserverIDLen || len(c.Address) > MaxChunkserverIDLen {
		return Result{}, newErr(op, "chunkserver", errInval, "bad chunkserver ID or address")
	}
	if c.Remove {
		return Result{}, t.b.Delete(chunkserverKey(c.Id), nil)
	}
	return Result{}, setProto(t.b, chunkserverKey(c.Id), &fsmpb.ChunkserverRecord{Id: c.Id, Address: c.Address})
}

// Chunkservers returns the chunkserver directory in ID order.
func (f *FSM) Chunkservers() ([]*fsmpb.ChunkserverRecord, error) {
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	p := []byte{tChunkserver}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	var out []*fsmpb.ChunkserverRecord
	for ok := it.First(); ok; ok = it.Next() {
		rec := new(fsmpb.ChunkserverRecord)
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			_ = it.Close()
			return nil, corrupt("chunkserver", it.Key(), err)
		}
		out = append(out, rec)
	}
	return out, it.Close()
}
