// Package storetest is the conformance suite for chunkserver shard stores:
// Run checks one Harness (a kind of storage under the store) against the
// contract documented in chunk/internal/shardstore. The same suite runs on
// the real disk, on Pebble's crashable in-memory file system, and on an
// error-injecting file system; harnesses that can crash or inject errors get
// the crash and fault subtests too.
package storetest

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// Harness makes storage for the suite.
type Harness struct {
	// NewStorage returns fresh, empty storage. Required. It registers its
	// own cleanup with t.
	NewStorage func(t testing.TB) *Storage
}

// Storage is where one store under test lives, and what the harness can do
// to it. FS and Dir are required; Crash and Inject are optional abilities:
// the subtests that need a missing one are skipped.
type Storage struct {
	FS  vfs.FS
	Dir string
	// Crash simulates a power loss at this instant: it returns a file
	// system holding exactly what had been synced, on which the suite
	// opens the next store. The store running on the old file system is
	// abandoned (the suite closes it afterwards; that does not touch the
	// returned file system). Later Crash and Inject calls apply to the
	// returned file system.
	Crash func() vfs.FS
	// Inject makes every later operation on the storage's file systems
	// call fail first; a non-nil error fails the operation with that
	// error. fail may block (to hold an operation at a crash point).
	// Inject(nil) stops injecting.
	Inject func(fail func(op errorfs.Op) error)
}

// Disk is the harness for the store on the real disk, in t.TempDir().
func Disk() Harness {
	return Harness{NewStorage: func(t testing.TB) *Storage {
		return &Storage{FS: vfs.Default, Dir: t.TempDir()}
	}}
}

// CrashableMem is the harness for vfs.NewCrashableMem: it can Crash.
func CrashableMem() Harness {
	return Harness{NewStorage: func(t testing.TB) *Storage {
		mem := vfs.NewCrashableMem()
		st := &Storage{FS: mem, Dir: "/store"}
		st.Crash = func() vfs.FS {
			mem = mem.CrashClone(vfs.CrashCloneCfg{})
			return mem
		}
		return st
	}}
}

// Faulty is the harness for errorfs over vfs.NewCrashableMem: it can
// Inject errors and Crash.
func Faulty() Harness {
	return Harness{NewStorage: func(t testing.TB) *Storage {
		var fail atomic.Pointer[func(errorfs.Op) error]
		inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
			if f := fail.Load(); f != nil {
				return (*f)(op)
			}
			return nil
		})
		mem := vfs.NewCrashableMem()
		st := &Storage{FS: errorfs.Wrap(mem, inj), Dir: "/store"}
		st.Crash = func() vfs.FS {
			mem = mem.CrashClone(vfs.CrashCloneCfg{})
			return errorfs.Wrap(mem, inj)
		}
		st.Inject = func(f func(errorfs.Op) error) {
			if f == nil {
				fail.Store(nil)
			} else {
				fail.Store(&f)
			}
		}
		return st
	}}
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			for _, c := range modeCases {
				t.Run(c.name, func(t *testing.T) {
					e := newEnv(t, h, m.tweak)
					c.fn(t, e)
				})
			}
		})
	}
	for _, c := range storeCases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, h)
		})
	}
}

// mode selects the write path: every shard small (a batch) or every
// non-empty shard large (a staged, ingested sstable).
type mode struct {
	name  string
	tweak func(*shardstore.Options)
}

var modes = []mode{
	{"small", func(o *shardstore.Options) { o.LargeShardThreshold = 64 << 20 }},
	{"large", func(o *shardstore.Options) { o.LargeShardThreshold = 1 }},
}

type testCase[T any] struct {
	name string
	fn   func(*testing.T, T)
}

