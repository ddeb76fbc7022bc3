package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// Snapshot stream format, version 1:
//
//	"CAIRNFSM" uvarint(version)
//	records: uvarint(len(key)) key uvarint(len(value)) value, in key order
//	uvarint(0)                      end of records (keys are never empty)
//	8-byte big-endian record count, 4-byte big-endian CRC-32C of all bytes before it
const (
	snapMagic   = "CAIRNFSM"
	snapVersion = 1
	// maxSnapKey and maxSnapValue bound what Restore allocates per record.
	maxSnapKey   = 1 << 16
	maxSnapValue = 1 << 26
	// restoreBatchBytes is how much Restore writes per Pebble batch.
	restoreBatchBytes = 4 << 20
)

// Snapshot is a point-in-time image of the state, for a Raft snapshot. Its
// WriteTo may run on any goroutine concurrently with Apply; Close it when
// done (it pins old Pebble data while open).
type Snapshot struct {
	snap  *pebble.Snapshot
	index uint64
}

// Snapshot captures the current state. It first syncs Pebble's WAL, so that
// the captured state is durable before Raft compacts its log behind it (see
// Durability in the package doc). Only the Raft FSM goroutine may call it.
func (f *FSM) Snapshot() (*Snapshot, error) {
	if f.needsRestore.Load() {
		return nil, ErrNeedsRestore
	}
	if err := f.db.LogData(nil, pebble.Sync); err != nil {
		return nil, fmt.Errorf("fsm: snapshot: sync: %w", err)
	}
	s := f.db.NewSnapshot()
	var m fsmpb.Meta
	if _, err := getProto(s, metaKey(), &m, "meta"); err != nil {
		_ = s.Close()
		return nil, err
	}
	return &Snapshot{snap: s, index: m.AppliedIndex}, nil
}

// Index returns the applied index the snapshot captures.
func (s *Snapshot) Index() uint64 { return s.index }

// WriteTo writes the snapshot stream to w. It may be called more than once.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w, crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	bw := bufio.NewWriterSize(cw, 1<<16)
	var buf []byte
	buf = binary.AppendUvarint(append(buf, snapMagic...), snapVersion)
	if _, err := bw.Write(buf); err != nil {
		return cw.n, err
	}
	it, err := s.snap.NewIter(nil)
	if err != nil {
		return cw.n, err
	}
	var count uint64
	for ok := it.First(); ok; ok = it.Next() {
		buf = binary.AppendUvarint(buf[:0], uint64(len(it.Key())))
		buf = append(buf, it.Key()...)
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return cw.n, err
		}
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		if _, err := bw.Write(buf); err != nil {
			_ = it.Close()
			return cw.n, err
		}
		if _, err := bw.Write(v); err != nil {
			_ = it.Close()
			return cw.n, err
		}
		count++
	}
	if err := it.Close(); err != nil {
		return cw.n, err
	}
	buf = binary.BigEndian.AppendUint64(binary.AppendUvarint(buf[:0], 0), count)
	if _, err := bw.Write(buf); err != nil {
		return cw.n, err
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	sum := binary.BigEndian.AppendUint32(nil, cw.crc.Sum32())
	_, err = cw.Write(sum)
	return cw.n, err
}

// Close releases the snapshot.
func (s *Snapshot) Close() error { return s.snap.Close() }

type countingWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	_, _ = c.crc.Write(p[:n])
	return n, err
}

// Restore replaces the whole state with a stream WriteTo produced, and
// syncs it before returning. Only the Raft FSM goroutine may call it, with
// no Apply running.
//
// Restore is not atomic: it writes the state in bounded batches (a snapshot
// may be far larger than memory). If it fails half-way — a truncated or
// corrupt stream, a storage error — the FSM refuses Apply and reads with
// ErrNeedsRestore, now and after reopening, until a Restore succeeds.
func (f *FSM) Restore(r io.Reader) error {
	if err := f.restore(r); err != nil {
		f.needsRestore.Store(true)
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.broken = nil
	return f.load(false)
}

func (f *FSM) restore(r io.Reader) error {
	f.needsRestore.Store(true)
	b := f.db.NewBatch()
	// Keys are ASCII-prefixed: [0x00, 0xff) covers them all.
	if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
		return err
	}
	if err := b.Set(restoreKey(), nil, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	_ = b.Close()

	br := &crcReader{br: bufio.NewReaderSize(r, 1<<16), crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	head := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(br, head); err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	if string(head) != snapMagic {
		return errors.New("not a state machine snapshot")
	}
	if v, err := binary.ReadUvarint(br); err != nil || v != snapVersion {
		return fmt.Errorf("unsupported snapshot version %d (%v)", v, err)
	}
	b = f.db.NewBatch()
	defer func() { _ = b.Close() }()
	var count uint64
	var prev, val []byte
	sawMeta := false
	for {
		kl, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("record %d: %w", count, err)
		}
		if kl == 0 {
			break
		}
		if kl > maxSnapKey {
			return fmt.Errorf("record %d: key of %d bytes", count, kl)
		}
		key := make([]byte, kl)
		if _, err := io.ReadFull(br, key); err != nil {
			return fmt.Errorf("record %d: %w", count, err)
		}
		vl, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("record %d: %w", count, err)
		}
		if vl > maxSnapValue {
			return fmt.Errorf("record %d: value of %d bytes", count, vl)
		}
		if cap(val) < int(vl) {
			val = make([]byte, vl)
		}
		val = val[:vl]
		if _, err := io.ReadFull(br, val); err != nil {
			return fmt.Errorf("record %d: %w", count, err)
		}
		if bytes.Compare(key, prev) <= 0 || key[0] == tRestore || key[0] == 0xff {
			return fmt.Errorf("record %d: key %q out of order or reserved", count, key)
		}
		sawMeta = sawMeta || bytes.Equal(key, metaKey())
		prev = key
		if err := b.Set(key, val, nil); err != nil {
			return err
		}
		count++
		if b.Len() >= restoreBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			_ = b.Close()
			b = f.db.NewBatch()
		}
	}
	var tail [8]byte
	if _, err := io.ReadFull(br, tail[:]); err != nil {
		return fmt.Errorf("read trailer: %w", err)
	}
	if n := binary.BigEndian.Uint64(tail[:]); n != count {
		return fmt.Errorf("trailer counts %d records, stream had %d", n, count)
	}
	want := br.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br.br, sum[:]); err != nil {
		return fmt.Errorf("read checksum: %w", err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return fmt.Errorf("checksum %08x, want %08x", got, want)
	}
	if _, err := br.br.ReadByte(); err != io.EOF {
		return errors.New("data after the checksum")
	}
	if !sawMeta {
		return errors.New("snapshot has no meta record")
	}
	if err := b.Delete(restoreKey(), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// crcReader checksums the bytes its reader consumes (bufio reads ahead, so
// checksumming below it would count bytes not yet consumed).
type crcReader struct {
	br  *bufio.Reader
	crc hash.Hash32
	one [1]byte
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	_, _ = c.crc.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.one[0] = b
		_, _ = c.crc.Write(c.one[:])
	}
	return b, err
}
