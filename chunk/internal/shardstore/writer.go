package shardstore

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/errors/oserror"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/minio/sha256-simd"
)

// Writer receives one shard's cells, in order, and commits them atomically.
// Get one from Store.Create. A Writer is meant for one goroutine (the one
// receiving the shard's stream); its methods are nevertheless safe to call
// concurrently with each other and with Store.Close.
//
// Every Writer must end with Commit or Abort; until then it holds a space
// reservation and, for a large shard, a staging file.
type Writer struct {
	s        *Store
	id       ID
	length   uint64
	cellSize uint32
	ncells   uint32
	large    bool
	reserved uint64
	created  time.Time

	mu        sync.Mutex
	next      uint32 // cells received
	digest    hash.Hash
	err       error // sticky: the Writer is finished
	committed bool
	info      Info
	batch     *pebble.Batch // small shards
	stage     *stagedTable  // large shards: the cells' checksums
	cells     *stagingFile  // large shards: the cells' bytes
	cellsPath string        // in the staging directory
	gen       uint64        // large shards: names the cells' file
	files     *fileWriter   // large shards: writes cells to cells
}

// Create starts writing shard id of length bytes cut into cells of cellSize
// bytes (the last cell holds the remainder). It reserves the shard's space.
//
// Errors: ErrInvalid for a cell size of 0 or above MaxCellSize, a length
// above MaxShardLength, or more than 2^32-1 cells; ErrNoSpace when the shard
// does not fit in the free space (see Usage) or the store is in its
// disk-full state; ErrClosed; ErrFailed.
func (s *Store) Create(id ID, length uint64, cellSize uint32) (*Writer, error) {
	if cellSize == 0 || cellSize > MaxCellSize {
		return nil, opErr("create", id, fmt.Errorf("%w: cell size %d (want 1 to %d)", ErrInvalid, cellSize, MaxCellSize))
	}
	if length > MaxShardLength {
		return nil, opErr("create", id, fmt.Errorf("%w: length %d above %d", ErrInvalid, length, uint64(MaxShardLength)))
	}
	n := cells(length, cellSize)
	if n > 1<<32-1 {
		return nil, opErr("create", id, fmt.Errorf("%w: %d cells", ErrInvalid, n))
	}
	if err := s.begin(); err != nil {
		return nil, opErr("create", id, err)
	}
	defer s.end()
	w := &Writer{
		s:        s,
		id:       id,
		length:   length,
		cellSize: cellSize,
		ncells:   uint32(n),
		large:    length > 0 && length >= s.opts.LargeShardThreshold,
		created:  s.opts.Now(),
		digest:   sha256.New(),
	}
	// Room for the cells, their checksums and keys, metadata, and the
	// sstable index and footer.
	w.reserved = length + n*(32+cellKeyLen+16) + 8<<10

	s.maybeRestoreBallast(false) // space may have come back by other means
	onDisk := s.db.Metrics().DiskSpaceUsage()
	s.mu.Lock()
	_, free := s.spaceLocked(onDisk)
	if w.reserved > free {
		s.mu.Unlock()
		if s.diskFull.Load() {
			return nil, opErr("create", id, fmt.Errorf("%w: disk full (delete shards to free space)", ErrNoSpace))
		}
		return nil, opErr("create", id, fmt.Errorf("%w: need %d bytes, %d free", ErrNoSpace, w.reserved, free))
	}
	s.mu.reserved += w.reserved
	s.mu.writers[w] = struct{}{}
	s.mu.Unlock()

	if w.large {
		w.gen = s.seq.Add(1)
		st, err := s.newStagedTable(id, "sums")
		if err == nil {
			w.stage = st
			w.cellsPath = s.fs.PathJoin(s.stagingDir, fileName(id, w.gen))
			var f vfs.File
			f, err = s.fs.Create(w.cellsPath, vfs.WriteCategoryUnspecified)
			if err == nil {
				// Start writeback every few MiB (sync_file_range where
				// available), so the disk works while the next cells
				// arrive and Commit's fsync finds little left to write.
				// vfs.File.Write may modify what it is given;
				// files of the OS do not, so on a real disk
				// cells are written from the caller's buffer,
				// elsewhere from a scratch copy.
				var scratch []byte
				if f.Fd() == vfs.InvalidFd {
					scratch = make([]byte, 0, min(uint64(cellSize), length))
				}
				if s.opts.BufferedCells {
					f = vfs.NewSyncingFile(f, vfs.SyncingFileOptions{NoSyncOnClose: true, BytesPerSync: stagingBytesPerSync})
				} else {
					// Direct writes leave no dirty pages for
					// early writeback to start (direct.go).
					f = newDirectFile(f)
				}
				w.cells = &stagingFile{f: f}
				w.files = startFileWriter(s, w.cells, scratch)
			}
		}
		if err != nil {
			err = fmt.Errorf("create staging file: %w", classify(err))
			w.finish(err)
			return nil, opErr("create", id, err)
		}
	} else {
		w.batch = s.db.NewBatchWithSize(int(length + n*(32+cellKeyLen+8) + 128))
	}
	return w, nil
}

