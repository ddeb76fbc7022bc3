package shardstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Store keeps immutable shards in a Pebble database on an injected vfs.FS.
// Open one with Open; all methods are safe for concurrent use. Close stops
// everything the Store started.
type Store struct {
	opts        Options
	log         *slog.Logger
	fs          vfs.FS // opts.FS: staging files and the ballast
	dbDir       string
	stagingDir  string
	shardsDir   string // large shards' cells files
	ballastPath string
	capacity    uint64
	ballastSize int64
	db          *pebble.DB
	wopts       sstable.WriterOptions // for staged (ingested) tables

	seq atomic.Uint64 // names staging files and cells files (generations)
	// fileWritten counts bytes written to cells files, for
	// DiskBytesWritten.
	fileWritten atomic.Uint64
	bufs        bufferPool  // for ReadCells of file-backed shards
	closing     atomic.Bool // set by Close: streaming calls stop early
	diskFull    atomic.Bool // the FS reported ENOSPC to Pebble (ballast gone)
	ballast     atomic.Bool // the ballast file is in place

	ops      sync.WaitGroup // in-flight calls; Add only under mu while !closed
	ballastM sync.Mutex     // serializes ballast restores

	mu struct {
		sync.Mutex
		closed   bool
		failed   error // sticky; wraps ErrFailed
		reserved uint64
		shards   uint64
		writers  map[*Writer]struct{}
		locks    map[ID]*idLock
		// corrupt remembers shards a read found damaged, so later reads
		// fail at once: Pebble's diagnosis of a bad block (it searches for
		// a single flipped bit) costs seconds of CPU per megabyte block,
		// and a damaged shard is read again and again by clients and the
		// scrubber until the master has it rebuilt elsewhere and deleted
		// here. Bounded by the number of damaged shards; not persisted
		// (after a restart the first read finds the damage again).
		corrupt map[ID]struct{}
		// fileBytes is the size of the committed cells files.
		fileBytes uint64
		// readers counts the ReadCells calls in progress per shard, and
		// unlinkLater holds the cells files of deleted shards that one of
		// them may still open: the last reader removes them.
		readers     map[ID]int
		unlinkLater map[ID][]string
		// finalWritten is DiskBytesWritten at Close.
		finalWritten uint64
	}
}

type idLock struct {
	sync.Mutex
	refs int
}

// Open opens the store in opts.Dir, creating it if needed. It removes staging
// files left by a crash, finishes deletes a crash interrupted, and counts the
// shards. The caller must Close the Store.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	s := &Store{
		opts:        opts,
		log:         opts.Logger,
		fs:          opts.FS,
		dbDir:       opts.FS.PathJoin(opts.Dir, "db"),
		stagingDir:  opts.FS.PathJoin(opts.Dir, "staging"),
		shardsDir:   opts.FS.PathJoin(opts.Dir, "shards"),
		ballastPath: opts.FS.PathJoin(opts.Dir, "ballast"),
	}
	s.mu.writers = make(map[*Writer]struct{})
	s.mu.locks = make(map[ID]*idLock)
	s.mu.readers = make(map[ID]int)
	s.mu.unlinkLater = make(map[ID][]string)

	if err := s.fs.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("shardstore: open %s: %w", opts.Dir, classify(err))
	}
	for _, d := range []string{s.dbDir, s.shardsDir} {
		if err := s.fs.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("shardstore: open %s: %w", opts.Dir, classify(err))
		}
	}
	// Make the directories themselves durable: Pebble syncs its own
	// directory, not the entries leading to it.
	if err := syncDirChain(s.fs, s.shardsDir); err != nil {
		return nil, fmt.Errorf("shardstore: open %s: %w", opts.Dir, classify(err))
	}

	s.capacity = opts.Capacity
	if s.capacity == 0 {
		s.capacity = math.MaxUint64
		if du, err := s.fs.GetDiskUsage(opts.Dir); err == nil {
			s.capacity = du.AvailBytes + du.UsedBytes
		}
	}
	switch {
	case opts.BallastSize < 0:
		s.ballastSize = 0
	case opts.BallastSize > 0:
		s.ballastSize = opts.BallastSize
	default:
		s.ballastSize = int64(min(uint64(DefaultBallastSize), s.capacity/32))
	}

	pfs := vfs.OnDiskFull(kernelReadaheadFS{s.fs}, s.onDiskFull)
	popts := opts.pebbleOptions(pfs, pebbleLogger{l: opts.Logger})
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recoverFatal(r)
			}
		}()
		s.db, err = pebble.Open(s.dbDir, popts)
		return err
	}()
	if err != nil {
		return nil, fmt.Errorf("shardstore: open %s: %w", opts.Dir, classify(err))
	}
	// Staged tables use the row-block format: the columnar writer copies
	// every value twice more while finishing a block (measured: a third of
	// the CPU of writing 1 MiB cells). Pebble reads both formats.
	s.wopts = popts.MakeWriterOptions(0, s.db.TableFormat())
	s.wopts.TableFormat = sstable.TableFormatPebblev4
	s.wopts.DisableValueBlocks = true

	// Staging files are never part of the store: whatever a crash left
	// there was not acknowledged. (Pebble's lock, taken by Open, keeps a
	// second Store off this directory.)
	err = s.fs.RemoveAll(s.stagingDir)
	if err == nil {
		err = s.fs.MkdirAll(s.stagingDir, 0o755)
	}
	if err != nil {
		_ = s.closeDB()
		return nil, fmt.Errorf("shardstore: open %s: staging: %w", opts.Dir, classify(err))
	}

	if err := s.recover(); err != nil {
		_ = s.closeDB()
		return nil, fmt.Errorf("shardstore: open %s: %w", opts.Dir, err)
	}
	if err := s.placeBallast(); err != nil {
		s.log.Warn("cannot place ballast; starting in disk-full state", "err", err)
		s.diskFull.Store(true)
	}
	return s, nil
}