var modeCases = []testCase[*env]{
	{"RoundTrip", testRoundTrip},
	{"IdempotentRewrite", testIdempotent},
	{"ExistsDifferent", testExists},
	{"BadChecksum", testBadChecksum},
	{"MadeCells", testMadeCells},
	{"CellLengths", testCellLengths},
	{"ReadRanges", testReadRanges},
	{"StatListDelete", testStatListDelete},
	{"DeleteWhileReading", testDeleteWhileReading},
	{"ConcurrentWriters", testConcurrentWriters},
	{"Abort", testAbort},
	{"Reopen", testReopen},
	{"Closed", testClosed},
	{"Crash", testCrash},
	{"CrashBeforeCommitReturns", testCrashInCommit},
	{"SyncFails", testSyncFails},
	{"WriteFails", testWriteFails},
	{"NoSpaceInjected", testNoSpaceInjected},
	{"NoSpaceOnce", testNoSpaceOnce},
}

var storeCases = []testCase[Harness]{
	{"CreateInvalid", testCreateInvalid},
	{"Capacity", testCapacity},
	{"SpaceReclaimed", testSpaceReclaimed},
	{"SecondOpenFails", testSecondOpen},
}

// env is one store under test on one Storage.
type env struct {
	t     testing.TB
	st    *Storage
	fs    vfs.FS // current file system (changes on crash)
	tweak func(*shardstore.Options)
	s     *shardstore.Store
	log   *slog.Logger
}