// WriteCell appends the next cell. It checks that sha256(data) == sum
// (ErrChecksum), that data has the cell's length: cellSize, or the remainder
// for the last cell (ErrInvalid), and that the shard is not complete yet
// (ErrInvalid). A rejected cell is not recorded: the Writer stays usable
// and the caller may send the cell again. Storage errors (ErrNoSpace, I/O)
// finish the Writer; a large shard's cells are written to disk behind the
// caller, so such an error may surface at a later cell or at Commit. data
// may be reused when WriteCell returns.
func (w *Writer) WriteCell(data []byte, sum [32]byte) error {
	return w.writeCell(data, &sum, nil)
}

// WriteCellOwned is WriteCell for a caller that hands data over: when it
// returns nil, the Writer owns data and calls release once it no longer
// needs the bytes (possibly after WriteCellOwned returns, on another
// goroutine); this saves a large shard's cells a copy. When it returns an
// error, data is still the caller's and release is not called.
func (w *Writer) WriteCellOwned(data []byte, sum [32]byte, release func()) error {
	return w.writeCell(data, &sum, release)
}

// WriteMadeCell is WriteCellOwned for a cell made here (a rebuilt one)
// rather than received: there is no checksum from elsewhere to check it
// against, so the Writer computes the one it stores, and the cell is
// hashed once instead of twice.
func (w *Writer) WriteMadeCell(data []byte, release func()) error {
	return w.writeCell(data, nil, release)
}

// writeCell stores the next cell; a nil sum means data was made here and
// its checksum is computed rather than checked.
func (w *Writer) writeCell(data []byte, given *[32]byte, release func()) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return opErr("write", w.id, w.err)
	}
	if err := w.s.begin(); err != nil {
		return opErr("write", w.id, err)
	}
	defer w.s.end()
	c := w.next
	if c >= w.ncells {
		return opErr("write", w.id, fmt.Errorf("%w: cell %d of a shard of %d cells", ErrInvalid, c, w.ncells))
	}
	if want := cellLen(w.length, w.cellSize, c); uint32(len(data)) != want || uint64(len(data)) != uint64(want) {
		return opErr("write", w.id, fmt.Errorf("%w: cell %d has %d bytes, want %d", ErrInvalid, c, len(data), want))
	}
	sum := sha256.Sum256(data)
	if given != nil && *given != sum {
		return opErr("write", w.id, fmt.Errorf("%w in cell %d", ErrChecksum, c))
	}
	if w.large {
		err := w.files.failed()
		if err == nil {
			err = w.stage.sst.Set(cellKey(tagLarge, w.id, c), sum[:])
		}
		if err != nil {
			err = fmt.Errorf("stage cell %d: %w", c, classify(err))
			w.finish(err)
			return opErr("write", w.id, err)
		}
		if release == nil {
			// The caller keeps data: write a copy.
			buf := w.s.bufs.Get(len(data))
			copy(buf, data)
			data, release = buf, func() { w.s.bufs.Put(buf) }
		}
		w.files.add(data, release)
	} else {
		var kb [cellKeyLen]byte
		op := w.batch.SetDeferred(cellKeyLen, 32+len(data))
		copy(op.Key, appendCellKey(kb[:0], tagSmall, w.id, c))
		copy(op.Value, sum[:])
		copy(op.Value[32:], data)
		if err := op.Finish(); err != nil {
			err = fmt.Errorf("batch cell %d: %w", c, err)
			w.finish(err)
			return opErr("write", w.id, err)
		}
		if release != nil {
			release()
		}
	}
	w.digest.Write(sum[:])
	w.next++
	return nil
}

// fileWriter appends a large shard's verified cells to its cells file on a
// goroutine of its own, so that the caller hashes the next cell while this
// one is written. It holds at most fileDepth cells queued.
type fileWriter struct {
	s       *Store
	out     *stagingFile
	scratch []byte // see Writer.scratch
	queue   chan fileCell
	stopped chan struct{}
	err     atomic.Pointer[error]
}

type fileCell struct {
	data    []byte
	release func()
}

const fileDepth = 2

