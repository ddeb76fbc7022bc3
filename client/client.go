package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// rootInode is the namespace root's inode number (the master's).
const rootInode = 1

// maxSymlinks bounds the symlinks one path resolution follows (ELOOP).
const maxSymlinks = 40

// ClientConfig configures a Client. (The data path's own settings are in
// Config, embedded as Data.)
type ClientConfig struct {
	// Masters are the masters' gRPC addresses; at least one. Any master
	// will do: calls follow NotLeader answers to the leader.
	Masters []string
	// UID and GID are the identity sent with every mutation; the master
	// checks permissions against them (0 is root).
	UID, GID uint32
	// RetryTimeout bounds the retries of one master call while no leader
	// is reachable (DefaultRetryTimeout); CallTimeout one attempt
	// (DefaultCallTimeout).
	RetryTimeout time.Duration
	CallTimeout  time.Duration
	// MasterDialOptions are added to the master connections' options.
	MasterDialOptions []grpc.DialOption
	// Data configures the data path (ClientID, buffers, timeouts); zero
	// fields take its defaults.
	Data Config
	// IOTimeout, if positive, bounds each File call (Read, Write, Sync,
	// Close, …), which take no context. Zero means no bound.
	IOTimeout time.Duration
	// NoSymlinks makes path resolution refuse every symlink it meets (as
	// a component, or as the last name where it would be followed) with
	// ENOENT. The S3 gateway sets it: an S3 key names a file inside its
	// bucket, and a symlink made through a mount could otherwise make a
	// key resolve outside it. Lstat and Readlink still see symlinks.
	NoSymlinks bool
	// Compaction makes the Client compact fragmented chunks in the
	// background for as long as it is open (compact.go): long-lived
	// clients (mounts, gateways) set it, one-shot commands do not.
	// CompactionPoll is how often it asks the master for work while there
	// is none (DefaultCompactionPoll).
	Compaction     bool
	CompactionPoll time.Duration
	// ReleaseDelay is how long closed handles may wait to be released at
	// the master together (see release.go); DefaultReleaseDelay if zero,
	// none if negative.
	ReleaseDelay time.Duration
}

// Client is a Cairn file system: path-based namespace calls on the master
// and Files whose bytes move through a DataPath. It is safe for concurrent
// use. Create one with Dial and release it with Close after closing its
// Files.
//
// Errors of path calls are *fs.PathError values whose Err is the
// syscall.Errno the master reported (so errors.Is(err, fs.ErrNotExist)
// works), or, for failures that are not the file system's answer
// (unreachable master, cancelled context), the underlying error.
type Client struct {
	cfg  ClientConfig
	conn *MasterConn
	data *DataPath
	sess *session
	comp *compactor
	rel  *releaser
	stat *statBatcher
}

// Dial connects to the masters in cfg and checks that the namespace root
// can be read within ctx.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	conn, err := NewMasterConn(MasterConnConfig{
		Masters: cfg.Masters, RetryTimeout: cfg.RetryTimeout, CallTimeout: cfg.CallTimeout, DialOptions: cfg.MasterDialOptions,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Data.ClientID == "" {
		id := make([]byte, 8)
		rand.Read(id)
		cfg.Data.ClientID = fmt.Sprintf("client-%x", id)
	}
	data, err := New(conn, cfg.Data)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &Client{cfg: cfg, conn: conn, data: data, stat: newStatBatcher(conn)}
	delay := cfg.ReleaseDelay
	if delay == 0 {
		delay = DefaultReleaseDelay
	}
	c.rel = newReleaser(conn, c.header, max(delay, 0), data.log)
	if _, err := c.getAttr(ctx, rootInode); err != nil {
		c.Close()
		return nil, fmt.Errorf("client: reach masters %v: %w", cfg.Masters, err)
	}
	c.startSession()
	if cfg.Compaction {
		c.startCompactor()
	}
	return c, nil
}

// Close releases the data path and the master connections. Files must be
// closed first.
func (c *Client) Close() error {
	c.stopCompactor()
	// Handles go before the lease that holds them.
	c.rel.close()
	c.stopSession()
	c.stat.close()
	return errors.Join(c.data.Close(), c.conn.Close())
}

