package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cairnfs/cairn/erasure"
)

// workloadNames returns every workload's name, in the order a run executes
// them. Degraded and repair reuse the files the sequential workload wrote
// (and write them first when it was not selected); repair runs last because
// it leaves a chunkserver stopped until the cluster is whole again.
func workloadNames() []string {
	return []string{"seq", "degraded", "small", "meta", "fuse", "s3", "repair"}
}

// Defaults for Config fields left zero. They are sized so that a --local
// run with every workload finishes within a few minutes on a 2-core
// machine with one SSD.
const (
	DefaultSize          = 1 << 30
	DefaultClients       = 4
	DefaultFiles         = 2000
	DefaultOps           = 2000
	DefaultChunkservers  = 7
	DefaultLayout        = "RS(4,2)"
	DefaultBaselineSize  = 256 << 20
	DefaultFsyncDuration = 2 * time.Second
	DefaultRepairNotice  = 20 * time.Second
	DefaultDeadAfter     = 10 * time.Second
	DefaultRepairTimeout = 3 * time.Minute
	DefaultOutDir        = "."
	// DefaultOutName is the base name of the JSON and HTML reports.
	DefaultOutName = "cairn-bench"
)

// Config is one benchmark run. main fills it from flags; tests build it
// directly.
type Config struct {
	// Local starts an in-process cluster (internal/cluster) in a
	// temporary directory under WorkDir; otherwise Masters names a
	// running cluster.
	Local   bool
	Masters []string
	// Chunkservers is the local cluster's size. Seven lets an RS(4,2)
	// slice be repaired onto a server that holds none of its shards.
	Chunkservers int
	// DeadAfter is the local cluster's grace before a silent chunkserver's
	// shards are rebuilt elsewhere. The master's default (minutes) suits
	// production; a benchmark wants the rebuild itself, so it is short.
	DeadAfter time.Duration
	// Workloads are the workloads to run (default: all, see workloadNames).
	Workloads []string
	// Size is the total bytes of the large-file workloads (sequential,
	// FUSE, S3 large objects), split evenly over Clients files.
	Size int64
	// Layout is the layout policy of the benchmark's directory, in
	// erasure.ParseLayout's form; "" leaves the cluster default, except
	// with Local, where it means DefaultLayout.
	Layout string
	// Clients is how many clients work concurrently; each has its own
	// connections.
	Clients int
	// Files is the number of 4 KiB files (and small S3 objects).
	Files int
	// Ops is the number of operations of each metadata kind and of each
	// random 4 KiB I/O kind on the FUSE mount.
	Ops int
	// Mount is a directory where Cairn is mounted (FUSE); with Local and
	// no Mount the run mounts its own cluster (startMount).
	Mount string
	// S3URL is an S3 endpoint serving Cairn, with its keys; with Local
	// and no S3URL the run starts a gateway on its cluster (startS3).
	S3URL       string
	S3AccessKey string
	S3SecretKey string
	// WorkDir holds the local cluster and the disk baseline's file
	// (default: the system temporary directory). Everything written
	// there is removed at the end.
	WorkDir string
	// BaselineSize is the bytes the disk and loopback baselines move.
	BaselineSize int64
	// FsyncDuration is how long the fsync-rate baseline runs.
	FsyncDuration time.Duration
	// RepairNotice is how long the repair workload waits for the master
	// to report degraded slices after a chunkserver is stopped, and
	// RepairTimeout how long it then waits for full redundancy.
	RepairNotice  time.Duration
	RepairTimeout time.Duration
	// OutDir receives OutName.json and OutName.html.
	OutDir  string
	OutName string
	// Compare, if set, is an earlier JSON report to compare with.
	Compare string
	// Progress draws live progress bars (main sets it when stdout is a
	// terminal).
	Progress bool
	// Command is the command line recorded in the report.
	Command string
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.Local == (len(c.Masters) > 0) {
		return errors.New("bench: give exactly one of --local and --master")
	}
	if c.Chunkservers == 0 {
		c.Chunkservers = DefaultChunkservers
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = DefaultDeadAfter
	}
	if c.Local && c.Chunkservers < 1 {
		return fmt.Errorf("bench: %d chunkservers", c.Chunkservers)
	}
	if len(c.Workloads) == 0 {
		c.Workloads = workloadNames()
	}
	for _, w := range c.Workloads {
		if !contains(workloadNames(), w) {
			return fmt.Errorf("bench: unknown workload %q (have %s)", w, strings.Join(workloadNames(), ", "))
		}
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Files == 0 {
		c.Files = DefaultFiles
	}
	if c.Ops == 0 {
		c.Ops = DefaultOps
	}
	if c.Size < 0 || c.Clients < 0 || c.Files < 0 || c.Ops < 0 {
		return errors.New("bench: sizes and counts must be positive")
	}
	if c.Size < int64(c.Clients)*fourKiB {
		return fmt.Errorf("bench: size %s is too small for %d clients", human(c.Size), c.Clients)
	}
	if c.Local && c.Layout == "" {
		c.Layout = DefaultLayout
	}
	if c.Layout != "" {
		l, err := erasure.ParseLayout(c.Layout)
		if err != nil {
			return fmt.Errorf("bench: --layout: %w", err)
		}
		c.Layout = l.String()
	}
	if c.S3URL != "" && (c.S3AccessKey == "" || c.S3SecretKey == "") {
		return errors.New("bench: --s3 needs --s3-access-key and --s3-secret-key")
	}
	if c.BaselineSize == 0 {
		c.BaselineSize = DefaultBaselineSize
	}
	if c.BaselineSize < 1<<20 {
		return errors.New("bench: baseline size below 1 MiB")
	}
	if c.FsyncDuration == 0 {
		c.FsyncDuration = DefaultFsyncDuration
	}
	if c.RepairNotice == 0 {
		c.RepairNotice = DefaultRepairNotice
	}
	if c.RepairTimeout == 0 {
		c.RepairTimeout = DefaultRepairTimeout
	}
	if c.OutDir == "" {
		c.OutDir = DefaultOutDir
	}
	if c.OutName == "" {
		c.OutName = DefaultOutName
	}
	return nil
}

// wants reports whether workload w is selected.
func (c *Config) wants(w string) bool { return contains(c.Workloads, w) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

const fourKiB = 4 << 10

// parseSize reads a byte count such as "1GiB", "512MiB", "4KiB", "1G"
// (binary units; KB, MB, GB are decimal) or a plain number of bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult, t = u.mult, strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(n * float64(mult)), nil
}

// human writes a byte count with a binary unit.
func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
