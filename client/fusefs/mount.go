// Package fusefs mounts a Cairn namespace as a POSIX file system through
// FUSE, over go-fuse v2's fs API.
//
// It is an adapter and nothing more: each kernel request becomes a call
// of client.Inodes (namespace) or client.Handle (bytes), and every error
// goes through one errno translation (errnoOf). Caching is the kernel's:
// entries and attributes for the configured timeouts, file pages until an
// open finds that the file's version changed since they were cached
// (close-to-open consistency).
//
// The kernel checks permissions itself (default_permissions) and each
// request's uid and gid travel to the master, which checks them again;
// with Options.RootSquash, root is mapped to an unprivileged identity.
//
// Locks (fcntl record locks, OFD locks and flock) are forwarded to the
// master, which enforces them across every mount of the cluster and holds
// them under the Client's lease, which the Client renews: should the
// mount die, its locks are released when the lease ends.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairnfs/cairn/client"
)

// Defaults for Options fields left zero.
const (
	DefaultEntryTimeout = time.Second
	DefaultAttrTimeout  = time.Second
	DefaultOpTimeout    = 60 * time.Second
	// DefaultSquashID is the uid and gid root is mapped to with
	// RootSquash (nobody, nogroup).
	DefaultSquashID = 65534
)

// Options configures a mount.
type Options struct {
	// EntryTimeout and AttrTimeout are how long the kernel may cache a
	// name's resolution and a file's attributes (defaults
	// DefaultEntryTimeout, DefaultAttrTimeout; negative: not at all).
	// Longer is faster, and staler for changes made on other mounts.
	EntryTimeout, AttrTimeout time.Duration
	// NegativeTimeout is how long the kernel may remember that a name
	// does not exist (default: not at all).
	NegativeTimeout time.Duration
	// OpTimeout bounds each namespace operation, its retries included;
	// when it runs out the operation fails with EIO. Reads and writes are
	// bounded by the Client's IOTimeout instead, which should be set.
	// Default DefaultOpTimeout.
	OpTimeout time.Duration
	// ReadOnly mounts read-only.
	ReadOnly bool
	// AllowOther lets users other than the one mounting use the mount
	// (needs user_allow_other in /etc/fuse.conf unless root mounts).
	AllowOther bool
	// RootSquash makes requests of uid 0 act as SquashUID and SquashGID.
	RootSquash bool
	// SquashUID and SquashGID are root's identity under RootSquash
	// (default DefaultSquashID).
	SquashUID, SquashGID uint32
	// FSName is the mount's source as /proc/mounts shows it (default
	// "cairn").
	FSName string
	// MountOptions are further -o options for the kernel.
	MountOptions []string
	// Debug logs every FUSE request.
	Debug bool
	// Logger receives the mount's logs; nil discards them.
	Logger *slog.Logger
}