// Conn returns the Client's master connection, for calls this API does
// not wrap.
func (c *Client) Conn() *MasterConn { return c.conn }

// header returns a RequestHeader with a fresh request ID; a retry of the
// same request reuses it.
func (c *Client) header() *masterpb.RequestHeader {
	return &masterpb.RequestHeader{RequestId: newRequestID(), ClientId: c.cfg.Data.ClientID, Uid: c.cfg.UID, Gid: c.cfg.GID}
}

// pathErr converts a master error into a *fs.PathError for op on name.
func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &fs.PathError{Op: op, Path: name, Err: errno}
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
			// Not the file system's answer: keep the message.
		default:
			return &fs.PathError{Op: op, Path: name, Err: masterpb.ErrnoOf(err)}
		}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// components splits a cleaned path into its names ("/" has none). A
// relative path is taken from the root.
func components(p string) []string {
	p = path.Clean("/" + p)
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

func (c *Client) getAttr(ctx context.Context, inode uint64) (*masterpb.Attr, error) {
	return c.stat.stat(ctx, &masterpb.StatQuery{Inode: inode})
}

func (c *Client) lookup(ctx context.Context, parent uint64, name string) (*masterpb.Attr, error) {
	if name == "" {
		// An empty name would read as a getattr in a batch.
		return nil, masterpb.ErrnoError(syscall.EINVAL, "client: lookup: empty name")
	}
	return c.stat.stat(ctx, &masterpb.StatQuery{Inode: parent, Name: name})
}

// resolve returns the attributes of the file at p, following symlinks in
// every component but the last, and in the last too if follow is set.
func (c *Client) resolve(ctx context.Context, p string, follow bool) (*masterpb.Attr, error) {
	hops := 0
	comps := components(p)
	attr, err := c.getAttr(ctx, rootInode)
	if err != nil {
		return nil, err
	}
	var dir []string // names of the directories walked so far
	for len(comps) > 0 {
		name := comps[0]
		comps = comps[1:]
		if attr.Type != masterpb.FileType_FILE_TYPE_DIRECTORY {
			return nil, syscall.ENOTDIR
		}
		parent := attr
		if attr, err = c.lookup(ctx, parent.Inode, name); err != nil {
			return nil, err
		}
		if attr.Type != masterpb.FileType_FILE_TYPE_SYMLINK || (len(comps) == 0 && !follow) {
			dir = append(dir, name)
			continue
		}
		if c.cfg.NoSymlinks {
			return nil, syscall.ENOENT
		}
		if hops++; hops > maxSymlinks {
			return nil, syscall.ELOOP
		}
		resp, err := call(ctx, c.conn, &masterpb.ReadlinkRequest{Inode: attr.Inode}, masterpb.MasterClient.Readlink)
		if err != nil {
			return nil, err
		}
		target := resp.Target
		if !strings.HasPrefix(target, "/") {
			target = "/" + strings.Join(dir, "/") + "/" + target
		}
		// Restart from the root with the target and what was left.
		comps = append(components(target), comps...)
		dir = nil
		if attr, err = c.getAttr(ctx, rootInode); err != nil {
			return nil, err
		}
	}
	return attr, nil
}

// parent resolves the directory holding p and returns it with p's last
// name.
func (c *Client) parent(ctx context.Context, p string) (*masterpb.Attr, string, error) {
	comps := components(p)
	if len(comps) == 0 {
		return nil, "", syscall.EINVAL // the root has no parent
	}
	dir, err := c.resolve(ctx, "/"+strings.Join(comps[:len(comps)-1], "/"), true)
	if err != nil {
		return nil, "", err
	}
	if dir.Type != masterpb.FileType_FILE_TYPE_DIRECTORY {
		return nil, "", syscall.ENOTDIR
	}
	return dir, comps[len(comps)-1], nil
}

// Stat returns the file at p, following symlinks.
func (c *Client) Stat(ctx context.Context, p string) (*FileInfo, error) {
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	return newFileInfo(path.Base(path.Clean("/"+p)), a), nil
}

// Lstat returns the file at p; a final symlink is not followed.
func (c *Client) Lstat(ctx context.Context, p string) (*FileInfo, error) {
	a, err := c.resolve(ctx, p, false)
	if err != nil {
		return nil, pathErr("lstat", p, err)
	}
	return newFileInfo(path.Base(path.Clean("/"+p)), a), nil
}

// Mkdir creates the directory p with permission bits perm.
func (c *Client) Mkdir(ctx context.Context, p string, perm fs.FileMode) error {
	dir, name, err := c.parent(ctx, p)
	if err != nil {
		return pathErr("mkdir", p, err)
	}
	_, err = call(ctx, c.conn, &masterpb.MkdirRequest{Header: c.header(), Parent: dir.Inode, Name: name, Mode: unixPerm(perm)}, masterpb.MasterClient.Mkdir)
	return pathErr("mkdir", p, err)
}

// MkdirAll creates p and any missing parents, as os.MkdirAll does.
func (c *Client) MkdirAll(ctx context.Context, p string, perm fs.FileMode) error {
	comps := components(p)
	for i := range comps {
		sub := "/" + strings.Join(comps[:i+1], "/")
		err := c.Mkdir(ctx, sub, perm)
		if err == nil {
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, serr := c.Stat(ctx, sub)
		if serr != nil {
			return serr
		}
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: sub, Err: syscall.ENOTDIR}
		}
	}
	return nil
}

