package fsm

import (
	"errors"
	"slices"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// MaxConcatSources bounds the sources of one Concat (S3 allows 10,000 parts
// in a multipart upload).
const MaxConcatSources = 10000

// concatSource is one validated source of a Concat.
type concatSource struct {
	parent uint64
	name   string
	dir    *fsmpb.Inode
	ino    uint64
	n      *fsmpb.Inode
}

// concat builds a new file out of the sources' slices. The bytes are not
// touched: each source chunk ref is re-based to the source's offset in the
// result and, where it now straddles a chunk boundary, cut in two refs of
// the same slice (its refs count grows by one). That is what lets an S3
// multipart upload complete in one metadata command whatever its size.
//
// Sources must be distinct regular files with a single link, so moving
// their slices changes no other name's bytes.
func (t *txn) concat(c *fsmpb.Concat) (Result, error) {
	const op = "concat"
	if c.Dst == nil {
		return Result{}, newErr(op, "command", errInval, "no destination")
	}
	obj := objName(c.Dst.Parent, c.Dst.Name)
	switch {
	case len(c.Srcs) == 0:
		return Result{}, newErr(op, obj, errInval, "no sources")
	case len(c.Srcs) > MaxConcatSources:
		return Result{}, newErr(op, obj, errInval, "too many sources")
	}
	if err := checkName(op, obj, c.Dst.Name); err != nil {
		return Result{}, err
	}
	ddir, err := t.dir(op, obj, c.Dst.Parent)
	if err != nil {
		return Result{}, err
	}
	dIno, _, err := t.dentry(c.Dst.Parent, c.Dst.Name)
	if err != nil {
		return Result{}, err
	}
	var d *fsmpb.Inode
	if dIno != 0 {
		if d, err = t.existing(dIno); err != nil {
			return Result{}, err
		}
		if d.Type == typeDir {
			return Result{}, newErr(op, obj, errIsDir, "")
		}
	}
	srcs := make([]concatSource, 0, len(c.Srcs))
	seen := make(map[uint64]bool, len(c.Srcs))
	var total uint64
	for _, e := range c.Srcs {
		if e == nil {
			return Result{}, newErr(op, obj, errInval, "empty source")
		}
		sobj := objName(e.Parent, e.Name)
		dir, ino, n, err := t.entry(op, sobj, e.Parent, e.Name)
		if err != nil {
			return Result{}, err
		}
		switch {
		case n.Type == typeDir:
			return Result{}, newErr(op, sobj, errIsDir, "")
		case n.Type != typeRegular:
			return Result{}, newErr(op, sobj, errInval, "not a regular file")
		case n.Nlink != 1:
			return Result{}, newErr(op, sobj, errInval, "source has other links")
		case ino == dIno:
			return Result{}, newErr(op, sobj, errInval, "source is the destination")
		case seen[ino]:
			return Result{}, newErr(op, sobj, errInval, "source named twice")
		}
		// Inline bytes cannot become a slice here: writers of parts to
		// compose keep them out of the inline table.
		if in, err := exists(t.b, inlineKey(ino)); err != nil {
			return Result{}, err
		} else if in {
			return Result{}, newErr(op, sobj, errInval, "source holds inline data")
		}
		open, err := t.hasHandles(ino)
		if err != nil {
			return Result{}, err
		}
		if open {
			return Result{}, newErr(op, sobj, syscall.EBUSY, "source is open")
		}
		seen[ino] = true
		if n.Size > MaxFileSize-total {
			return Result{}, newErr(op, obj, syscall.EFBIG, "")
		}
		total += n.Size
		srcs = append(srcs, concatSource{parent: e.Parent, name: e.Name, dir: dir, ino: ino, n: n})
	}

	// Write phase.
	n := &fsmpb.Inode{
		Type:   typeRegular,
		Mode:   c.Mode & 0o7777,
		Uid:    c.Uid,
		Gid:    c.Gid,
		Nlink:  1,
		Layout: cloneLayout(ddir.Layout),
	}
	ino := t.newInode(n)
	chunks := make(map[uint64]*fsmpb.ChunkSlices)
	extra := make(map[uint64]uint32) // slice ID -> refs added by cutting
	var moved []uint64               // distinct slice IDs, first-seen order
	var base uint64
	for _, s := range srcs {
		err := t.moveRefs(s.ino, base, chunks, extra, &moved)
		if err != nil {
			return Result{}, err
		}
		base += s.n.Size
		if err := t.deleteChunks(s.ino); err != nil {
			return Result{}, err
		}
		t.touchDir(s.parent, s.dir)
		if err := t.delDentry(s.parent, s.name); err != nil {
			return Result{}, err
		}
		if err := t.removeInode(s.ino, s.n); err != nil {
			return Result{}, err
		}
	}
	idxs := make([]uint64, 0, len(chunks))
	for idx := range chunks {
		idxs = append(idxs, idx)
	}
	slices.Sort(idxs)
	for _, idx := range idxs {
		if err := t.putChunk(ino, idx, chunks[idx], 0); err != nil {
			return Result{}, err
		}
	}
	for _, id := range moved {
		var sl fsmpb.Slice
		ok, err := getProto(t.b, sliceKey(id), &sl, "slice")
		if err != nil {
			return Result{}, err
		}
		if !ok {
			return Result{}, corrupt("slice", sliceKey(id), errors.New("chunk refers to a missing slice"))
		}
		sl.Inode = ino
		sl.Refs += extra[id]
		if err := setProto(t.b, sliceKey(id), &sl); err != nil {
			return Result{}, err
		}
	}
	if err := t.setSize(ino, n, total); err != nil {
		return Result{}, err
	}
	if d != nil {
		if err := t.dropLink(dIno, d); err != nil {
			return Result{}, err
		}
		if err := t.delDentry(c.Dst.Parent, c.Dst.Name); err != nil {
			return Result{}, err
		}
	}
	t.touchDir(c.Dst.Parent, ddir)
	if err := t.setDentry(c.Dst.Parent, c.Dst.Name, ino, typeRegular); err != nil {
		return Result{}, err
	}
	return Result{Attr: attrOf(ino, n), Created: true}, nil
}

// moveRefs re-bases every chunk ref of inode src by base bytes into chunks
// (the destination's chunk lists), cutting refs at chunk boundaries.
func (t *txn) moveRefs(src, base uint64, chunks map[uint64]*fsmpb.ChunkSlices, extra map[uint64]uint32, moved *[]uint64) error {
	p := chunkPrefix(src)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		var cs fsmpb.ChunkSlices
		if err := proto.Unmarshal(it.Value(), &cs); err != nil {
			k := append([]byte(nil), it.Key()...)
			_ = it.Close()
			return corrupt("chunk", k, err)
		}
		srcBase := u64At(it.Key(), 9) * ChunkSize
		for _, r := range cs.Refs {
			if _, known := extra[r.SliceId]; !known {
				extra[r.SliceId] = 0
				*moved = append(*moved, r.SliceId)
			}
			from := base + srcBase + uint64(r.ChunkOffset)
			end := from + uint64(r.Length)
			sliceOff := r.SliceOffset
			pieces := uint32(0)
			for from < end {
				idx := from / ChunkSize
				cut := min(end, (idx+1)*ChunkSize)
				cs := chunks[idx]
				if cs == nil {
					cs = new(fsmpb.ChunkSlices)
					chunks[idx] = cs
				}
				cs.Refs = append(cs.Refs, &fsmpb.ChunkRef{
					SliceId:     r.SliceId,
					ChunkOffset: uint32(from - idx*ChunkSize),
					SliceOffset: sliceOff,
					Length:      uint32(cut - from),
				})
				sliceOff += cut - from
				from = cut
				pieces++
			}
			if pieces > 1 {
				extra[r.SliceId] += pieces - 1
			}
		}
	}
	return it.Close()
}
