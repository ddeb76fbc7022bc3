package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/internal/cluster"
	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// env is what workloads share during one run.
type env struct {
	cfg *Config
	// clients are cfg.Clients independent clients (own connections);
	// worker w uses clients[w%len(clients)].
	clients []*client.Client
	// cluster is the local cluster, nil against a running one.
	cluster *cluster.Cluster
	// base is the run's directory in the Cairn namespace; everything the
	// workloads create lives under it and is removed at the end.
	base string
	// workDir is the run's local scratch directory.
	workDir string
	// clusterLog is the file receiving the local cluster's warnings.
	clusterLog string
	prog       *progress
	block      []byte
	// seq are the large files written by the sequential workload (or by
	// degraded or repair when it did not run), each seqSize bytes.
	seq     []string
	seqSize int64
	// mount is the FUSE mount's directory, or "" with mountErr saying why
	// there is none; s3 likewise.
	mount    string
	mountErr error
	s3       s3Endpoint
	s3Err    error
}

// client returns worker w's client.
func (e *env) client(w int) *client.Client { return e.clients[w%len(e.clients)] }

// naError marks a workload that cannot run here; its text says why.
type naError struct{ reason string }

func (e *naError) Error() string { return e.reason }

func notAvailable(format string, args ...any) error {
	return &naError{reason: fmt.Sprintf(format, args...)}
}

// workload is one selectable workload.
type workload struct {
	name string
	run  func(ctx context.Context, e *env) ([]Result, error)
}

func workloads() []workload {
	return []workload{
		{"seq", runSeq},
		{"degraded", runDegraded},
		{"small", runSmall},
		{"meta", runMeta},
		{"fuse", runFUSE},
		{"s3", runS3},
		{"repair", runRepair},
	}
}

// run executes the benchmark that cfg describes: machine probe, baselines,
// cluster, workloads, clean-up; then it writes the JSON and HTML reports,
// prints the table (and the comparison) on stdout and returns the report.
// The error is non-nil if the run could not be done (no reports then) or
// a workload failed (the reports, which record the failure, are written).
func run(ctx context.Context, cfg Config, stdout, log io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var old *Report
	if cfg.Compare != "" {
		// Read it first: a typo should not cost a whole run.
		var err error
		if old, err = readReport(cfg.Compare); err != nil {
			return nil, fmt.Errorf("bench: --compare: %w", err)
		}
	}
	// Where the reports go is settled before the run, not after it.
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: --out: %w", err)
	}
	started := time.Now()
	workDir, err := os.MkdirTemp(cfg.WorkDir, "cairn-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(workDir)

	prog := &progress{on: cfg.Progress, out: stdout, log: log}
	rep := &Report{Version: reportVersion, Started: started.UTC(), Command: cfg.Command, Layout: cfg.Layout, Clients: cfg.Clients}
	if rep.Layout == "" {
		rep.Layout = "cluster default"
	}
	rep.Machine = probeMachine(ctx, workDir)
	if rep.Baselines, err = measureBaselines(ctx, &cfg, workDir, prog); err != nil {
		return nil, fmt.Errorf("bench: baselines: %w", err)
	}

	e := &env{cfg: &cfg, workDir: workDir, prog: prog, block: patternBlock()}
	runErr := e.runWorkloads(ctx, rep)
	if len(rep.failed()) > 0 && e.clusterLog != "" {
		showTail(log, e.clusterLog, 40)
	}
	rep.Seconds = time.Since(started).Seconds()
	rep.relate()
	if runErr != nil {
		return rep, runErr
	}

	// The table first: should writing a report fail, the figures are
	// still on the screen.
	if err := rep.writeTable(stdout); err != nil {
		return rep, err
	}
	jsonPath := filepath.Join(cfg.OutDir, cfg.OutName+".json")
	htmlPath := filepath.Join(cfg.OutDir, cfg.OutName+".html")
	if err := rep.writeJSON(jsonPath); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	if err := writeHTML(htmlPath, rep); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s in %.0f s\n", jsonPath, htmlPath, rep.Seconds)
	if old != nil {
		fmt.Fprintf(stdout, "\ncompared with %s (%s):\n", cfg.Compare, old.Started.Format(time.RFC3339))
		if err := writeComparison(stdout, old, rep); err != nil {
			return rep, err
		}
	}
	if f := rep.failed(); len(f) > 0 {
		return rep, fmt.Errorf("bench: %d figures failed, first %s: %s", len(f), f[0].Key(), f[0].Note)
	}
	return rep, nil
}