// setDefaults fills in the fields left zero.
func (o *Options) setDefaults() {
	if o.EntryTimeout == 0 {
		o.EntryTimeout = DefaultEntryTimeout
	}
	if o.AttrTimeout == 0 {
		o.AttrTimeout = DefaultAttrTimeout
	}
	o.EntryTimeout = max(o.EntryTimeout, 0)
	o.AttrTimeout = max(o.AttrTimeout, 0)
	o.NegativeTimeout = max(o.NegativeTimeout, 0)
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.SquashUID == 0 {
		o.SquashUID = DefaultSquashID
	}
	if o.SquashGID == 0 {
		o.SquashGID = DefaultSquashID
	}
	if o.FSName == "" {
		o.FSName = "cairn"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is a mounted Cairn file system. Unmount it with Unmount; Wait
// returns when it is unmounted, whoever did it.
type Server struct {
	dir    string
	fsys   *filesystem
	srv    *fuse.Server
	wg     sync.WaitGroup // the ctx watcher
	served chan struct{}  // closed when the FUSE serve loop ends

	unmountMu sync.Mutex
}

// Mount mounts cl's namespace on dir and serves it until Unmount, until
// something else unmounts it (fusermount -u), or until ctx ends, which
// unmounts it. The caller keeps ownership of cl and closes it after Wait.
//
// Wiring it into a daemon takes a few lines:
//
//	srv, err := fusefs.Mount(ctx, cl, dir, fusefs.Options{})
//	if err != nil { return err }
//	defer srv.Unmount()
//	srv.Wait()
func Mount(ctx context.Context, cl *client.Client, dir string, opts Options) (*Server, error) {
	opts.setDefaults()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount point %s: %w", dir, err)
	}
	fsys := &filesystem{in: cl.Inodes(), opts: opts, log: opts.Logger}
	fsys.locks.held = map[lockKey]struct{}{}
	fsys.open.nodes = map[uint64]*node{}
	root := &node{fsys: fsys}
	entry, attr, neg := opts.EntryTimeout, opts.AttrTimeout, opts.NegativeTimeout
	fopts := &fs.Options{
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		// The kernel's node IDs are Cairn's inode numbers (never reused),
		// so a raw request names the inode it is about (see rawFS).
		ExternalNodeID: true,
		RootStableAttr: &fs.StableAttr{Ino: client.RootInode},
		// Zero permission bits are real here: do not invent any.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			AllowOther:  opts.AllowOther,
			FsName:      opts.FSName,
			Name:        "cairn",
			Debug:       opts.Debug,
			EnableLocks: true,
			MaxWrite:    1 << 20,
			// The kernel checks permissions against the attributes, as a
			// local file system does.
			Options:      append([]string{"default_permissions"}, opts.MountOptions...),
			Logger:       log.New(slogWriter{opts.Logger}, "", 0),
			MaxReadAhead: maxReadAhead,
			// One read at a time, in file order: the client's Reader
			// recognises sequential reading and fetches ahead itself,
			// which the kernel's concurrent out-of-order read-ahead
			// requests would defeat.
			SyncRead: true,
			// Reads answer from the client's memory, never from a file
			// descriptor, so there is nothing to splice. Left on, go-fuse
			// tries a pipe for every reply first; for a 1 MiB read the
			// pipe cannot grow to hold the reply, so each one cost a
			// failed fcntl and a line in the log before the plain writev.
			DisableSplice: true,
		},
	}
	if opts.ReadOnly {
		fopts.MountOptions.Options = append(fopts.MountOptions.Options, "ro")
	}
	raw := &rawFS{RawFileSystem: fs.NewNodeFS(root, fopts), fsys: fsys}
	srv, err := fuse.NewServer(raw, dir, &fopts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	s := &Server{dir: dir, fsys: fsys, srv: srv, served: make(chan struct{})}
	fsys.done, fsys.bg = s.served, &s.wg
	go func() {
		defer close(s.served)
		srv.Serve()
	}()
	if err := srv.WaitMount(); err != nil {
		s.forceUnmount()
		<-s.served
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	s.raiseReadAhead()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			if err := s.Unmount(); err != nil {
				opts.Logger.Warn("fusefs: unmount", "dir", dir, "err", err)
			}
		case <-s.served:
		}
	}()
	return s, nil
}

// Dir returns the mount point.
func (s *Server) Dir() string { return s.dir }

// Unmount unmounts the file system and waits until it is no longer
// served. A mount still in use (open files, a working directory) is
// detached lazily and its connection aborted, so Unmount always
// succeeds in the end; processes still using it then get ENOTCONN.
func (s *Server) Unmount() error {
	s.unmountMu.Lock()
	defer s.unmountMu.Unlock()
	select {
	case <-s.served:
		return nil
	default:
	}
	if err := s.srv.Unmount(); err != nil {
		s.fsys.log.Warn("fusefs: unmount busy: detaching", "dir", s.dir, "err", err)
		if ferr := s.forceUnmount(); ferr != nil {
			return fmt.Errorf("fusefs: unmount %s: %w (then %v)", s.dir, err, ferr)
		}
	}
	<-s.served
	return nil
}

