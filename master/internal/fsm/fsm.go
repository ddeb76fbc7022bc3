package fsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Limits. They are part of the replicated semantics: every replica must run
// with the same values, so they are constants, not options.
const (
	// RootInode is the root directory's inode number.
	RootInode = 1
	// ChunkSize is the logical chunk size a file's byte range is cut into.
	ChunkSize = 64 << 20
	// MaxNameLen is the longest directory entry name, in bytes.
	MaxNameLen = 255
	// MaxSymlinkLen is the longest symlink target, in bytes.
	MaxSymlinkLen = 4095
	// MaxXattrNameLen and MaxXattrValueLen bound extended attributes, as
	// Linux does.
	MaxXattrNameLen  = 255
	MaxXattrValueLen = 64 << 10
	// MaxFileSize bounds file sizes and slice ends (EFBIG beyond).
	MaxFileSize = 1 << 60
	// MaxSliceLength bounds one slice (AllocateSlice's length), so that a
	// commit touches a bounded number of chunks.
	MaxSliceLength = 64 * ChunkSize
	// MaxRequestIDLen and MaxClientIDLen bound the request-ID table's keys.
	MaxRequestIDLen = 64
	MaxClientIDLen  = 256
	// RequestRetention is how long, in leader time, a successful request's
	// result is kept for retries. A retry arriving later is applied again.
	RequestRetention = 10 * time.Minute
)

// DefaultCacheSize is Pebble's block cache size unless WithCacheSize says
// otherwise. Namespace lookups are point reads: without the index and data
// blocks cached, each would cost disk reads.
const DefaultCacheSize = 256 << 20

// Option tunes Open. Options are local performance knobs, never replicated
// semantics.
type Option func(*pebble.Options)

// WithCacheSize sets Pebble's block cache size in bytes.
func WithCacheSize(bytes int64) Option {
	return func(o *pebble.Options) { o.CacheSize = bytes }
}

// WithLogger sends Pebble's logs to l (the default drops them below
// Error and sends errors to slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *pebble.Options) { o.Logger = slogLogger{l} }
}

// PebbleOptions returns the Pebble options Open uses on fs, for callers that
// open the database themselves and pass it to New.
func PebbleOptions(fs vfs.FS, opts ...Option) *pebble.Options {
	o := &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             slogLogger{slog.New(errorsOnly{slog.Default().Handler()})},
		CacheSize:          DefaultCacheSize,
		MemTableSize:       64 << 20,
	}
	// Bloom filters on every level: creates look up names that do not
	// exist yet, which without a filter means an index and a data block per
	// level.
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	for _, fn := range opts {
		fn(o)
	}
	return o
}

// FSM is the replicated state machine over one Pebble database. See the
// package doc for which goroutine may call what.
type FSM struct {
	db    *pebble.DB
	ownDB bool

	// applied mirrors Meta.applied_index for AppliedIndex.
	applied atomic.Uint64
	// needsRestore is set while the state is incomplete (a failed Restore).
	needsRestore atomic.Bool
	// broken is the sticky error of a failed Apply commit; only the Apply
	// goroutine touches it.
	broken error
	// floors speed up applyEntry's scans (floors.go); only the Apply
	// goroutine touches them, and load resets them.
	floors scanFloors
}

// Result is the outcome of one command.
type Result struct {
	// Attr is the inode's attributes after the command, for commands that
	// return one: mkdir, create, mknod, symlink, link, setattr, setlayout,
	// commit.
	Attr *masterpb.Attr
	// Created is false when a create found an existing file.
	Created bool
	// SliceID is the slice an allocate made (commit and replaceshard echo
	// theirs).
	SliceID uint64
	// Handle is the handle an open made.
	Handle uint64
	// Dirs are the attributes, after the command, of the directories
	// whose entries it changed (create, mkdir, mknod, symlink, link,
	// unlink, rmdir, rename, concat), in the order it changed them; a
	// directory it removed is not among them. A client that caches
	// attributes can take them instead of asking again: a changed
	// directory's cached attributes are stale, and the next path walk
	// through it would otherwise cost a round trip. Not kept for a
	// duplicate.
	Dirs []*masterpb.Attr
	// Duplicate is true when the request ID had been applied before: the
	// fields above are that first application's result.
	Duplicate bool
	// Err is nil on success, or an *Error, identical on every replica.
	Err error
}