func startFileWriter(s *Store, out *stagingFile, scratch []byte) *fileWriter {
	fw := &fileWriter{s: s, out: out, scratch: scratch, queue: make(chan fileCell, fileDepth), stopped: make(chan struct{})}
	queue := fw.queue // stop clears the field
	go func() {
		defer close(fw.stopped)
		for c := range queue {
			if fw.err.Load() == nil {
				out := c.data
				if fw.scratch != nil {
					out = append(fw.scratch[:0], c.data...)
				}
				err := fw.out.Write(out)
				fw.s.fileWritten.Add(uint64(len(c.data)))
				if err != nil {
					fw.err.Store(&err)
				}
			}
			c.release()
		}
	}()
	return fw
}

func (fw *fileWriter) add(data []byte, release func()) {
	fw.queue <- fileCell{data, release}
}

// failed returns the error of an earlier cell's write, if any.
func (fw *fileWriter) failed() error {
	if err := fw.err.Load(); err != nil {
		return *err
	}
	return nil
}

// stop waits for the queued cells and stops the goroutine; it returns the
// first write error. It is idempotent.
func (fw *fileWriter) stop() error {
	if fw.queue != nil {
		close(fw.queue)
		fw.queue = nil
	}
	<-fw.stopped
	return fw.failed()
}

// Commit makes the shard durable (synced) and visible, atomically: after a
// crash the shard is either whole or absent. It requires every cell
// (ErrInvalid otherwise; the Writer stays usable). If the shard already
// exists, Commit succeeds when it is identical (same length, cell size and
// per-cell checksums) and returns the stored Info; otherwise it fails with
// ErrExists. Of concurrent Commits of one ID, one writes and the others see
// its result. Any other failure (ErrNoSpace, ErrFailed, I/O) leaves nothing
// of the shard visible. Commit after a successful Commit returns the same
// Info.
func (w *Writer) Commit() (Info, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return w.info, nil
	}
	if w.err != nil {
		return Info{}, opErr("commit", w.id, w.err)
	}
	if err := w.s.begin(); err != nil {
		return Info{}, opErr("commit", w.id, err)
	}
	defer w.s.end()
	if w.next != w.ncells {
		return Info{}, opErr("commit", w.id, fmt.Errorf("%w: %d of %d cells written", ErrInvalid, w.next, w.ncells))
	}
	m := meta{large: w.large, file: w.large, gen: w.gen, length: w.length, cellSize: w.cellSize, created: w.created}
	w.digest.Sum(m.digest[:0])

	info, err := w.commit(&m)
	if err != nil {
		w.finish(err)
		return Info{}, opErr("commit", w.id, err)
	}
	w.committed = true
	w.info = info
	w.finish(errCommitted)
	return info, nil
}

// Errors of a finished Writer's later calls.
var (
	errCommitted = fmt.Errorf("%w: writer already committed", ErrInvalid)
	errAborted   = fmt.Errorf("%w: writer aborted", ErrInvalid)
)

func (w *Writer) commit(m *meta) (Info, error) {
	s := w.s
	var metaTable *stagedTable
	if w.large {
		// Sync the cells' file and their checksums' table and write the
		// metadata table before taking the ID lock: the slow part runs
		// in parallel with other writers of the same ID.
		err := w.files.stop()
		if err == nil {
			err = w.cells.Finish()
		}
		if err != nil {
			return Info{}, fmt.Errorf("stage cells: %w", classify(err))
		}
		if err := w.stage.finish(); err != nil {
			return Info{}, fmt.Errorf("stage checksums: %w", classify(err))
		}
		metaTable, err = s.newStagedTable(w.id, "meta")
		if err != nil {
			return Info{}, err
		}
		defer metaTable.remove()
		err = metaTable.sst.Set(idKey(tagMeta, w.id), m.encode())
		if err == nil {
			err = metaTable.finish()
		}
		if err != nil {
			return Info{}, fmt.Errorf("stage metadata: %w", classify(err))
		}
	}

	unlock := s.lockID(w.id)
	defer unlock()
	old, ok, err := s.getMeta(w.id)
	if err != nil {
		return Info{}, err
	}
	if ok {
		if old.length == m.length && old.cellSize == m.cellSize && old.digest == m.digest {
			return old.info(w.id), nil
		}
		return Info{}, fmt.Errorf("%w (stored: %d bytes in cells of %d)", ErrExists, old.length, old.cellSize)
	}
	if w.large {
		err = s.commitFile(w, metaTable)
	} else {
		_ = w.batch.Set(idKey(tagMeta, w.id), m.encode(), nil)
		// Pebble commits concurrent synced batches with one WAL sync.
		err = s.guard(func() error { return w.batch.Commit(pebble.Sync) })
	}
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	s.mu.shards++
	if m.file {
		s.mu.fileBytes += m.length
	}
	s.mu.Unlock()
	return m.info(w.id), nil
}

