package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// t0 is the leader time of a test's first command.
const t0 = int64(1_700_000_000) * 1e9

func openMem(tb testing.TB) *FSM {
	tb.Helper()
	f, err := Open("fsm", vfs.NewMem())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

// driver applies commands to an FSM the way the Raft layer would: rising
// indexes, leader time stamped into each command. With check set it
// verifies the invariants after every entry and that counters never fall.
type driver struct {
	tb    testing.TB
	f     *FSM
	index uint64
	now   int64
	check bool
	// log records every applied entry, for replay.
	log  [][]byte
	meta *fsmpb.Meta
}

func newDriver(tb testing.TB, check bool) *driver {
	return &driver{tb: tb, f: openMem(tb), now: t0, check: check, meta: &fsmpb.Meta{}}
}

// entry applies cmds as one log entry; each command without a time gets the
// driver's clock, which then moves on by a second.
func (d *driver) entry(cmds ...*fsmpb.Command) []Result {
	d.tb.Helper()
	for _, c := range cmds {
		if c.NowUnixNano == 0 {
			c.NowUnixNano = d.now
		}
	}
	d.now += 1e9
	data, err := EncodeEntry(cmds...)
	if err != nil {
		d.tb.Fatal(err)
	}
	return d.raw(data)
}

// raw applies one entry's bytes.
func (d *driver) raw(data []byte) []Result {
	d.tb.Helper()
	d.index++
	d.log = append(d.log, data)
	res, err := d.f.Apply(d.index, data)
	if err != nil {
		d.tb.Fatalf("apply %d: %v", d.index, err)
	}
	if d.check {
		d.verify()
	}
	return res
}

func (d *driver) verify() {
	d.tb.Helper()
	if err := d.f.Verify(); err != nil {
		d.tb.Fatalf("after entry %d: %v", d.index, err)
	}
	m := readMeta(d.tb, d.f)
	if m.NextInode < d.meta.NextInode || m.NextSlice < d.meta.NextSlice || m.AppliedIndex < d.meta.AppliedIndex {
		d.tb.Fatalf("after entry %d: counters fell: %v -> %v", d.index, &d.meta, m)
	}
	d.meta = m
}

func (d *driver) do(c *fsmpb.Command) Result {
	d.tb.Helper()
	res := d.entry(c)
	if len(res) != 1 {
		d.tb.Fatalf("%d results for one command", len(res))
	}
	return res[0]
}

func (d *driver) mustDo(c *fsmpb.Command) Result {
	d.tb.Helper()
	r := d.do(c)
	if r.Err != nil {
		d.tb.Fatalf("%v: %v", c, r.Err)
	}
	return r
}

func readMeta(tb testing.TB, f *FSM) *fsmpb.Meta {
	tb.Helper()
	var m fsmpb.Meta
	if _, err := getProto(f.db, metaKey(), &m, "meta"); err != nil {
		tb.Fatal(err)
	}
	return &m
}

// dump returns every key and value in the FSM's database, in order.
func dump(tb testing.TB, f *FSM) []byte {
	tb.Helper()
	it, err := f.db.NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	var buf bytes.Buffer
	for ok := it.First(); ok; ok = it.Next() {
		fmt.Fprintf(&buf, "%q=%x\n", it.Key(), it.Value())
	}
	return buf.Bytes()
}

// digest hashes the state except the applied index.
func digest(tb testing.TB, f *FSM) [32]byte {
	tb.Helper()
	it, err := f.db.NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	h := sha256.New()
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if bytes.Equal(it.Key(), metaKey()) {
			var m fsmpb.Meta
			if err := proto.Unmarshal(v, &m); err != nil {
				tb.Fatal(err)
			}
			m.AppliedIndex = 0
			v, _ = marshal(&m)
		}
		fmt.Fprintf(h, "%q=%x\n", it.Key(), v)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// errno returns err's errno if it is an *Error, else 0.
func errno(err error) syscall.Errno {
	var e *Error
	if errors.As(err, &e) {
		return e.Errno
	}
	return 0
}

var errnoNames = map[syscall.Errno]string{
	syscall.ENOENT: "ENOENT", syscall.EEXIST: "EEXIST", syscall.ENOTDIR: "ENOTDIR",
	syscall.EISDIR: "EISDIR", syscall.ENOTEMPTY: "ENOTEMPTY", syscall.ENAMETOOLONG: "ENAMETOOLONG",
	syscall.EINVAL: "EINVAL", syscall.EPERM: "EPERM", syscall.ENODATA: "ENODATA",
	syscall.EFBIG: "EFBIG", syscall.E2BIG: "E2BIG", syscall.ERANGE: "ERANGE", syscall.EMLINK: "EMLINK",
	syscall.ENOTSUP: "ENOTSUP", syscall.EAGAIN: "EAGAIN", syscall.ECANCELED: "ECANCELED",
}

func errnoName(no syscall.Errno) string {
	if s, ok := errnoNames[no]; ok {
		return s
	}
	if no == 0 {
		return "ok"
	}
	return fmt.Sprintf("errno(%d)", int(no))
}

// fmtErr prints an error with its errno name first.
func fmtErr(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return "error: " + errnoName(e.Errno) + ": " + e.Error()
	}
	return "error: " + err.Error()
}

// Command builders.

func cmd(op any) *fsmpb.Command {
	c := &fsmpb.Command{}
	switch o := op.(type) {
	case *fsmpb.Mkdir:
		c.Op = &fsmpb.Command_Mkdir{Mkdir: o}
	case *fsmpb.Create:
		c.Op = &fsmpb.Command_Create{Create: o}
	case *fsmpb.Mknod:
		c.Op = &fsmpb.Command_Mknod{Mknod: o}
	case *fsmpb.Symlink:
		c.Op = &fsmpb.Command_Symlink{Symlink: o}
	case *fsmpb.Link:
		c.Op = &fsmpb.Command_Link{Link: o}
	case *fsmpb.Unlink:
		c.Op = &fsmpb.Command_Unlink{Unlink: o}
	case *fsmpb.Rmdir:
		c.Op = &fsmpb.Command_Rmdir{Rmdir: o}
	case *fsmpb.Rename:
		c.Op = &fsmpb.Command_Rename{Rename: o}
	case *fsmpb.SetAttr:
		c.Op = &fsmpb.Command_SetAttr{SetAttr: o}
	case *fsmpb.SetXattr:
		c.Op = &fsmpb.Command_SetXattr{SetXattr: o}
	case *fsmpb.RemoveXattr:
		c.Op = &fsmpb.Command_RemoveXattr{RemoveXattr: o}
	case *fsmpb.SetLayout:
		c.Op = &fsmpb.Command_SetLayout{SetLayout: o}
	case *fsmpb.AllocateSlice:
		c.Op = &fsmpb.Command_AllocateSlice{AllocateSlice: o}
	case *fsmpb.ReplaceShard:
		c.Op = &fsmpb.Command_ReplaceShard{ReplaceShard: o}
	case *fsmpb.CommitSlice:
		c.Op = &fsmpb.Command_CommitSlice{CommitSlice: o}
	case *fsmpb.AckGarbage:
		c.Op = &fsmpb.Command_AckGarbage{AckGarbage: o}
	case *fsmpb.Concat:
		c.Op = &fsmpb.Command_Concat{Concat: o}
	case *fsmpb.OpenHandle:
		c.Op = &fsmpb.Command_OpenHandle{OpenHandle: o}
	case *fsmpb.ReleaseHandle:
		c.Op = &fsmpb.Command_ReleaseHandle{ReleaseHandle: o}
	case *fsmpb.ExpireClient:
		c.Op = &fsmpb.Command_ExpireClient{ExpireClient: o}
	case *fsmpb.SetLock:
		c.Op = &fsmpb.Command_SetLock{SetLock: o}
	case *fsmpb.CompactChunk:
		c.Op = &fsmpb.Command_CompactChunk{CompactChunk: o}
	case *fsmpb.WriteInline:
		c.Op = &fsmpb.Command_WriteInline{WriteInline: o}
	default:
		panic(fmt.Sprintf("cmd: %T", op)) // test bug
	}
	return c
}

func withReq(c *fsmpb.Command, client, id string) *fsmpb.Command {
	c.ClientId, c.RequestId = client, []byte(id)
	return c
}

var (
	rs63 = &chunkpb.Layout{Kind: chunkpb.Layout_KIND_STRIPED, DataShards: 6, ParityShards: 3, CellSize: 1 << 20}
	rep3 = &chunkpb.Layout{Kind: chunkpb.Layout_KIND_REPLICATED, Replicas: 3}
)

// shardsFor returns placeholder locations for every shard of l.
func shardsFor(l *chunkpb.Layout) []*masterpb.ShardLocation {
	w := layoutWidth(l)
	out := make([]*masterpb.ShardLocation, w)
	for i := range out {
		out[i] = &masterpb.ShardLocation{Index: uint32(i), ChunkserverId: fmt.Sprintf("cs-%d", i), Address: fmt.Sprintf("10.0.0.%d:7000", i)}
	}
	return out
}

// allocate returns an AllocateSlice of length bytes, replicated 3 ways,
// expiring in an hour.
func allocate(ino, length uint64, now int64) *fsmpb.Command {
	c := cmd(&fsmpb.AllocateSlice{Inode: ino, Length: length, Layout: rep3, Shards: shardsFor(rep3), ExpiresUnixNano: now + 3600e9})
	c.NowUnixNano = now
	return c
}

// allocate returns an AllocateSlice of length bytes in ino's layout
// policy (replicated 3 ways if none), expiring in an hour.
func (d *driver) allocate(ino, length uint64) *fsmpb.Command {
	l, err := d.f.LayoutPolicy(ino)
	if err != nil || l == nil {
		l = rep3
	}
	c := allocate(ino, length, d.now)
	c.GetAllocateSlice().Layout = l
	c.GetAllocateSlice().Shards = shardsFor(l)
	return c
}

// write allocates and commits a slice covering [off, off+length) of ino.
func (d *driver) write(ino, off, length uint64) (Result, uint64) {
	d.tb.Helper()
	a := d.do(d.allocate(ino, length))
	if a.Err != nil {
		return a, 0
	}
	return d.do(cmd(&fsmpb.CommitSlice{Inode: ino, SliceId: a.SliceID, Offset: off, Length: length})), a.SliceID
}