// runWorkloads connects to (or starts) the cluster, runs the selected
// workloads into rep and cleans up. Its error means the run could not go
// on; a workload's own failure is recorded in rep instead.
func (e *env) runWorkloads(ctx context.Context, rep *Report) (err error) {
	cfg := e.cfg
	masters := cfg.Masters
	if cfg.Local {
		// The cluster's warnings go to a file, shown if a workload fails:
		// they say why (a chunkserver deemed silent, a full disk) where
		// the client only sees the master's errno.
		logf, err := os.Create(filepath.Join(e.workDir, "cluster.log"))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer logf.Close()
		e.clusterLog = logf.Name()
		logger := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))
		bar := e.prog.start("starting local cluster", 1, "steps")
		e.cluster, err = cluster.Start(ctx, cluster.Config{Dir: filepath.Join(e.workDir, "cluster"), Masters: 1, Chunkservers: cfg.Chunkservers, DeadAfter: cfg.DeadAfter, Logger: logger})
		if err == nil {
			defer func() { err = errors.Join(err, e.cluster.Close()) }()
			err = e.cluster.WaitReady(ctx)
		}
		bar.done()
		if err != nil {
			return fmt.Errorf("bench: local cluster: %w", err)
		}
		masters = e.cluster.MasterAddrs()
		rep.Target = fmt.Sprintf("local: 1 master, %d chunkservers in one process over loopback, data under %s", cfg.Chunkservers, filepath.Dir(e.workDir))
	} else {
		rep.Target = "masters " + strings.Join(masters, ",")
	}

	for range cfg.Clients {
		cl, err := client.Dial(ctx, client.ClientConfig{Masters: masters, IOTimeout: 5 * time.Minute})
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer cl.Close()
		e.clients = append(e.clients, cl)
	}
	id := make([]byte, 4)
	rand.Read(id)
	e.base = fmt.Sprintf("/cairn-bench-%x", id)
	if err := e.mkdirLayout(ctx, e.base, cfg.Layout); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer func() {
		// The run's own context may be cancelled (^C): clean up anyway.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if rerr := e.clients[0].RemoveAll(cctx, e.base); rerr != nil {
			err = errors.Join(err, fmt.Errorf("bench: remove %s: %w", e.base, rerr))
		}
	}()

	stop := e.startFrontends(ctx, masters)
	defer func() { err = errors.Join(err, stop()) }()

	for _, w := range workloads() {
		if !cfg.wants(w.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		res, werr := w.run(ctx, e)
		rep.Results = append(rep.Results, res...)
		var na *naError
		switch {
		case errors.As(werr, &na):
			rep.Results = append(rep.Results, Result{Workload: w.name, Op: "-", Status: statusNA, Note: na.reason})
		case werr != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Results = append(rep.Results, Result{Workload: w.name, Op: "-", Status: statusFailed, Note: werr.Error()})
		}
	}
	return nil
}

// startFrontends provides the FUSE mount and the S3 endpoint: the ones
// given by flags, else, for a local cluster, ones started on it. It
// returns the function that stops what it started.
func (e *env) startFrontends(ctx context.Context, masters []string) func() error {
	cfg := e.cfg
	var stops []func() error
	switch {
	case !cfg.wants("fuse"):
	case cfg.Mount != "":
		e.mount = cfg.Mount
	case cfg.Local:
		dir := filepath.Join(e.workDir, "mnt")
		if err := os.Mkdir(dir, 0o755); err != nil {
			e.mountErr = err
			break
		}
		stop, err := startMount(ctx, masters, dir)
		if err != nil {
			e.mountErr = err
			break
		}
		e.mount = dir
		stops = append(stops, stop)
	default:
		e.mountErr = errors.New("no --mount DIR given")
	}
	switch {
	case !cfg.wants("s3"):
	case cfg.S3URL != "":
		e.s3 = s3Endpoint{URL: cfg.S3URL, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey}
	case cfg.Local:
		ep, stop, err := startS3(ctx, masters)
		if err != nil {
			e.s3Err = err
			break
		}
		e.s3 = ep
		stops = append(stops, stop)
	default:
		e.s3Err = errors.New("no --s3 URL given")
	}
	return func() error {
		var errs []error
		for _, stop := range stops {
			errs = append(errs, stop())
		}
		return errors.Join(errs...)
	}
}

// mkdirLayout creates directory p with layout as its layout policy (""
// inherits the parent's).
func (e *env) mkdirLayout(ctx context.Context, p, layout string) error {
	cl := e.clients[0]
	if layout == "" {
		return cl.Mkdir(ctx, p, 0o755)
	}
	l, err := erasure.ParseLayout(layout)
	if err != nil {
		return err
	}
	parent, err := cl.Stat(ctx, path.Dir(p))
	if err != nil {
		return err
	}
	req := &masterpb.MkdirRequest{
		Header: &masterpb.RequestHeader{RequestId: randomID(), ClientId: "cairn-bench"},
		Parent: parent.Inode(), Name: path.Base(p), Mode: uint32(fs.ModeDir | 0o755), Layout: wirelayout.ToProto(l),
	}
	err = cl.Conn().Do(ctx, func(ctx context.Context, mc masterpb.MasterClient) error {
		_, err := mc.Mkdir(ctx, req)
		return err
	})
	if err != nil {
		return fmt.Errorf("mkdir %s with layout %s: %w", p, l, err)
	}
	return nil
}

func randomID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

// showTail copies the last n lines of the file at path to w, under a
// heading, if the file has any.
func showTail(w io.Writer, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	fmt.Fprintf(w, "bench: the local cluster's last %d warnings:\n%s\n", len(lines), strings.Join(lines, "\n"))
}

// evictChunkservers drops the local chunkservers' files from the page
// cache (posix_fadvise DONTNEED on each), so that reads after writes come
// from the disk as they would on a cluster whose data outgrew memory. It
// does nothing against a remote cluster, whose caches are out of reach.
func (e *env) evictChunkservers() {
	if e.cluster == nil {
		return
	}
	for i := range e.cluster.Chunkservers() {
		filepath.WalkDir(e.cluster.ChunkserverDir(i), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if f, err := os.Open(p); err == nil {
				evict(f)
				f.Close()
			}
			return nil
		})
	}
}