// recover finishes interrupted deletes of large shards and counts shards.
func (s *Store) recover() error {
	var pending []ID
	if err := s.scan(tagGC, ID{}, 0, func(id ID, _ []byte) error {
		pending = append(pending, id)
		return nil
	}); err != nil {
		return err
	}
	for _, id := range pending {
		if err := s.excise(id); err != nil {
			return fmt.Errorf("finish delete of shard %s: %w", id, err)
		}
	}
	var n, fileBytes uint64
	live := make(map[string]bool)
	if err := s.scan(tagMeta, ID{}, 0, func(id ID, v []byte) error {
		n++
		m, err := decodeMeta(v)
		if err != nil {
			return fmt.Errorf("shard %s: %w", id, err)
		}
		if m.file {
			fileBytes += m.length
			live[fileName(id, m.gen)] = true
		}
		return nil
	}); err != nil {
		return err
	}
	s.mu.shards = n
	s.mu.fileBytes = fileBytes
	return s.removeOrphanFiles(live)
}

// removeOrphanFiles removes the cells files no shard's metadata names: those
// of shards deleted or never committed when a crash came (Commit moves the
// file in before it ingests the metadata; Delete removes the metadata
// first). It also makes new generations larger than any file's.
func (s *Store) removeOrphanFiles(live map[string]bool) error {
	names, err := s.fs.List(s.shardsDir)
	if err != nil {
		return classify(err)
	}
	var maxGen uint64
	removed := false
	for _, name := range names {
		_, gen, ok := parseFileName(name)
		if !ok {
			s.log.Warn("unexpected file among shard files; leaving it", "name", name)
			continue
		}
		maxGen = max(maxGen, gen)
		if live[name] {
			continue
		}
		if err := s.fs.Remove(s.fs.PathJoin(s.shardsDir, name)); err != nil && !oserror.IsNotExist(err) {
			return fmt.Errorf("remove orphan cells file %s: %w", name, classify(err))
		}
		removed = true
	}
	if removed {
		if err := syncDir(s.fs, s.shardsDir); err != nil {
			return classify(err)
		}
	}
	if maxGen > s.seq.Load() {
		s.seq.Store(maxGen)
	}
	return nil
}

