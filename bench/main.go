// Command bench measures Cairn on the machine it runs on: baselines of
// the bare machine (disk, loopback TCP, Reed-Solomon, SHA-256), then
// workloads through the client library, the FUSE mount and the S3
// gateway, each figure also given as a percentage of its baseline. It
// prints a table and writes a JSON and a self-contained HTML report.
//
//	go run ./bench --local
//	go run ./bench --master 10.0.0.1:7000,10.0.0.2:7000 --mount /mnt/cairn
//	go run ./bench --local --compare cairn-bench-old.json
//
// With --local it starts a cluster in this process (internal/cluster) in a
// temporary directory and removes it afterwards; against a running
// cluster it works in a directory of its own and removes that.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
)

func main() {
	os.Exit(realMain())
}

// realMain parses the flags, runs the benchmark and returns the exit
// status: 0 on success, 1 when the run or a workload failed, 2 on bad
// flags.
func realMain() int {
	var cfg Config
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.BoolVar(&cfg.Local, "local", false, "start an in-process cluster for the run")
	masters := fl.String("master", "", "comma-separated master addresses of a running cluster")
	fl.IntVar(&cfg.Chunkservers, "chunkservers", DefaultChunkservers, "chunkservers of the --local cluster")
	workloads := fl.String("workloads", strings.Join(workloadNames(), ","), "comma-separated workloads to run")
	size := fl.String("size", human(DefaultSize), "total bytes of the large-file workloads, split over --clients files")
	fl.StringVar(&cfg.Layout, "layout", "", "layout policy of the benchmark directory, e.g. RS(6,3) (default "+DefaultLayout+" with --local, else the cluster's default)")
	fl.IntVar(&cfg.Clients, "clients", DefaultClients, "concurrent clients")
	fl.IntVar(&cfg.Files, "files", DefaultFiles, "4 KiB files (and small S3 objects)")
	fl.IntVar(&cfg.Ops, "ops", DefaultOps, "operations of each metadata kind and of each random FUSE I/O kind")
	fl.StringVar(&cfg.Mount, "mount", "", "directory where Cairn is mounted (FUSE workload)")
	fl.StringVar(&cfg.S3URL, "s3", "", "URL of an S3 gateway serving Cairn (S3 workload)")
	fl.StringVar(&cfg.S3AccessKey, "s3-access-key", "", "S3 access key")
	fl.StringVar(&cfg.S3SecretKey, "s3-secret-key", "", "S3 secret key")
	fl.StringVar(&cfg.WorkDir, "workdir", "", "directory for the local cluster and the disk baseline (default: the system temporary directory)")
	baseline := fl.String("baseline-size", human(DefaultBaselineSize), "bytes the disk and TCP baselines move")
	fl.DurationVar(&cfg.DeadAfter, "dead-after", DefaultDeadAfter, "how long the --local cluster waits before rebuilding a silent chunkserver's shards")
	fl.DurationVar(&cfg.RepairNotice, "repair-notice", DefaultRepairNotice, "how long to wait for the master to report degraded slices")
	fl.DurationVar(&cfg.RepairTimeout, "repair-timeout", DefaultRepairTimeout, "how long to wait for full redundancy")
	fl.StringVar(&cfg.OutDir, "out", DefaultOutDir, "directory for the JSON and HTML reports")
	fl.StringVar(&cfg.OutName, "name", DefaultOutName, "base name of the reports (NAME.json, NAME.html)")
	fl.StringVar(&cfg.Compare, "compare", "", "an earlier JSON report to compare with")
	cpuProfile := fl.String("cpuprofile", "", "write a CPU profile of the whole run (clients and a --local cluster) to this file")
	if err := fl.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	if cfg.Size, err = parseSize(*size); err != nil {
		fmt.Fprintln(os.Stderr, "bench: --size:", err)
		return 2
	}
	if cfg.BaselineSize, err = parseSize(*baseline); err != nil {
		fmt.Fprintln(os.Stderr, "bench: --baseline-size:", err)
		return 2
	}
	if *masters != "" {
		cfg.Masters = strings.Split(*masters, ",")
	}
	cfg.Workloads = strings.Split(*workloads, ",")
	cfg.Progress = isTerminal(os.Stdout)
	cfg.Command = "go run ./bench " + strings.Join(os.Args[1:], " ")

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: --cpuprofile:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench: --cpuprofile:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
