package fsm

import (
	"errors"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// Inline data.
//
// A durable slice costs an allocation, a commit and a synced write on
// m+1 chunkservers; for a file of a few KiB that is most of the cost of
// creating it. Such a file's bytes may instead live in the state machine
// (table I), replicated and synced by Raft with the rest of the metadata.
// Inline bytes are the file's oldest layer: they cover [0, len) under any
// slices committed later, so a file that outgrows them needs no
// conversion. Inline writes are accepted only while the file has no
// chunks, and never past InlineMax.

// InlineMax bounds a file's inline bytes.
const InlineMax = 16 << 10

const tInline = 'I'

func inlineKey(ino uint64) []byte { return appendU64([]byte{tInline}, ino) }

// readInline returns ino's inline bytes (nil if none); the slice is a copy.
func readInline(r reader, ino uint64) ([]byte, error) {
	v, c, err := r.Get(inlineKey(ino))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return append([]byte(nil), v...), nil
}

// hasChunks reports whether ino has any chunk refs.
func hasChunks(r reader, ino uint64) (bool, error) {
	return anyUnder(r, chunkPrefix(ino))
}

// HasChunks reports whether regular file ino has slices, when inline
// writes to it are refused (false for a missing inode: the write itself
// then fails with ENOENT).
func (f *FSM) HasChunks(ino uint64) (bool, error) {
	v, err := f.view(false)
	if err != nil {
		return false, err
	}
	defer v.close()
	return hasChunks(v, ino)
}

func (t *txn) writeInline(c *fsmpb.WriteInline) (Result, error) {
	const op = "writeinline"
	obj := objIno(c.Inode)
	n, err := t.regular(op, obj, c.Inode)
	if err != nil {
		return Result{}, err
	}
	end := c.Offset + uint64(len(c.Data))
	switch {
	case len(c.Data) == 0:
		return Result{}, newErr(op, obj, errInval, "no data")
	case c.Offset > InlineMax || end > InlineMax:
		return Result{}, newErr(op, obj, syscall.E2BIG, "beyond the inline limit")
	}
	if err := checkAfter(op, obj, c.Attrs); err != nil {
		return Result{}, err
	}
	chunked, err := hasChunks(t.b, c.Inode)
	if err != nil {
		return Result{}, err
	}
	if chunked {
		// Bytes written inline now would lie under slices that are newer.
		return Result{}, newErr(op, obj, syscall.ENOTSUP, "file has slices")
	}
	data, err := readInline(t.b, c.Inode)
	if err != nil {
		return Result{}, err
	}
	// Bytes between the old inline end and the offset read as zeros
	// (they are a hole, or beyond the size); keep them so.
	if uint64(len(data)) < end {
		data = append(data, make([]byte, end-uint64(len(data)))...)
	}
	copy(data[c.Offset:], c.Data)
	if err := t.b.Set(inlineKey(c.Inode), data, nil); err != nil {
		return Result{}, err
	}
	if err := t.wrote(c.Inode, n, end, c.MtimeUnixNano, c.Attrs); err != nil {
		return Result{}, err
	}
	return Result{Attr: attrOf(c.Inode, n)}, nil
}

// trimInline shortens ino's inline bytes to size. Write phase only.
func (t *txn) trimInline(ino, size uint64) error {
	if size == 0 {
		// Every inode removal comes here: no need to copy the bytes.
		if ok, err := exists(t.b, inlineKey(ino)); err != nil || !ok {
			return err
		}
		return t.b.Delete(inlineKey(ino), nil)
	}
	data, err := readInline(t.b, ino)
	if err != nil || uint64(len(data)) <= size {
		return err
	}
	return t.b.Set(inlineKey(ino), data[:size], nil)
}

// checkInline checks the inline table: records of existing regular files,
// not empty, within InlineMax and the file's size.
func (c *checker) checkInline(records []kvPair) {
	for _, r := range records {
		if len(r.k) != 9 {
			c.fail("bad inline key %q", r.k)
			continue
		}
		ino := u64At(r.k, 1)
		n := c.inodes[ino]
		switch {
		case n == nil || n.Type != typeRegular:
			c.fail("inline data of a missing or non-regular inode %d", ino)
		case len(r.v) == 0 || len(r.v) > InlineMax:
			c.fail("inode %d: %d inline bytes", ino, len(r.v))
		case uint64(len(r.v)) > n.Size:
			c.fail("inode %d: %d inline bytes beyond size %d", ino, len(r.v), n.Size)
		}
	}
}