// Close waits for in-flight calls (streaming calls stop at the next cell
// with ErrClosed), aborts open Writers (their later calls fail with
// ErrClosed), and closes Pebble. Close is idempotent; calls after it fail with
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	s.closing.Store(true)
	writers := make([]*Writer, 0, len(s.mu.writers))
	for w := range s.mu.writers {
		writers = append(writers, w)
	}
	s.mu.Unlock()

	for _, w := range writers {
		w.abandon()
	}
	s.ops.Wait()
	s.mu.Lock()
	s.mu.finalWritten = s.diskBytesWritten()
	failed := s.mu.failed
	s.mu.Unlock()
	err := s.closeDB()
	if err != nil && failed == nil {
		return fmt.Errorf("shardstore: close %s: %w", s.opts.Dir, err)
	}
	return nil
}

// kernelReadaheadFS lets the kernel read ahead in sstables. Pebble opens
// them with POSIX_FADV_RANDOM and does its own readahead of at most 256 KiB,
// which never starts when every block is a 1 MiB cell: each cell would be a
// synchronous disk read. Without the hint, the kernel's adaptive readahead
// ramps up on a large shard's sequential reads and stays out of the way of
// random ones.
type kernelReadaheadFS struct{ vfs.FS }

func (fs kernelReadaheadFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	kept := make([]vfs.OpenOption, 0, len(opts))
	for _, o := range opts {
		if o != vfs.RandomReadsOption {
			kept = append(kept, o)
		}
	}
	return fs.FS.Open(name, kept...)
}

func (fs kernelReadaheadFS) Unwrap() vfs.FS { return fs.FS }

// syncDir syncs a directory, making its entries durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// syncDirChain syncs dir and each of its ancestors, so that the entries of
// newly created directories survive a crash.
func syncDirChain(fs vfs.FS, dir string) error {
	for {
		d, err := fs.OpenDir(dir)
		if err != nil {
			return err
		}
		err = errors.Join(d.Sync(), d.Close())
		if err != nil {
			return err
		}
		parent := fs.PathDir(dir)
		if parent == dir || parent == "" || parent == "." {
			return nil
		}
		dir = parent
	}
}

func (s *Store) closeDB() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = recoverFatal(r)
		}
	}()
	return s.db.Close()
}

// begin registers an in-flight call; it fails once the store is closed or
// failed. Every successful begin is paired with end.
func (s *Store) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	if s.mu.failed != nil {
		return s.mu.failed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) end() { s.ops.Done() }

// guard runs a call into Pebble that may end in Logger.Fatalf; such a
// failure makes the store failed.
func (s *Store) guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.fail(recoverFatal(r))
		}
	}()
	return fn()
}

// fail makes the store failed with cause (first cause wins) and returns the
// sticky error.
func (s *Store) fail(cause error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.failed == nil {
		if isNoSpace(cause) {
			s.mu.failed = fmt.Errorf("%w (%w): %w", ErrFailed, ErrNoSpace, cause)
		} else {
			s.mu.failed = fmt.Errorf("%w: %w", ErrFailed, cause)
		}
		s.log.Error("store failed; it must be closed and reopened", "err", cause)
	}
	return s.mu.failed
}

// lockID serializes the check-then-write of Commit and Delete per shard.
func (s *Store) lockID(id ID) (unlock func()) {
	s.mu.Lock()
	l := s.mu.locks[id]
	if l == nil {
		l = &idLock{}
		s.mu.locks[id] = l
	}
	l.refs++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(s.mu.locks, id)
		}
		s.mu.Unlock()
	}
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrNoSpace)
}

// classify adds ErrNoSpace to an ENOSPC error, and ErrCorrupt to Pebble's
// corruption errors.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrNoSpace):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	case pebble.IsCorruptionError(err) && !errors.Is(err, ErrCorrupt):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

func opErr(op string, id ID, err error) error {
	return fmt.Errorf("shardstore: %s shard %s: %w", op, id, classify(err))
}