// Remove removes the file or empty directory p (a final symlink itself).
func (c *Client) Remove(ctx context.Context, p string) error {
	dir, name, err := c.parent(ctx, p)
	if err != nil {
		return pathErr("remove", p, err)
	}
	a, err := c.lookup(ctx, dir.Inode, name)
	if err != nil {
		return pathErr("remove", p, err)
	}
	if a.Type == masterpb.FileType_FILE_TYPE_DIRECTORY {
		_, err = call(ctx, c.conn, &masterpb.RmdirRequest{Header: c.header(), Parent: dir.Inode, Name: name}, masterpb.MasterClient.Rmdir)
	} else {
		_, err = call(ctx, c.conn, &masterpb.UnlinkRequest{Header: c.header(), Parent: dir.Inode, Name: name}, masterpb.MasterClient.Unlink)
	}
	return pathErr("remove", p, err)
}

// RemoveAll removes p and everything under it. A missing p is not an
// error, as with os.RemoveAll.
func (c *Client) RemoveAll(ctx context.Context, p string) error {
	fi, err := c.Lstat(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		entries, err := c.ReadDir(ctx, p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range entries {
			if err := c.RemoveAll(ctx, path.Join("/", p, e.Name())); err != nil {
				return err
			}
		}
	}
	err = c.Remove(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Rename moves oldpath to newpath, replacing newpath if it exists (as
// rename(2) does).
func (c *Client) Rename(ctx context.Context, oldpath, newpath string) error {
	od, on, err := c.parent(ctx, oldpath)
	if err != nil {
		return pathErr("rename", oldpath, err)
	}
	nd, nn, err := c.parent(ctx, newpath)
	if err != nil {
		return pathErr("rename", newpath, err)
	}
	_, err = call(ctx, c.conn, &masterpb.RenameRequest{Header: c.header(), OldParent: od.Inode, OldName: on, NewParent: nd.Inode, NewName: nn}, masterpb.MasterClient.Rename)
	return pathErr("rename", oldpath+" -> "+newpath, err)
}

// Symlink creates newname as a symbolic link to oldname.
func (c *Client) Symlink(ctx context.Context, oldname, newname string) error {
	dir, name, err := c.parent(ctx, newname)
	if err != nil {
		return pathErr("symlink", newname, err)
	}
	_, err = call(ctx, c.conn, &masterpb.SymlinkRequest{Header: c.header(), Parent: dir.Inode, Name: name, Target: oldname}, masterpb.MasterClient.Symlink)
	return pathErr("symlink", newname, err)
}

// Readlink returns the target of the symbolic link p.
func (c *Client) Readlink(ctx context.Context, p string) (string, error) {
	a, err := c.resolve(ctx, p, false)
	if err != nil {
		return "", pathErr("readlink", p, err)
	}
	if a.Type != masterpb.FileType_FILE_TYPE_SYMLINK {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.EINVAL}
	}
	resp, err := call(ctx, c.conn, &masterpb.ReadlinkRequest{Inode: a.Inode}, masterpb.MasterClient.Readlink)
	if err != nil {
		return "", pathErr("readlink", p, err)
	}
	return resp.Target, nil
}

// ReadDir returns the entries of directory p sorted by name, each with
// its attributes (Info never fails).
func (c *Client) ReadDir(ctx context.Context, p string) ([]fs.DirEntry, error) {
	a, err := c.resolve(ctx, p, true)
	if err != nil {
		return nil, pathErr("readdir", p, err)
	}
	if a.Type != masterpb.FileType_FILE_TYPE_DIRECTORY {
		return nil, &fs.PathError{Op: "readdir", Path: p, Err: syscall.ENOTDIR}
	}
	var out []fs.DirEntry
	after := ""
	for {
		resp, err := call(ctx, c.conn, &masterpb.ReadDirRequest{Inode: a.Inode, StartAfter: after, WithAttrs: true}, masterpb.MasterClient.ReadDir)
		if err != nil {
			return out, pathErr("readdir", p, err)
		}
		for _, e := range resp.Entries {
			attr := e.Attr
			if attr == nil {
				attr = &masterpb.Attr{Inode: e.Inode, Type: e.Type}
			}
			out = append(out, newFileInfo(e.Name, attr))
			after = e.Name
		}
		if !resp.More || len(resp.Entries) == 0 {
			return out, nil
		}
	}
}

// StatFS returns the cluster's capacity and use.
func (c *Client) StatFS(ctx context.Context) (*masterpb.StatFSResponse, error) {
	resp, err := call(ctx, c.conn, &masterpb.StatFSRequest{}, masterpb.MasterClient.StatFS)
	if err != nil {
		return nil, fmt.Errorf("client: statfs: %w", err)
	}
	return resp, nil
}

// Status returns the leader's view of the cluster: masters, chunkservers
// and slice counts.
func (c *Client) Status(ctx context.Context) (*masterpb.StatusResponse, error) {
	// Only the leader knows the chunkservers: ask one that does.
	var resp *masterpb.StatusResponse
	err := c.conn.Do(ctx, func(ctx context.Context, mc masterpb.MasterClient) error {
		var err error
		resp, err = mc.Status(ctx, &masterpb.StatusRequest{})
		if err != nil {
			return err
		}
		for _, m := range resp.Masters {
			if m.State == "leader" && m.Address != "" && m.AppliedIndex == 0 {
				// A follower's answer (a master fills in its applied
				// index only for itself): ask the leader instead.
				return masterpb.NotLeaderError(m.Address, "status: ask the leader")
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: status: %w", err)
	}
	c.remoteMasterStates(ctx, resp.Masters)
	return resp, nil
}

// remoteMasterStates fills in the state, term and applied index of the
// masters that did not answer Status themselves, by asking each its own (in
// parallel, one attempt each): a master knows those exactly only for
// itself. The addresses asked are those Status lists and those the client
// was configured with, because a master that has never led has not
// recorded its gRPC address and is listed at its Raft address. A master
// that answers at none of them is shown "unreachable".
func (c *Client) remoteMasterStates(ctx context.Context, masters []*masterpb.MasterInfo) {
	pending := map[string]*masterpb.MasterInfo{}
	addrs := append([]string(nil), c.conn.cfg.Masters...)
	for _, m := range masters {
		if m.AppliedIndex != 0 {
			addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == m.Address })
			continue // the answering master, exact already
		}
		pending[m.Id] = m
		if m.Address != "" && !slices.Contains(addrs, m.Address) {
			addrs = append(addrs, m.Address)
		}
	}
	if len(pending) == 0 {
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.conn.At(ctx, addr, func(ctx context.Context, mc masterpb.MasterClient) error {
				r, err := mc.Status(ctx, &masterpb.StatusRequest{})
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for _, own := range r.Masters {
					if m := pending[own.Id]; m != nil && own.AppliedIndex != 0 {
						m.Address, m.State, m.Term, m.AppliedIndex = addr, own.State, own.Term, own.AppliedIndex
						delete(pending, own.Id)
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for _, m := range pending {
		m.State = "unreachable"
	}
}