// maxReadAhead is the kernel's read-ahead for the mount, and the largest
// READ it sends (the kernel caps requests at 1 MiB anyway).
const maxReadAhead = 1 << 20

// raiseReadAhead sets the kernel's read-ahead for the mount to
// maxReadAhead. The kernel starts a FUSE mount's read-ahead at its default
// for any device, 128 KiB, and lets the file system only lower it, so a
// sequential reader got 128 KiB per FUSE round trip, each costing more
// than serving the bytes (the client's Reader has them fetched ahead).
// The setting is the mount's backing device's read_ahead_kb in sysfs,
// which only root may write; without it reads work as before, slower.
// (Larger settings gained nothing: with SyncRead the kernel sends one
// READ at a time.)
func (s *Server) raiseReadAhead() {
	var st syscall.Stat_t
	if err := syscall.Stat(s.dir, &st); err != nil {
		s.fsys.log.Debug("fusefs: read-ahead left at the kernel's default", "err", err)
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(maxReadAhead>>10)), 0); err != nil {
		s.fsys.log.Debug("fusefs: read-ahead left at the kernel's default", "err", err)
	}
}

// fusectlDir is where the kernel's fusectl file system lists FUSE
// connections.
const fusectlDir = "/sys/fs/fuse/connections"

// forceUnmount detaches the mount lazily and aborts its FUSE connection,
// so that the serve loop ends even while processes still hold files open.
func (s *Server) forceUnmount() error {
	var st syscall.Stat_t
	statErr := syscall.Stat(s.dir, &st)
	var errs []error
	if out, err := exec.Command("fusermount3", "-u", "-z", s.dir).CombinedOutput(); err != nil {
		if err2 := syscall.Unmount(s.dir, syscall.MNT_DETACH); err2 != nil {
			errs = append(errs, fmt.Errorf("fusermount3 -uz: %v: %s; umount2: %w", err, out, err2))
		}
	}
	if statErr == nil {
		// A FUSE mount's device minor number names its connection in
		// the fusectl file system; mount that if nobody did.
		abort := fmt.Sprintf("%s/%d/abort", fusectlDir, unix.Minor(st.Dev))
		if _, err := os.Stat(abort); errors.Is(err, os.ErrNotExist) {
			if err := syscall.Mount("fusectl", fusectlDir, "fusectl", 0, ""); err != nil {
				s.fsys.log.Warn("fusefs: mount fusectl", "err", err)
			}
		}
		if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
			errs = append(errs, fmt.Errorf("abort the FUSE connection: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Wait returns once the file system is unmounted and the mount's
// goroutines have stopped.
func (s *Server) Wait() {
	<-s.served
	s.wg.Wait()
}

// slogWriter lets go-fuse's log.Logger write into a slog.Logger.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Info("fuse: " + string(p))
	return len(p), nil
}

// rawFS is go-fuse's node bridge plus the two lock duties its node API
// does not expose: POSIX locks of an owner go when the owner closes any
// descriptor of the file (FLUSH carries the owner), and flock locks go
// with the last descriptor of their open file (RELEASE says so).
type rawFS struct {
	fuse.RawFileSystem
	fsys *filesystem
}

// Flush implements fuse.RawFileSystem.
func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	r.fsys.dropLocks(in.NodeId, in.LockOwner, client.LockPOSIX)
	r.fsys.forgetOwner(in.NodeId, in.LockOwner)
	return r.RawFileSystem.Flush(cancel, in)
}

// Release implements fuse.RawFileSystem.
func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if in.ReleaseFlags&fuse.FUSE_RELEASE_FLOCK_UNLOCK != 0 {
		r.fsys.dropLocks(in.NodeId, in.LockOwner, client.LockFlock)
	}
	r.RawFileSystem.Release(cancel, in)
}