// getMeta reads id's metadata record.
func (s *Store) getMeta(id ID) (meta, bool, error) {
	v, closer, err := s.db.Get(idKey(tagMeta, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return meta{}, false, nil
	}
	if err != nil {
		return meta{}, false, err
	}
	defer closer.Close()
	m, err := decodeMeta(v)
	return m, err == nil, err
}

// Stat returns the shard's Info, or ErrNotFound.
func (s *Store) Stat(id ID) (Info, error) {
	if err := s.begin(); err != nil {
		return Info{}, opErr("stat", id, err)
	}
	defer s.end()
	m, ok, err := s.getMeta(id)
	if err != nil {
		return Info{}, opErr("stat", id, err)
	}
	if !ok {
		return Info{}, opErr("stat", id, ErrNotFound)
	}
	return m.info(id), nil
}

// ReadCells calls fn for cells [first, first+count) of the shard in order
// (count 0 means up to the last cell), with each cell's bytes and its stored
// checksum. It does not verify checksums: readers verify end to end. data is
// valid only until fn returns; fn must not retain it. The cells come from
// one consistent view: a concurrent Delete does not cut a read short.
//
// Errors: ErrNotFound; ErrInvalid when first is not a cell of the shard
// (first 0 of an empty shard is allowed and yields nothing) or first+count
// runs past the last cell; ErrCorrupt for damaged data; ErrClosed when the
// store is closed meanwhile. An error from fn stops the read and is returned
// as is.
func (s *Store) ReadCells(id ID, first, count uint32, fn func(cell uint32, data []byte, sum [32]byte) error) error {
	return s.readCells(id, first, count, nil, fn)
}

// BufferPool lends ReadCellsInto the buffers it fills. It must be safe for
// concurrent use.
type BufferPool interface {
	// Get returns a buffer of length n.
	Get(n int) []byte
	// Put takes back a buffer Get returned.
	Put(b []byte)
}

// ReadCellsInto is ReadCells with cell buffers from pool that fn then owns:
// each call of fn gets a buffer from pool.Get holding the cell, and fn is
// responsible for it (to pool.Put it, or hand it on) whatever fn returns.
// It lets a caller pass the bytes on without copying them; a large shard's
// cells are read from disk straight into the buffers.
func (s *Store) ReadCellsInto(id ID, first, count uint32, pool BufferPool, fn func(cell uint32, data []byte, sum [32]byte) error) error {
	if pool == nil {
		return opErr("read", id, fmt.Errorf("%w: no buffer pool", ErrInvalid))
	}
	return s.readCells(id, first, count, pool, fn)
}

func (s *Store) readCells(id ID, first, count uint32, pool BufferPool, fn func(cell uint32, data []byte, sum [32]byte) error) (err error) {
	if err := s.begin(); err != nil {
		return opErr("read", id, err)
	}
	defer s.end()
	s.mu.Lock()
	_, bad := s.mu.corrupt[id]
	// Registered before the view is taken: a Delete that commits after
	// it leaves the cells file for this read to finish.
	s.mu.readers[id]++
	s.mu.Unlock()
	defer s.doneReading(id)
	if bad {
		return opErr("read", id, fmt.Errorf("%w: found damaged by an earlier read", ErrCorrupt))
	}
	defer func() {
		if errors.Is(err, ErrCorrupt) {
			s.mu.Lock()
			if s.mu.corrupt == nil {
				s.mu.corrupt = make(map[ID]struct{})
			}
			s.mu.corrupt[id] = struct{}{}
			s.mu.Unlock()
		}
	}()
	iter, err := s.db.NewIter(nil)
	if err != nil {
		return opErr("read", id, err)
	}
	defer iter.Close()
	mk := idKey(tagMeta, id)
	if !iter.SeekGE(mk) || string(iter.Key()) != string(mk) {
		if err := iter.Error(); err != nil {
			return opErr("read", id, err)
		}
		return opErr("read", id, ErrNotFound)
	}
	v, err := iter.ValueAndErr()
	if err != nil {
		return opErr("read", id, err)
	}
	m, err := decodeMeta(v)
	if err != nil {
		return opErr("read", id, err)
	}
	n := cells(m.length, m.cellSize)
	last := uint64(first) + uint64(count)
	if count == 0 {
		last = n
	}
	if (first >= uint32(min(n, math.MaxUint32)) && !(n == 0 && first == 0)) || last > n {
		return opErr("read", id, fmt.Errorf("%w: cells [%d, %d) of a shard of %d cells", ErrInvalid, first, last, n))
	}
	if last == uint64(first) {
		return nil
	}
	tag := m.tag()
	_, end := cellSpan(tag, id)
	if last < n {
		end = cellKey(tag, id, uint32(last))
	}
	iter.SetBounds(cellKey(tag, id, first), end)

	// Where the bytes come from: the iterator's values (after the
	// checksum), or the cells file, read ahead by a fetcher into buffers
	// from pool (the caller's, or for ReadCells the store's own, taken
	// back after fn).
	owned := pool != nil
	var ft *fetcher
	if m.file {
		if !owned {
			pool = &s.bufs
		}
		path := s.fs.PathJoin(s.shardsDir, fileName(id, m.gen))
		f, err := s.fs.Open(path, vfs.SequentialReadsOption)
		if oserror.IsNotExist(err) {
			err = fmt.Errorf("%w: cells file missing: %w", ErrCorrupt, err)
		}
		if err != nil {
			return opErr("read", id, err)
		}
		defer f.Close()
		ft = startFetcher(f, m, first, uint32(last), pool)
		defer ft.stop()
	}
	want := first
	for ok := iter.First(); ok; ok = iter.Next() {
		if s.closing.Load() {
			return opErr("read", id, ErrClosed)
		}
		c, ok := parseCellKey(iter.Key(), tag, id)
		if !ok || c != want {
			return opErr("read", id, fmt.Errorf("%w: found cell key %x, want cell %d", ErrCorrupt, iter.Key(), want))
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return opErr("read", id, err)
		}
		size := int(cellLen(m.length, m.cellSize, c))
		stored := len(v) - 32
		if m.file {
			stored = size
			if len(v) != 32 {
				stored = -1
			}
		}
		if stored != size {
			return opErr("read", id, fmt.Errorf("%w: cell %d has %d bytes, want %d", ErrCorrupt, c, len(v)-32, size))
		}
		sum := [32]byte(v[:32])
		var data []byte
		switch {
		case ft != nil:
			if data, err = ft.next(); err != nil {
				return opErr("read", id, err)
			}
		case owned:
			data = pool.Get(size)
			copy(data, v[32:])
		default:
			data = v[32:]
		}
		err = fn(c, data, sum)
		if ft != nil && !owned {
			pool.Put(data)
		}
		if err != nil {
			return err
		}
		want++
	}
	if err := iter.Error(); err != nil {
		return opErr("read", id, err)
	}
	if uint64(want) != last {
		return opErr("read", id, fmt.Errorf("%w: cell %d is missing", ErrCorrupt, want))
	}
	return nil
}

// doneReading ends a read registered in s.mu.readers; the last reader of a
// deleted shard removes its cells file.
func (s *Store) doneReading(id ID) {
	s.mu.Lock()
	s.mu.readers[id]--
	var paths []string
	if s.mu.readers[id] == 0 {
		delete(s.mu.readers, id)
		paths = s.mu.unlinkLater[id]
		delete(s.mu.unlinkLater, id)
	}
	s.mu.Unlock()
	for _, p := range paths {
		s.removeCellsFile(p)
	}
}

// removeCellsFile removes a deleted shard's cells file; a failure leaves an
// orphan that the next Open removes.
func (s *Store) removeCellsFile(path string) {
	if err := s.fs.Remove(path); err != nil && !oserror.IsNotExist(err) {
		s.log.Error("remove deleted shard's cells file", "path", path, "err", err)
	}
}

// scan calls fn for the keys of keyspace tag from start on, in ID order, at
// most limit of them (0 = all).
func (s *Store) scan(tag byte, start ID, limit int, fn func(ID, []byte) error) error {
	iter, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: idKey(tag, start),
		UpperBound: []byte{tag + 1},
	})
	if err != nil {
		return err
	}
	defer iter.Close()
	n := 0
	for ok := iter.First(); ok && (limit <= 0 || n < limit); ok = iter.Next() {
		id, ok := parseIDKey(iter.Key(), tag)
		if !ok {
			return fmt.Errorf("%w: bad key %x", ErrCorrupt, iter.Key())
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(id, v); err != nil {
			return err
		}
		n++
	}
	return iter.Error()
}

