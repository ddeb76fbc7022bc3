package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
)

// mastersFile, under the data directory, lists the masters of the cluster
// dfs up runs, one address per line.
const mastersFile = "masters.addrs"

const usage = `usage: dfs COMMAND [flags] [args]

commands:
  up [--dir DIR] [--masters 1|3] [--chunkservers N] [--s3 ADDR|off] [--mount DIR|off]
                           run a local cluster, an S3 gateway and (where FUSE
                           works) a mount at DIR/mnt until Ctrl-C
  put LOCAL|- REMOTE       copy a local file (or stdin) into the cluster
  get REMOTE LOCAL|-       copy a file out of the cluster (or to stdout)
  cat REMOTE...            print files
  ls [-l] [REMOTE...]      list directories
  mkdir [-p] REMOTE...     make directories
  rm [-r] REMOTE...        remove files (and, with -r, directories)
  mv SRC DST               rename
  ln [-s] TARGET LINK      make a hard (or, with -s, symbolic) link
  du REMOTE...             bytes of the files under each operand
  stat REMOTE...           show attributes
  status                   show masters, chunkservers and repair progress
  df                       show space per chunkserver and in total
  fsck [REMOTE]            check files' redundancy (exit 2 if any is lost)
  compact REMOTE...        rewrite each file's fragmented chunks as one slice now
  admin drain|undrain ID   move every shard off a chunkserver, or stop doing so
  admin remove ID          forget a retired chunkserver (stopped, holding nothing needed)

common flags:
  --master ADDRS           comma-separated master addresses
                           (default $CAIRN_MASTERS, else DIR/masters.addrs)
  --dir DIR                local cluster directory (default $CAIRN_DIR, else ~/.cairn)
`

// env is one invocation's I/O.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	cmd    string
}

// fail prints "dfs: CMD OPERAND: ERR" (just the errno's words when err is
// a PathError about operand) and returns exit status 1.
func (e *env) fail(operand string, err error) int {
	var pe *fs.PathError
	if errors.As(err, &pe) && (pe.Path == operand || path.Clean("/"+pe.Path) == path.Clean("/"+operand)) {
		err = pe.Err
	}
	if operand != "" {
		fmt.Fprintf(e.stderr, "dfs: %s %s: %v\n", e.cmd, operand, err)
	} else {
		fmt.Fprintf(e.stderr, "dfs: %s: %v\n", e.cmd, err)
	}
	return 1
}

