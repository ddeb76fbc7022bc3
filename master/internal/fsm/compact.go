package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// Compaction.
//
// Random writes leave a chunk with one ref per write; every read then
// resolves and fetches that many pieces, and overwritten bytes stay on
// disk. The state machine indexes chunks with FragmentedRefs refs or more
// (table f), so the leader can hand them out without scanning the
// namespace; a client rewrites such a chunk's bytes as one slice and swaps
// it in with a CompactChunk command.

// FragmentedRefs is the number of refs at which a chunk is listed as
// fragmented, to be compacted.
const FragmentedRefs = 16

const tFragment = 'f'

func fragmentPrefix(ino uint64) []byte { return appendU64([]byte{tFragment}, ino) }

func fragmentKey(ino, idx uint64) []byte { return appendU64(fragmentPrefix(ino), idx) }

// fragmentValue is the f record: when the chunk's refs last changed (the
// command's time) and how many it has.
func fragmentValue(changed int64, refs int) []byte {
	return binary.BigEndian.AppendUint32(appendU64(nil, uint64(changed)), uint32(refs))
}

// Fragmented is a chunk listed for compaction.
type Fragmented struct {
	Inode, Chunk uint64
	// Refs is the chunk's number of refs.
	Refs uint32
	// ChangedUnixNano is when the chunk's refs last changed: a chunk still
	// being written is better compacted once it is quiet.
	ChangedUnixNano int64
}

// putChunk writes chunk idx of ino (deleting it when cs has no refs) and
// keeps the fragmented index in step. had is the chunk's ref count before,
// so that an index entry is deleted only where one can exist.
func (t *txn) putChunk(ino, idx uint64, cs *fsmpb.ChunkSlices, had int) error {
	n := len(cs.GetRefs())
	var err error
	if n == 0 {
		err = t.b.Delete(chunkKey(ino, idx), nil)
	} else {
		err = setProto(t.b, chunkKey(ino, idx), cs)
	}
	if err != nil {
		return err
	}
	switch {
	case n >= FragmentedRefs:
		return t.b.Set(fragmentKey(ino, idx), fragmentValue(t.now, n), nil)
	case had >= FragmentedRefs:
		return t.b.Delete(fragmentKey(ino, idx), nil)
	}
	return nil
}

// appendChunkRefs adds refs to chunk idx of ino, which has had refs, as
// a Pebble merge operand rather than a rewrite of the chunk's list:
// Pebble's default merger concatenates, and concatenated ChunkSlices
// encodings decode as one list with the refs appended. A commit into a
// chunk fragmented by random writes thus writes its own refs, not the
// thousands before them (rewriting them had cost the master 15 KiB per
// 4 KiB write, and grew with the chunk).
func (t *txn) appendChunkRefs(ino, idx uint64, refs []*fsmpb.ChunkRef, had int) error {
	v, err := marshal(&fsmpb.ChunkSlices{Refs: refs})
	if err != nil {
		return fmt.Errorf("fsm: encode chunk refs: %w", err)
	}
	if err := t.b.Merge(chunkKey(ino, idx), v, nil); err != nil {
		return err
	}
	if n := had + len(refs); n >= FragmentedRefs {
		return t.b.Set(fragmentKey(ino, idx), fragmentValue(t.now, n), nil)
	}
	return nil
}

// chunkRefCount returns how many refs chunk idx of ino has: from its
// fragmented-index entry when it has one (so appending to a fragmented
// chunk reads nothing of its list), else by decoding its short list.
func (t *txn) chunkRefCount(ino, idx uint64) (int, error) {
	v, closer, err := t.b.Get(fragmentKey(ino, idx))
	switch {
	case err == nil:
		defer closer.Close()
		if len(v) != 12 {
			return 0, corrupt("fragment index", fragmentKey(ino, idx), errors.New("bad record"))
		}
		return int(binary.BigEndian.Uint32(v[8:])), nil
	case !errors.Is(err, pebble.ErrNotFound):
		return 0, err
	}
	var cs fsmpb.ChunkSlices
	if _, err := getProto(t.b, chunkKey(ino, idx), &cs, "chunk"); err != nil {
		return 0, err
	}
	return len(cs.Refs), nil
}

// deleteChunks deletes every chunk of ino and their index entries; the
// caller has released the refs.
func (t *txn) deleteChunks(ino uint64) error {
	if err := t.deletePrefix(chunkPrefix(ino)); err != nil {
		return err
	}
	return t.deletePrefix(fragmentPrefix(ino))
}