func newEnv(t testing.TB, h Harness, tweaks ...func(*shardstore.Options)) *env {
	st := h.NewStorage(t)
	e := &env{t: t, st: st, fs: st.FS, log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e.tweak = func(o *shardstore.Options) {
		for _, tw := range tweaks {
			if tw != nil {
				tw(o)
			}
		}
	}
	e.s = e.open()
	t.Cleanup(func() {
		if st.Inject != nil {
			st.Inject(nil)
		}
		_ = e.s.Close()
	})
	return e
}

func (e *env) options() shardstore.Options {
	o := shardstore.Options{
		Dir:         e.st.Dir,
		FS:          e.fs,
		Logger:      e.log,
		BallastSize: 256 << 10,
		CacheSize:   8 << 20,
		// Small memtables keep in-memory tests light.
		MemTableSize: 4 << 20,
	}
	e.tweak(&o)
	return o
}

func (e *env) open() *shardstore.Store {
	e.t.Helper()
	s, err := shardstore.Open(e.options())
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	return s
}

// reopen closes the store (whatever state it is in) and opens it again on
// the same file system.
func (e *env) reopen() {
	e.t.Helper()
	_ = e.s.Close()
	e.s = e.open()
}

// crash simulates power loss and opens a store on what survived.
func (e *env) crash() {
	e.t.Helper()
	fs := e.st.Crash()
	old := e.s
	e.fs = fs
	_ = old.Close()
	e.s = e.open()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// shard is test data cut into cells.
type shard struct {
	id       shardstore.ID
	data     []byte
	cellSize uint32
}

func newShard(id shardstore.ID, seed uint64, length int, cellSize uint32) shard {
	r := rand.New(rand.NewPCG(seed, uint64(length)))
	data := make([]byte, length)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return shard{id: id, data: data, cellSize: cellSize}
}

func (sh shard) cells() [][]byte {
	var cs [][]byte
	for off := 0; off < len(sh.data); off += int(sh.cellSize) {
		cs = append(cs, sh.data[off:min(off+int(sh.cellSize), len(sh.data))])
	}
	return cs
}

// write stores sh through a Writer; on error it aborts the Writer.
func write(s *shardstore.Store, sh shard) (shardstore.Info, error) {
	w, err := s.Create(sh.id, uint64(len(sh.data)), sh.cellSize)
	if err != nil {
		return shardstore.Info{}, err
	}
	defer w.Abort()
	for _, c := range sh.cells() {
		if err := w.WriteCell(c, sum(c)); err != nil {
			return shardstore.Info{}, err
		}
	}
	return w.Commit()
}

func mustWrite(t testing.TB, s *shardstore.Store, sh shard) shardstore.Info {
	t.Helper()
	info, err := write(s, sh)
	if err != nil {
		t.Fatalf("write shard %v: %v", sh.id, err)
	}
	return info
}

// readAll reads the whole shard, checking each stored checksum.
func readAll(s *shardstore.Store, id shardstore.ID) ([]byte, error) {
	var out []byte
	next := uint32(0)
	err := s.ReadCells(id, 0, 0, func(cell uint32, data []byte, sm [32]byte) error {
		if cell != next {
			return errors.New("cells out of order")
		}
		next++
		if sum(data) != sm {
			return errors.New("stored checksum does not match stored data")
		}
		out = append(out, data...)
		return nil
	})
	return out, err
}

// checkShard fails t unless the store holds exactly sh.
func checkShard(t testing.TB, s *shardstore.Store, sh shard) {
	t.Helper()
	info, err := s.Stat(sh.id)
	if err != nil {
		t.Fatalf("stat %v: %v", sh.id, err)
	}
	if info.ID != sh.id || info.Length != uint64(len(sh.data)) || info.CellSize != sh.cellSize {
		t.Fatalf("stat %v = %+v, want length %d cell size %d", sh.id, info, len(sh.data), sh.cellSize)
	}
	got, err := readAll(s, sh.id)
	if err != nil {
		t.Fatalf("read %v: %v", sh.id, err)
	}
	if string(got) != string(sh.data) {
		t.Fatalf("read %v: %d bytes differ from the %d written", sh.id, len(got), len(sh.data))
	}
}

// checkAbsent fails t unless the store has no trace of id.
func checkAbsent(t testing.TB, s *shardstore.Store, id shardstore.ID) {
	t.Helper()
	if _, err := s.Stat(id); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("stat %v: got %v, want ErrNotFound", id, err)
	}
	if err := s.ReadCells(id, 0, 0, func(uint32, []byte, [32]byte) error { return nil }); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("read %v: got %v, want ErrNotFound", id, err)
	}
	err := s.List(id, 1, func(i shardstore.Info) error {
		if i.ID == id {
			return errors.New("listed")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list from %v: %v", id, err)
	}
}

// checkAbsentOrWhole accepts a shard that is absent or exactly sh: what a
// store may hold after a Commit that did not acknowledge.
func checkAbsentOrWhole(t testing.TB, s *shardstore.Store, sh shard) {
	t.Helper()
	if _, err := s.Stat(sh.id); errors.Is(err, shardstore.ErrNotFound) {
		checkAbsent(t, s, sh.id)
		return
	}
	checkShard(t, s, sh)
}

func expectErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

var bg = context.Background()

// onceFailer returns an injector that fails the first operation matching
// match with err after being armed, and passes everything else.
func onceFailer(match func(errorfs.Op) bool, err error) func(errorfs.Op) error {
	var done atomic.Bool
	return func(op errorfs.Op) error {
		if match(op) && done.CompareAndSwap(false, true) {
			return err
		}
		return nil
	}
}

func isSync(op errorfs.Op) bool {
	return op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo
}

func isWrite(op errorfs.Op) bool {
	return op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt
}

// onCommitPath reports whether op is on a file a Commit writes: Pebble's
// WAL or a staging file. Faults are injected there only, never into the
// files of Pebble's background work (a failed background MANIFEST write
// ends the process, by design).
func onCommitPath(op errorfs.Op) bool {
	return strings.HasSuffix(op.Path, ".log") || strings.Contains(op.Path, "/staging/")
}

// blocker holds the n-th matching operation until released.
type blocker struct {
	n       int32
	count   atomic.Int32
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlocker(n int32) *blocker {
	return &blocker{n: n, reached: make(chan struct{}), release: make(chan struct{})}
}

func (b *blocker) fail(op errorfs.Op) error {
	if isSync(op) && b.count.Add(1) == b.n {
		close(b.reached)
		<-b.release
	}
	return nil
}

func (b *blocker) unblock() { b.once.Do(func() { close(b.release) }) }