// Open opens (creating if need be) the state machine's Pebble database in
// dir on fs (vfs.Default for disk, vfs.NewMem() in tests). The FSM owns the
// database: Close closes it.
func Open(dir string, fs vfs.FS, opts ...Option) (*FSM, error) {
	db, err := pebble.Open(dir, PebbleOptions(fs, opts...))
	if err != nil {
		return nil, fmt.Errorf("fsm: open %s: %w", dir, err)
	}
	f, err := New(db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	f.ownDB = true
	return f, nil
}

// New returns an FSM over a database the caller opened and keeps owning
// (Close leaves it open). The FSM must be the database's only writer. An
// empty database is initialised with the root directory (inode 1, mode 0755,
// owner 0:0, times 0) so that every replica starts from the same state.
func New(db *pebble.DB) (*FSM, error) {
	f := &FSM{db: db}
	if err := f.load(true); err != nil {
		return nil, err
	}
	return f, nil
}

// load reads the meta record (initialising an empty database when init is
// set) and the restore marker.
func (f *FSM) load(init bool) error {
	f.floors = scanFloors{}
	if _, c, err := f.db.Get(restoreKey()); err == nil {
		_ = c.Close()
		f.needsRestore.Store(true)
		return nil
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("fsm: read restore marker: %w", err)
	}
	var m fsmpb.Meta
	ok, err := getProto(f.db, metaKey(), &m, "meta")
	if err != nil {
		return err
	}
	if !ok {
		if !init {
			return errors.New("fsm: no meta record")
		}
		b := f.db.NewBatch()
		defer b.Close()
		if err := writeInitial(b); err != nil {
			return err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("fsm: initialise: %w", err)
		}
		m.AppliedIndex = 0
	}
	f.applied.Store(m.AppliedIndex)
	f.needsRestore.Store(false)
	return nil
}

// writeInitial writes the state every replica starts from.
func writeInitial(b *pebble.Batch) error {
	root := &fsmpb.Inode{
		Type:    masterpb.FileType_FILE_TYPE_DIRECTORY,
		Mode:    0o755,
		Nlink:   2,
		Version: 1,
		Parent:  RootInode,
	}
	m := &fsmpb.Meta{
		NextInode: RootInode + 1,
		NextSlice: 1,
		Stats:     &fsmpb.Stats{Inodes: 1, Directories: 1},
	}
	if err := setProto(b, inodeKey(RootInode), root); err != nil {
		return err
	}
	return setProto(b, metaKey(), m)
}

// Close releases the FSM, and closes the database if Open opened it. No
// other method may be running or be called after, and every Snapshot must
// have been closed.
func (f *FSM) Close() error {
	if f.ownDB {
		return f.db.Close()
	}
	return nil
}

// AppliedIndex returns the index of the last applied entry (0 before the
// first). Safe from any goroutine.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Apply applies the Raft log entry at index: data is an encoded
// fsmpb.Entry (see EncodeEntry). It returns one Result per command, in
// order; a command's failure (Result.Err, an *Error) leaves the state as it
// was and does not affect the other commands. Data that does not decode
// gives a single failed Result. The new applied index and all the commands'
// effects are committed in one Pebble batch, without fsync (see Durability
// in the package doc).
//
// An index at or below AppliedIndex was applied before (Raft replaying its
// log after a restart): Apply does nothing and returns nil, nil.
//
// A non-nil error means storage failed or stored data is corrupt, which no
// other replica is guaranteed to see: the caller must stop this replica.
// The error is sticky.
//
// Only the Raft FSM goroutine may call Apply.
func (f *FSM) Apply(index uint64, data []byte) ([]Result, error) {
	if f.broken != nil {
		return nil, f.broken
	}
	if f.needsRestore.Load() {
		return nil, ErrNeedsRestore
	}
	if index <= f.applied.Load() {
		return nil, nil
	}
	b := f.db.NewIndexedBatch()
	defer b.Close()
	fl := f.floors
	res, err := applyEntry(b, index, data, &fl)
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err != nil {
		f.broken = fmt.Errorf("fsm: apply entry %d: %w", index, err)
		return nil, f.broken
	}
	f.floors = fl
	f.applied.Store(index)
	return res, nil
}

// applyEntry applies data to b and sets the applied index, moving fl
// with the keys it inserts and scans.
func applyEntry(b *pebble.Batch, index uint64, data []byte, fl *scanFloors) ([]Result, error) {
	t := &txn{b: b, floors: fl}
	if _, err := getProto(b, metaKey(), &t.meta, "meta"); err != nil {
		return nil, err
	}
	if t.meta.Stats == nil {
		t.meta.Stats = &fsmpb.Stats{}
	}
	var e fsmpb.Entry
	var results []Result
	if err := proto.Unmarshal(data, &e); err != nil {
		results = []Result{{Err: newErr("apply", "entry "+objIno(index), errInval, "entry does not decode")}}
	} else {
		results = make([]Result, len(e.Commands))
		maxNow := int64(math.MinInt64)
		for i, c := range e.Commands {
			r, err := t.command(c)
			if err != nil {
				return nil, err
			}
			results[i] = r
			maxNow = max(maxNow, c.NowUnixNano)
		}
		if len(e.Commands) > 0 {
			budget := 64 + 2*len(e.Commands)
			if err := t.expireSlices(maxNow, budget); err != nil {
				return nil, err
			}
			if err := t.pruneRequests(maxNow, budget); err != nil {
				return nil, err
			}
		}
	}
	t.meta.AppliedIndex = index
	if err := setProto(b, metaKey(), &t.meta); err != nil {
		return nil, err
	}
	return results, nil
}

// command applies one command with the request-ID check around it.
func (t *txn) command(c *fsmpb.Command) (Result, error) {
	if c == nil {
		return Result{Err: newErr("apply", "command", errInval, "empty command")}, nil
	}
	opNum, opName := whichOp(c)
	if opNum == 0 {
		return Result{Err: newErr("apply", "command", errInval, "no operation")}, nil
	}
	var suffix []byte
	if len(c.RequestId) > 0 {
		if len(c.RequestId) > MaxRequestIDLen || len(c.ClientId) > MaxClientIDLen {
			return Result{Err: newErr(opName, "request", errInval, "request or client ID too long")}, nil
		}
		suffix = requestSuffix(c.ClientId, c.RequestId)
		var rec fsmpb.RequestRecord
		ok, err := getProto(t.b, requestKey(suffix), &rec, "request record")
		if err != nil {
			return Result{}, err
		}
		if ok {
			if rec.Abandoned {
				return Result{Err: newErr(opName, "request", errCanceled, "abandoned by its client")}, nil
			}
			if rec.Op != uint32(opNum) {
				return Result{Err: newErr(opName, "request", errInval, "request ID reused for another operation")}, nil
			}
			return Result{Attr: rec.Attr, Created: rec.Created, SliceID: rec.SliceId, Handle: rec.Handle, Duplicate: true}, nil
		}
	}
	t.begin(c.NowUnixNano)
	res, err := t.dispatch(c)
	if err != nil {
		if e, ok := err.(*Error); ok {
			// Validation failed before anything was written.
			return Result{Err: e}, nil
		}
		return Result{}, err
	}
	for _, d := range t.dirs {
		if n := t.inodes[d]; n != nil && !t.deleted[d] {
			res.Dirs = append(res.Dirs, attrOf(d, n))
		}
	}
	if err := t.flush(); err != nil {
		return Result{}, err
	}
	if suffix != nil {
		rec := &fsmpb.RequestRecord{
			TimeUnixNano: c.NowUnixNano,
			Op:           uint32(opNum),
			Attr:         res.Attr,
			Created:      res.Created,
			SliceId:      res.SliceID,
			Handle:       res.Handle,
		}
		if err := t.recordRequest(suffix, rec); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}

// recordRequest stores rec under the request suffix, with its retention
// entry. Write phase only.
func (t *txn) recordRequest(suffix []byte, rec *fsmpb.RequestRecord) error {
	if err := setProto(t.b, requestKey(suffix), rec); err != nil {
		return err
	}
	k := reqTimeKey(rec.TimeUnixNano, suffix)
	t.floors.reqTime.lower(k)
	return t.b.Set(k, nil, nil)
}

// whichOp returns the field number and name of c's operation (0 if none).
func whichOp(c *fsmpb.Command) (protoreflect.FieldNumber, string) {
	m := c.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("op"))
	if fd == nil {
		return 0, ""
	}
	return fd.Number(), opName(fd)
}

// opName is the operation name errors carry: the Command.op field name
// without underscores ("set_attr" -> "setattr"), except allocate_slice and
// commit_slice, which are "allocate" and "commit".
func opName(fd protoreflect.FieldDescriptor) string {
	switch n := string(fd.Name()); n {
	case "allocate_slice":
		return "allocate"
	case "commit_slice":
		return "commit"
	default:
		return strings.ReplaceAll(n, "_", "")
	}
}

func (t *txn) dispatch(c *fsmpb.Command) (Result, error) {
	switch op := c.Op.(type) {
	case *fsmpb.Command_Mkdir:
		return t.mkdir(op.Mkdir)
	case *fsmpb.Command_Create:
		return t.create(op.Create)
	case *fsmpb.Command_Mknod:
		return t.mknod(op.Mknod)
	case *fsmpb.Command_Symlink:
		return t.symlink(op.Symlink)
	case *fsmpb.Command_Link:
		return t.link(op.Link)
	case *fsmpb.Command_Unlink:
		return t.unlink(op.Unlink)
	case *fsmpb.Command_Rmdir:
		return t.rmdir(op.Rmdir)
	case *fsmpb.Command_Rename:
		return t.rename(op.Rename)
	case *fsmpb.Command_SetAttr:
		return t.setAttr(op.SetAttr)
	case *fsmpb.Command_SetXattr:
		return t.setXattr(op.SetXattr)
	case *fsmpb.Command_RemoveXattr:
		return t.removeXattr(op.RemoveXattr)
	case *fsmpb.Command_SetLayout:
		return t.setLayout(op.SetLayout)
	case *fsmpb.Command_AllocateSlice:
		return t.allocateSlice(op.AllocateSlice)
	case *fsmpb.Command_ReplaceShard:
		return t.replaceShard(op.ReplaceShard)
	case *fsmpb.Command_CommitSlice:
		return t.commitSlice(op.CommitSlice)
	case *fsmpb.Command_AckGarbage:
		return t.ackGarbage(op.AckGarbage)
	case *fsmpb.Command_SetMaster:
		return t.setMaster(op.SetMaster)
	case *fsmpb.Command_Concat:
		return t.concat(op.Concat)
	case *fsmpb.Command_OpenHandle:
		return t.openHandle(op.OpenHandle)
	case *fsmpb.Command_ReleaseHandle:
		return t.releaseHandle(op.ReleaseHandle)
	case *fsmpb.Command_ExpireClient:
		return t.expireClient(op.ExpireClient)
	case *fsmpb.Command_SetLock:
		return t.setLock(op.SetLock)
	case *fsmpb.Command_MoveShard:
		return t.moveShard(op.MoveShard)
	case *fsmpb.Command_SetDrain:
		return t.setDrain(op.SetDrain)
	case *fsmpb.Command_SetChunkserver:
		return t.setChunkserver(op.SetChunkserver)
	case *fsmpb.Command_CompactChunk:
		return t.compactChunk(op.CompactChunk)
	case *fsmpb.Command_WriteInline:
		return t.writeInline(op.WriteInline)
	}
	return Result{}, newErr("apply", "command", errInval, "unknown operation")
}

// EncodeEntry encodes commands as one log entry for Apply.
func EncodeEntry(cmds ...*fsmpb.Command) ([]byte, error) {
	return marshal(&fsmpb.Entry{Commands: cmds})
}

// reader is what Pebble's DB, Batch and Snapshot have in common.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// marshal encodes deterministically: replicas must write identical bytes.
func marshal(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// getProto reads key into m; false if the key is absent.
func getProto(r reader, key []byte, m proto.Message, what string) (bool, error) {
	v, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fsm: read %s: %w", what, err)
	}
	defer c.Close()
	if err := proto.Unmarshal(v, m); err != nil {
		return false, corrupt(what, key, err)
	}
	return true, nil
}

func setProto(b *pebble.Batch, key []byte, m proto.Message) error {
	v, err := marshal(m)
	if err != nil {
		return fmt.Errorf("fsm: encode %q: %w", key, err)
	}
	return b.Set(key, v, nil)
}

// exists reports whether key is present.
func exists(r reader, key []byte) (bool, error) {
	_, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, c.Close()
}

// slogLogger adapts Pebble's logging to slog: Pebble's chatty
// informational lines become Debug, its background errors Error.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Infof(format string, args ...any) {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		s.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (s slogLogger) Errorf(format string, args ...any) {
	s.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (s slogLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf only on unrecoverable internal corruption, and
	// expects it not to return.
	s.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	pebble.DefaultLogger.Fatalf(format, args...)
}

// errorsOnly passes on records at Error level and above.
type errorsOnly struct{ slog.Handler }

func (h errorsOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError && h.Handler.Enabled(ctx, l)
}