// run executes one dfs command and returns its exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 1
		}
		return 0
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, cmd: args[0]}
	fl := flag.NewFlagSet("dfs "+e.cmd, flag.ContinueOnError)
	fl.SetOutput(stderr)
	masters := fl.String("master", "", "comma-separated master addresses")
	dir := fl.String("dir", "", "local cluster directory")
	var (
		long, parents, recursive, symbolic bool
		nMasters, nChunk                   int
		fronts                             upFrontends
	)
	switch e.cmd {
	case "ls":
		fl.BoolVar(&long, "l", false, "long listing")
	case "mkdir":
		fl.BoolVar(&parents, "p", false, "make parents as needed; no error if the directory exists")
	case "rm":
		fl.BoolVar(&recursive, "r", false, "remove directories and their contents")
	case "ln":
		fl.BoolVar(&symbolic, "s", false, "make a symbolic link")
	case "up":
		fl.IntVar(&nMasters, "masters", 1, "number of masters (1 or 3)")
		fl.IntVar(&nChunk, "chunkservers", 6, "number of chunkservers")
		fl.StringVar(&fronts.s3Addr, "s3", "127.0.0.1:9000", "address of the S3 gateway, or off")
		fl.StringVar(&fronts.s3Access, "s3-access-key", "", "S3 access key (default: generated, kept in DIR)")
		fl.StringVar(&fronts.s3Secr, "s3-secret-key", "", "S3 secret key")
		fl.StringVar(&fronts.mount, "mount", "", "FUSE mount point (default DIR/mnt where FUSE works), or off")
	case "put", "get", "cat", "mv", "stat", "status", "du", "df", "fsck", "admin", "compact":
	default:
		fmt.Fprintf(stderr, "dfs: unknown command %q\n\n%s", e.cmd, usage)
		return 1
	}
	if err := fl.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	operands := fl.Args()
	d, err := dataDir(*dir)
	if err != nil {
		return e.fail("", err)
	}
	if e.cmd == "up" {
		return e.up(d, nMasters, nChunk, fronts)
	}

	want := map[string][2]int{ // min, max operands (-1: any)
		"put": {2, 2}, "get": {2, 2}, "cat": {1, -1}, "ls": {0, -1}, "mkdir": {1, -1},
		"rm": {1, -1}, "mv": {2, 2}, "stat": {1, -1}, "status": {0, 0},
		"ln": {2, 2}, "du": {1, -1}, "df": {0, 0}, "fsck": {0, 1}, "admin": {2, 2}, "compact": {1, -1},
	}[e.cmd]
	if len(operands) < want[0] || (want[1] >= 0 && len(operands) > want[1]) {
		fmt.Fprintf(stderr, "dfs: %s: wrong number of arguments\n\n%s", e.cmd, usage)
		return 1
	}
	addrs, err := masterAddrs(*masters, d)
	if err != nil {
		return e.fail("", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cl, err := client.Dial(dctx, client.ClientConfig{Masters: addrs, RetryTimeout: 10 * time.Second})
	cancel()
	if err != nil {
		return e.fail("", err)
	}
	defer cl.Close()

	switch e.cmd {
	case "put":
		return e.put(cl, operands[0], operands[1])
	case "get":
		return e.get(cl, operands[0], operands[1])
	case "cat":
		status := 0
		for _, p := range operands {
			if err := e.copyOut(cl, p, e.stdout); err != nil {
				status = e.fail(p, err)
			}
		}
		return status
	case "ls":
		if len(operands) == 0 {
			operands = []string{"/"}
		}
		return e.ls(cl, operands, long)
	case "mkdir":
		status := 0
		for _, p := range operands {
			mk := cl.Mkdir
			if parents {
				mk = cl.MkdirAll
			}
			if err := mk(ctx, p, 0o755); err != nil {
				status = e.fail(p, err)
			}
		}
		return status
	case "rm":
		status := 0
		for _, p := range operands {
			var err error
			if recursive {
				// Like rm -r, a missing operand is an error.
				if _, err = cl.Lstat(ctx, p); err == nil {
					err = cl.RemoveAll(ctx, p)
				}
			} else {
				if fi, serr := cl.Lstat(ctx, p); serr == nil && fi.IsDir() {
					err = errors.New("is a directory (use -r)")
				} else {
					err = cl.Remove(ctx, p)
				}
			}
			if err != nil {
				status = e.fail(p, err)
			}
		}
		return status
	case "mv":
		dst := operands[1]
		if fi, err := cl.Stat(ctx, dst); err == nil && fi.IsDir() {
			dst = path.Join(dst, path.Base(operands[0]))
		}
		if err := cl.Rename(ctx, operands[0], dst); err != nil {
			return e.fail(operands[0], err)
		}
		return 0
	case "stat":
		status := 0
		for _, p := range operands {
			fi, err := cl.Lstat(ctx, p)
			if err != nil {
				status = e.fail(p, err)
				continue
			}
			a := fi.Attr()
			fmt.Fprintf(e.stdout, "  File: %s\n  Size: %d\tType: %s\tInode: %d\tLinks: %d\n  Mode: %v\tUid: %d\tGid: %d\tVersion: %d\nModify: %s\n",
				p, fi.Size(), typeName(fi.Mode()), a.Inode, a.Nlink, fi.Mode(), a.Uid, a.Gid, a.Version, fi.ModTime().Format(time.RFC3339Nano))
		}
		return status
	case "status":
		return e.status(cl)
	case "ln":
		return e.ln(cl, operands[0], operands[1], symbolic)
	case "du":
		return e.du(cl, operands)
	case "df":
		return e.df(cl)
	case "fsck":
		return e.fsck(cl, operands)
	case "compact":
		status := 0
		for _, p := range operands {
			n, err := cl.Compact(ctx, p)
			if err != nil {
				status = e.fail(p, err)
				continue
			}
			fmt.Fprintf(e.stdout, "%s: %d chunks compacted\n", p, n)
		}
		return status
	case "admin":
		return e.admin(addrs, operands[0], operands[1])
	}
	return 1
}

// dataDir is the local cluster directory: flag, $CAIRN_DIR, ~/.cairn.
func dataDir(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if d := os.Getenv("CAIRN_DIR"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --dir and no home directory: %w", err)
	}
	return filepath.Join(home, ".cairn"), nil
}

// masterAddrs is the master list: flag, $CAIRN_MASTERS, DIR/masters.
func masterAddrs(flagValue, dir string) ([]string, error) {
	s := flagValue
	if s == "" {
		s = os.Getenv("CAIRN_MASTERS")
	}
	if s == "" {
		b, err := os.ReadFile(filepath.Join(dir, mastersFile))
		if err != nil {
			return nil, fmt.Errorf("no --master given and no local cluster (%v); start one with `dfs up`", err)
		}
		s = string(b)
	}
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, errors.New("empty master list")
	}
	return out, nil
}