func (t *txn) compactChunk(c *fsmpb.CompactChunk) (Result, error) {
	const op = "compact"
	obj := objIno(c.Inode) + " " + objSlice(c.SliceId)
	s, n, err := t.pendingOf(op, obj, c.SliceId, c.Inode, c.Length, c.Shards)
	if err != nil {
		return Result{}, err
	}
	switch {
	case c.Chunk > MaxFileSize/ChunkSize:
		return Result{}, newErr(op, obj, syscall.EFBIG, "")
	case uint64(c.ChunkOffset)+c.Length > ChunkSize:
		return Result{}, newErr(op, obj, errInval, "slice crosses the chunk end")
	case len(c.Replaced) == 0:
		return Result{}, newErr(op, obj, errInval, "nothing to replace")
	case c.Chunk*ChunkSize+uint64(c.ChunkOffset)+c.Length > n.Size:
		// Refs never reach past the size, so a chunk whose bytes were
		// read before a truncation fails the prefix check below anyway.
		return Result{}, newErr(op, obj, syscall.EAGAIN, "compacted bytes beyond the file's size")
	}
	key := chunkKey(c.Inode, c.Chunk)
	var cs fsmpb.ChunkSlices
	if _, err := getProto(t.b, key, &cs, "chunk"); err != nil {
		return Result{}, err
	}
	if len(cs.Refs) < len(c.Replaced) {
		return Result{}, newErr(op, obj, syscall.EAGAIN, "chunk changed since it was read")
	}
	lo, hi := uint64(ChunkSize), uint64(0)
	ids := make([]uint64, len(c.Replaced))
	for i, r := range c.Replaced {
		have := cs.Refs[i]
		if r == nil || have.SliceId != r.SliceId || have.ChunkOffset != r.ChunkOffset ||
			have.SliceOffset != r.SliceOffset || have.Length != r.Length {
			return Result{}, newErr(op, obj, syscall.EAGAIN, "chunk changed since it was read")
		}
		ids[i] = r.SliceId
		lo, hi = min(lo, uint64(r.ChunkOffset)), max(hi, uint64(r.ChunkOffset)+uint64(r.Length))
	}
	// The new slice must cover every replaced byte (and may cover the
	// holes between them, which read as zeros either way).
	if uint64(c.ChunkOffset) > lo || uint64(c.ChunkOffset)+c.Length < hi {
		return Result{}, newErr(op, obj, errInval, "new slice does not cover the replaced refs")
	}

	// Write phase.
	had := len(cs.Refs)
	rest := cs.Refs[len(c.Replaced):]
	cs.Refs = append([]*fsmpb.ChunkRef{{SliceId: c.SliceId, ChunkOffset: c.ChunkOffset, Length: uint32(c.Length)}}, rest...)
	if err := t.putChunk(c.Inode, c.Chunk, &cs, had); err != nil {
		return Result{}, err
	}
	if err := t.markCommitted(s, c.Length, 1, c.Shards); err != nil {
		return Result{}, err
	}
	if err := t.unref(ids); err != nil {
		return Result{}, err
	}
	// The bytes are the same: size, mtime and ctime stay. The version
	// moves so that clients drop layouts naming the replaced slices,
	// which GC is about to delete.
	n.Version++
	t.put(c.Inode, n)
	return Result{Attr: attrOf(c.Inode, n), SliceID: c.SliceId}, nil
}

// ChunkBytes returns the sum of chunk idx of ino's refs' lengths (total;
// refs overlap, the newest winning at read, so bytes written over others
// count too) and the bytes of the slice that supplies the most (main).
// total-main is what writes added since the chunk was last written whole:
// the leader weighs it against the cost of rewriting the chunk before
// compacting one still being written. A missing chunk is (0, 0).
func (f *FSM) ChunkBytes(ino, idx uint64) (total, main uint64, err error) {
	v, err := f.view(false)
	if err != nil {
		return 0, 0, err
	}
	defer v.close()
	var cs fsmpb.ChunkSlices
	if _, err := getProto(v, chunkKey(ino, idx), &cs, "chunk"); err != nil {
		return 0, 0, err
	}
	bySlice := make(map[uint64]uint64)
	for _, r := range cs.Refs {
		total += uint64(r.Length)
		bySlice[r.SliceId] += uint64(r.Length)
		main = max(main, bySlice[r.SliceId])
	}
	return total, main, nil
}

// ListFragmented returns up to limit chunks listed for compaction, in
// (inode, chunk) order, starting after the chunk (afterInode, afterChunk)
// (0, 0 for the first).
func (f *FSM) ListFragmented(afterInode, afterChunk uint64, limit int) (out []Fragmented, err error) {
	if limit <= 0 {
		limit = DefaultReadDirLimit
	}
	v, err := f.view(false)
	if err != nil {
		return nil, err
	}
	defer v.close()
	lower := []byte{tFragment}
	if afterInode != 0 || afterChunk != 0 {
		lower = append(fragmentKey(afterInode, afterChunk), 0)
	}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd([]byte{tFragment})})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k, val := it.Key(), it.Value()
		if len(k) != 17 || len(val) != 12 {
			_ = it.Close()
			return nil, corrupt("fragment index", k, errors.New("bad record"))
		}
		out = append(out, Fragmented{
			Inode: u64At(k, 1), Chunk: u64At(k, 9),
			ChangedUnixNano: int64(u64At(val, 0)), Refs: binary.BigEndian.Uint32(val[8:]),
		})
	}
	return out, it.Close()
}

// checkFragments checks the fragmented index against the chunks: an entry
// for every chunk with FragmentedRefs refs or more, with the right count,
// and none for others.
func (c *checker) checkFragments(chunks, fragments []kvPair) {
	want := make(map[string]int)
	for _, ch := range chunks {
		var cs fsmpb.ChunkSlices
		if len(ch.k) == 17 && proto.Unmarshal(ch.v, &cs) == nil && len(cs.Refs) >= FragmentedRefs {
			want[string(fragmentKey(u64At(ch.k, 1), u64At(ch.k, 9)))] = len(cs.Refs)
		}
	}
	for _, fr := range fragments {
		n, ok := want[string(fr.k)]
		switch {
		case len(fr.k) != 17 || len(fr.v) != 12:
			c.fail("bad fragment index record %q", fr.k)
		case !ok:
			c.fail("fragment index lists chunk %d/%d, which has fewer than %d refs", u64At(fr.k, 1), u64At(fr.k, 9), FragmentedRefs)
		case int(binary.BigEndian.Uint32(fr.v[8:])) != n:
			c.fail("fragment index counts %d refs in chunk %d/%d, which has %d", binary.BigEndian.Uint32(fr.v[8:]), u64At(fr.k, 1), u64At(fr.k, 9), n)
		}
		delete(want, string(fr.k))
	}
	for k := range want {
		c.fail("chunk %d/%d has %d refs but no fragment index entry", u64At([]byte(k), 1), u64At([]byte(k), 9), want[k])
	}
}