// commitFile moves a large shard's synced cells file into Dir/shards and
// ingests its checksums and metadata, which is what makes it visible: a
// crash before the ingest leaves a file without metadata, which Open
// removes. The caller holds the ID lock.
func (s *Store) commitFile(w *Writer, metaTable *stagedTable) error {
	final := s.fs.PathJoin(s.shardsDir, fileName(w.id, w.gen))
	if err := s.fs.Rename(w.cellsPath, final); err != nil {
		return fmt.Errorf("move cells file: %w", classify(err))
	}
	w.cellsPath = final // Abort removes it from there
	if err := syncDir(s.fs, s.shardsDir); err != nil {
		return fmt.Errorf("sync %s: %w", s.shardsDir, classify(err))
	}
	err := s.guard(func() error {
		return s.db.Ingest(context.Background(), []string{w.stage.path, metaTable.path})
	})
	if errors.Is(err, ErrFailed) {
		// What reached the disk is unknown: the shard may come back
		// whole at the next Open, which removes the file if not.
		w.cellsPath = ""
	}
	if err != nil {
		return err
	}
	w.cellsPath = "" // the store's now
	return nil
}

// Abort discards the shard and releases its space. It is safe after Commit
// (a no-op) and more than once.
func (w *Writer) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.finish(errAborted)
	}
}

// abandon is Store.Close's Abort: later calls report ErrClosed.
func (w *Writer) abandon() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.finish(ErrClosed)
	}
}

// finish ends the Writer with err (sticky), dropping its batch or staging
// file and its space reservation. w.mu must be held (or w unshared).
func (w *Writer) finish(err error) {
	if w.err != nil {
		return
	}
	w.err = err
	if w.batch != nil {
		_ = w.batch.Close()
		w.batch = nil
	}
	if w.stage != nil {
		w.stage.remove()
		w.stage = nil
	}
	if w.cells != nil {
		w.cells.abort() // queued cells fail fast
		_ = w.files.stop()
		w.cells = nil
	}
	s := w.s
	if w.cellsPath != "" {
		if err := s.fs.Remove(w.cellsPath); err != nil && !oserror.IsNotExist(err) {
			s.log.Warn("remove staged cells", "path", w.cellsPath, "err", err)
		}
		w.cellsPath = ""
	}
	s.mu.Lock()
	s.mu.reserved -= w.reserved
	delete(s.mu.writers, w)
	s.mu.Unlock()
}

// stagedTable is an sstable being written in the staging directory, to be
// ingested.
type stagedTable struct {
	s    *Store
	path string
	out  *stagingFile
	sst  *sstable.Writer
	done bool // sst closed
}

// stagingBytesPerSync is how often a staging file's writeback is started.
const stagingBytesPerSync = 4 << 20

func (s *Store) newStagedTable(id ID, kind string) (*stagedTable, error) {
	name := strconv.FormatUint(id.Slice, 10) + "-" + strconv.FormatUint(uint64(id.Index), 10) +
		"-" + strconv.FormatUint(s.seq.Add(1), 10) + "-" + kind + ".sst"
	path := s.fs.PathJoin(s.stagingDir, name)
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("create staging file: %w", classify(err))
	}
	out := &stagingFile{f: f}
	return &stagedTable{s: s, path: path, out: out, sst: sstable.NewWriter(out, s.wopts)}, nil
}

// finish writes the table's index and footer and syncs the file.
func (t *stagedTable) finish() error {
	t.done = true
	return t.sst.Close()
}

// remove abandons the table (if unfinished) and removes its file.
func (t *stagedTable) remove() {
	if !t.done {
		t.done = true
		t.out.abort()     // later writes fail fast
		_ = t.sst.Close() // fails fast too; stops the sstable writer's goroutine
	}
	// Ingest removes its inputs when it succeeds.
	if err := t.s.fs.Remove(t.path); err != nil && !oserror.IsNotExist(err) {
		t.s.log.Warn("remove staging file", "path", t.path, "err", err)
	}
}

// stagingFile is the objstorage.Writable under a staged sstable: writes go
// straight to the file (the sstable writer hands over whole blocks), and
// Finish syncs it.
type stagingFile struct {
	mu      sync.Mutex
	f       vfs.File
	aborted bool
	closed  bool
}

func (o *stagingFile) Write(p []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.aborted {
		return errAborted
	}
	_, err := o.f.Write(p)
	return err
}

func (o *stagingFile) Finish() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.aborted {
		o.closeLocked()
		return errAborted
	}
	err := o.f.Sync()
	return errors.Join(err, o.closeLocked())
}

func (o *stagingFile) Abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.closeLocked()
}

func (o *stagingFile) abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.aborted = true
	_ = o.closeLocked()
}

func (o *stagingFile) closeLocked() error {
	if o.closed {
		return nil
	}
	o.closed = true
	return o.f.Close()
}