// up runs a local cluster until ctx ends.
func (e *env) up(dir string, masters, chunkservers int, fronts upFrontends) int {
	// Errors only, and none once stopping: a shutdown's closed connections
	// are not news.
	stopping := new(atomic.Bool)
	log := slog.New(quietHandler{slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}), stopping})
	sctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	c, err := cluster.Start(sctx, cluster.Config{Dir: dir, Masters: masters, Chunkservers: chunkservers, Logger: log})
	if err != nil {
		return e.fail("", err)
	}
	file := filepath.Join(dir, mastersFile)
	defer func() {
		os.Remove(file)
		if err := c.Close(); err != nil {
			fmt.Fprintf(e.stderr, "dfs: up: stopping: %v\n", err)
		}
	}()
	if err := c.WaitReady(sctx); err != nil {
		return e.fail("", err)
	}
	addrs := strings.Join(c.MasterAddrs(), ",")
	if err := os.WriteFile(file, []byte(strings.Join(c.MasterAddrs(), "\n")+"\n"), 0o644); err != nil {
		return e.fail("", err)
	}
	fmt.Fprintf(e.stdout, "Cairn is up: %d master(s), %d chunkserver(s), data in %s\n", masters, chunkservers, dir)
	fmt.Fprintf(e.stdout, "masters: %s\n", addrs)
	stopFronts, err := e.startFrontends(dir, c.MasterAddrs(), fronts, log)
	if err != nil {
		return e.fail("", err)
	}
	defer stopFronts()
	fmt.Fprintf(e.stdout, `
Try, in another terminal (the master list is in %s):
  dfs status
  echo hello | dfs put - /hello.txt
  dfs ls -l /
  dfs cat /hello.txt
Press Ctrl-C to stop.
`, file)
	<-e.ctx.Done()
	stopping.Store(true)
	fmt.Fprintln(e.stdout, "stopping…")
	return 0
}

// quietHandler drops every record once stopping is set.
type quietHandler struct {
	slog.Handler
	stopping *atomic.Bool
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.stopping.Load() && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs), h.stopping}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.stopping}
}

// remoteTarget returns where a copy to remote lands: inside it when it is
// a directory.
func remoteTarget(ctx context.Context, cl *client.Client, remote, base string) string {
	if fi, err := cl.Stat(ctx, remote); err == nil && fi.IsDir() {
		return path.Join(remote, base)
	}
	return remote
}