// List calls fn with the Info of each shard whose ID is >= start, in ID
// order, at most limit of them (0 = all). It reads only metadata. List sees
// one consistent view of the store. An error from fn stops the listing and
// is returned as is; fn may call other methods of the Store.
func (s *Store) List(start ID, limit int, fn func(Info) error) error {
	if err := s.begin(); err != nil {
		return fmt.Errorf("shardstore: list: %w", err)
	}
	defer s.end()
	var fnErr error
	err := s.scan(tagMeta, start, limit, func(id ID, v []byte) error {
		if s.closing.Load() {
			return ErrClosed
		}
		m, err := decodeMeta(v)
		if err != nil {
			return fmt.Errorf("shard %s: %w", id, err)
		}
		if err := fn(m.info(id)); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if err != nil && fnErr != nil && errors.Is(err, fnErr) {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("shardstore: list: %w", classify(err))
	}
	return nil
}

// Delete removes the shard and reports whether it existed. The removal is
// durable when Delete returns. A large shard's cells file is removed and
// its checksums excised at once, so its space comes back as soon as no read
// holds it; a small shard's cells are covered by a range deletion whose
// space compactions reclaim. Reads already streaming the shard finish from
// their view.
func (s *Store) Delete(id ID) (existed bool, err error) {
	if err := s.begin(); err != nil {
		return false, opErr("delete", id, err)
	}
	defer s.end()
	unlock := s.lockID(id)
	defer unlock()
	s.mu.Lock()
	delete(s.mu.corrupt, id)
	s.mu.Unlock()
	m, ok, err := s.getMeta(id)
	if err != nil {
		return false, opErr("delete", id, err)
	}
	if !ok {
		return false, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Delete(idKey(tagMeta, id), nil)
	if m.large {
		// Metadata goes first, with a note to excise the cells (or
		// their checksums): a crash before the excise leaves no
		// visible shard, and Open finishes the job (and removes the
		// cells file, which no metadata names any more).
		_ = b.Set(idKey(tagGC, id), nil, nil)
	} else {
		start, end := cellSpan(tagSmall, id)
		_ = b.DeleteRange(start, end, nil)
	}
	if err := s.guard(func() error { return b.Commit(pebble.Sync) }); err != nil {
		return false, opErr("delete", id, err)
	}
	s.mu.Lock()
	s.mu.shards--
	if m.file {
		s.mu.fileBytes -= m.length
	}
	s.mu.Unlock()
	if m.large {
		if err := s.excise(id); err != nil {
			// The shard is gone; its bytes stay until the next Open
			// retries.
			s.log.Error("excise deleted shard", "shard", id.String(), "err", err)
		}
	}
	if m.file {
		path := s.fs.PathJoin(s.shardsDir, fileName(id, m.gen))
		s.mu.Lock()
		reading := s.mu.readers[id] > 0
		if reading {
			s.mu.unlinkLater[id] = append(s.mu.unlinkLater[id], path)
		}
		s.mu.Unlock()
		if !reading {
			s.removeCellsFile(path)
		}
	}
	s.maybeRestoreBallast(true)
	return true, nil
}

// excise removes a large shard's cells and then its GC note (synced, so that
// the note never outlives a later commit of the same ID).
func (s *Store) excise(id ID) error {
	start, end := cellSpan(tagLarge, id)
	return s.guard(func() error {
		if err := s.db.Excise(context.Background(), pebble.KeyRange{Start: start, End: end}); err != nil {
			return err
		}
		return s.db.Delete(idKey(tagGC, id), pebble.Sync)
	})
}

// Usage reports capacity, usage and the number of shards. After Close it
// reports only Capacity.
func (s *Store) Usage() Usage {
	if err := s.begin(); err != nil {
		return Usage{Capacity: s.capacity}
	}
	defer s.end()
	onDisk := s.db.Metrics().DiskSpaceUsage()
	s.mu.Lock()
	defer s.mu.Unlock()
	u := Usage{Capacity: s.capacity, Shards: s.mu.shards}
	u.Used, u.Free = s.spaceLocked(onDisk)
	return u
}

// spaceLocked computes used and free bytes given Pebble's disk usage.
func (s *Store) spaceLocked(onDisk uint64) (used, free uint64) {
	used = onDisk + s.mu.fileBytes + s.mu.reserved
	if s.ballast.Load() {
		used += uint64(s.ballastSize)
	}
	if used < s.capacity {
		free = s.capacity - used
	}
	if du, err := s.fs.GetDiskUsage(s.opts.Dir); err == nil {
		avail := uint64(0)
		if du.AvailBytes > s.mu.reserved {
			avail = du.AvailBytes - s.mu.reserved
		}
		free = min(free, avail)
	}
	if s.diskFull.Load() {
		free = 0
	}
	return used, free
}

// DiskBytesWritten returns the bytes the store has written to disk since
// Open: WAL, flushes, compactions and ingested sstables (staged shards).
// Divided by the bytes stored, it is the write amplification. After Close it
// returns the final count.
func (s *Store) DiskBytesWritten() uint64 {
	if err := s.begin(); err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.mu.finalWritten
	}
	defer s.end()
	return s.diskBytesWritten()
}

func (s *Store) diskBytesWritten() uint64 {
	m := s.db.Metrics()
	n := m.WAL.BytesWritten + s.fileWritten.Load()
	for i := range m.Levels {
		l := &m.Levels[i]
		n += l.TableBytesFlushed + l.TableBytesCompacted + l.TableBytesIngested + l.BlobBytesFlushed + l.BlobBytesCompacted
	}
	return n
}

// onDiskFull is called by the FS wrapper under Pebble when a write fails
// with ENOSPC, before the write is retried once; all of Pebble's writes wait
// meanwhile. It frees the ballast and puts the store into its disk-full
// state.
func (s *Store) onDiskFull() {
	s.diskFull.Store(true)
	if s.ballast.Swap(false) {
		if err := s.fs.Remove(s.ballastPath); err != nil {
			s.log.Error("remove ballast", "err", err)
		}
	}
	s.log.Warn("disk full: ballast released; refusing new shards until deletes free space")
}

// placeBallast creates the ballast file if it is not there.
func (s *Store) placeBallast() error {
	if s.ballastSize == 0 {
		return nil
	}
	if fi, err := s.fs.Stat(s.ballastPath); err == nil && fi.Size() == s.ballastSize {
		s.ballast.Store(true)
		return nil
	}
	err := func() error {
		f, err := s.fs.Create(s.ballastPath, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		// Reserve the blocks, then write the last byte so the file has
		// its full size.
		err = f.Preallocate(0, s.ballastSize)
		if err == nil {
			_, err = f.WriteAt([]byte{0}, s.ballastSize-1)
		}
		if err == nil {
			err = f.Sync()
		}
		return errors.Join(err, f.Close())
	}()
	if err != nil {
		_ = s.fs.Remove(s.ballastPath)
		return classify(err)
	}
	s.ballast.Store(true)
	return nil
}

// maybeRestoreBallast leaves the disk-full state when there is room again
// for the ballast (twice its size, so the state does not flap). Without
// statfs (an in-memory FS) it only tries after a delete.
func (s *Store) maybeRestoreBallast(deleted bool) {
	if !s.diskFull.Load() {
		return
	}
	s.ballastM.Lock()
	defer s.ballastM.Unlock()
	if !s.diskFull.Load() {
		return
	}
	du, err := s.fs.GetDiskUsage(s.opts.Dir)
	if (err != nil && !deleted) || (err == nil && du.AvailBytes < 2*uint64(s.ballastSize)) {
		return
	}
	if err := s.placeBallast(); err != nil {
		s.log.Info("disk still full", "err", err)
		return
	}
	s.diskFull.Store(false)
	s.log.Info("disk no longer full: ballast restored")
}

var _ io.Closer = (*Store)(nil)

// bufferPool recycles ReadCells' buffers for file-backed shards, by size
// class (powers of two), so that reads do not touch fresh memory. Buffers
// are not cleared: the fetcher overwrites them whole.
type bufferPool struct {
	classes [32]sync.Pool
}

func sizeClass(n int) int {
	c := 0
	for 1<<c < n {
		c++
	}
	return c
}

// Get implements BufferPool.
func (p *bufferPool) Get(n int) []byte {
	c := sizeClass(n)
	if c >= len(p.classes) {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

// Put implements BufferPool.
func (p *bufferPool) Put(b []byte) {
	c := sizeClass(cap(b))
	if c >= len(p.classes) || cap(b) != 1<<c {
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}