func (e *env) put(cl *client.Client, local, remote string) int {
	var src io.Reader = e.stdin
	total := int64(-1)
	if local != "-" {
		f, err := os.Open(local)
		if err != nil {
			return e.fail(local, err)
		}
		defer f.Close()
		src = f
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			total = fi.Size()
		}
		remote = remoteTarget(e.ctx, cl, remote, filepath.Base(local))
	}
	f, err := cl.Create(e.ctx, remote)
	if err != nil {
		return e.fail(remote, err)
	}
	bar := newProgress(e.stderr, "put "+remote, total)
	_, err = io.Copy(progressWriter{f, bar}, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return e.fail(remote, err)
	}
	bar.finish()
	return 0
}

func (e *env) get(cl *client.Client, remote, local string) int {
	if local == "-" {
		if err := e.copyOut(cl, remote, e.stdout); err != nil {
			return e.fail(remote, err)
		}
		return 0
	}
	if fi, err := os.Stat(local); err == nil && fi.IsDir() {
		local = filepath.Join(local, path.Base(remote))
	}
	out, err := os.Create(local)
	if err != nil {
		return e.fail(local, err)
	}
	var w io.Writer = out
	var bar *progress
	if fi, serr := cl.Stat(e.ctx, remote); serr == nil {
		bar = newProgress(e.stderr, "get "+remote, fi.Size())
		w = progressWriter{out, bar}
	}
	err = e.copyOut(cl, remote, w)
	if err == nil {
		bar.finish()
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		return e.fail(local, cerr)
	}
	if err != nil {
		return e.fail(remote, err)
	}
	return 0
}

func (e *env) copyOut(cl *client.Client, remote string, w io.Writer) error {
	f, err := cl.Open(e.ctx, remote)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, struct{ io.Reader }{f})
	return err
}

func (e *env) ls(cl *client.Client, paths []string, long bool) int {
	status := 0
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
	for i, p := range paths {
		fi, err := cl.Stat(e.ctx, p)
		if err != nil {
			status = e.fail(p, err)
			continue
		}
		var list []*client.FileInfo
		if fi.IsDir() {
			entries, err := cl.ReadDir(e.ctx, p)
			if err != nil {
				status = e.fail(p, err)
				continue
			}
			for _, en := range entries {
				list = append(list, en.(*client.FileInfo))
			}
			if len(paths) > 1 {
				if i > 0 {
					fmt.Fprintln(tw)
				}
				fmt.Fprintf(tw, "%s:\n", p)
			}
		} else {
			list = []*client.FileInfo{fi}
		}
		for _, en := range list {
			if long {
				a := en.Attr()
				fmt.Fprintf(tw, "%v\t%d\t%d\t%d\t%d\t%s\t%s\n", en.Mode(), a.Nlink, a.Uid, a.Gid, en.Size(), en.ModTime().Format("2006-01-02 15:04"), en.Name())
			} else {
				fmt.Fprintln(tw, en.Name())
			}
		}
	}
	tw.Flush()
	return status
}

func (e *env) status(cl *client.Client) int {
	st, err := cl.Status(e.ctx)
	if err != nil {
		return e.fail("", err)
	}
	fs, err := cl.StatFS(e.ctx)
	if err != nil {
		return e.fail("", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MASTER\tADDRESS\tSTATE\tTERM\tAPPLIED")
	for _, m := range st.Masters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", m.Id, m.Address, m.State, m.Term, m.AppliedIndex)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CHUNKSERVER\tADDRESS\tSTATE\tCAPACITY\tFREE\tSHARDS")
	for _, c := range st.Chunkservers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", c.Id, c.Address, c.State, human(c.CapacityBytes), human(c.FreeBytes), c.Shards)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "\nslices: %d (degraded %d, lost %d)  repair left: %s  chunks to compact: %d  used: %s  free: %s  inodes: %d\n",
		st.Slices, st.SlicesDegraded, st.SlicesLost, human(st.RepairBytesLeft), st.FragmentedChunks, human(fs.UsedBytes), human(fs.FreeBytes), fs.Inodes)
	return 0
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "regular file"
	}
	return "special file"
}

// human formats a byte count with a binary unit.
func human(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
