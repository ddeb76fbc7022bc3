// Command master runs one Cairn metadata master, a member of the Raft
// group that keeps the namespace.
//
// A cluster of three, started by hand (the same --peers on each, which is
// used only the first time, to bootstrap the empty Raft state):
//
//	head -c 32 /dev/urandom | base64 > /etc/cairn/key
//	PEERS=m1=127.0.0.1:7001,m2=127.0.0.1:7011,m3=127.0.0.1:7021
//	master --id m1 --dir /var/lib/cairn/m1 --raft 127.0.0.1:7001 --grpc 127.0.0.1:7000 --http 127.0.0.1:7002 --peers $PEERS --cluster-key-file /etc/cairn/key
//	master --id m2 --dir /var/lib/cairn/m2 --raft 127.0.0.1:7011 --grpc 127.0.0.1:7010 --http 127.0.0.1:7012 --peers $PEERS --cluster-key-file /etc/cairn/key
//	master --id m3 --dir /var/lib/cairn/m3 --raft 127.0.0.1:7021 --grpc 127.0.0.1:7020 --http 127.0.0.1:7022 --peers $PEERS --cluster-key-file /etc/cairn/key
//
// Without --peers (and without --join) a master bootstraps a cluster of
// itself alone. A fourth master is started with --join and added with
// Admin.AddMaster on the leader.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cairnfs/cairn/master"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "master:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg      master.Config
		peers    string
		keyFile  string
		logLevel string
		// repairMiB is RepairConfig.BytesPerSecond in MiB/s.
		repairMiB uint64
	)
	fs := flag.NewFlagSet("master", flag.ContinueOnError)
	fs.StringVar(&cfg.ID, "id", "", "master ID, stable across restarts (required)")
	fs.StringVar(&cfg.Dir, "dir", "", "directory for the state machine, Raft log and snapshots (required)")
	fs.StringVar(&cfg.RaftAddr, "raft", master.DefaultRaftAddr, "Raft transport listen address")
	fs.StringVar(&cfg.RaftAdvertise, "raft-advertise", "", "Raft address other masters dial (default: --raft)")
	fs.StringVar(&cfg.GRPCAddr, "grpc", master.DefaultGRPCAddr, "gRPC listen address for clients and chunkservers")
	fs.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "gRPC address followers hand out for this master (default: --grpc)")
	fs.StringVar(&cfg.HTTPAddr, "http", "", "address for /metrics and /healthz (empty: off)")
	fs.StringVar(&peers, "peers", "", "initial members of a new cluster, ID=raft-address,... including this one")
	fs.BoolVar(&cfg.Join, "join", false, "start empty and wait to be added with Admin.AddMaster")
	fs.StringVar(&keyFile, "cluster-key-file", "", "file holding the cluster key shared with chunkservers (required)")
	fs.StringVar(&cfg.DefaultLayout, "default-layout", "", `layout for directories without a policy, e.g. "RS(4,2)" (empty: by chunkserver count)`)
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 0, "chunkserver heartbeat interval (0: default)")
	fs.DurationVar(&cfg.DeadAfter, "dead-after", 0, "silence after which a chunkserver is dead (0: default)")
	fs.DurationVar(&cfg.RaftHeartbeatTimeout, "raft-heartbeat-timeout", master.DefaultRaftHeartbeatTimeout, "Raft heartbeat timeout")
	fs.DurationVar(&cfg.RaftElectionTimeout, "raft-election-timeout", master.DefaultRaftElectionTimeout, "Raft election timeout")
	fs.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", master.DefaultSnapshotThreshold, "log entries between snapshots")
	fs.DurationVar(&cfg.ClientLease, "client-lease", master.DefaultClientLease, "how long a silent client's open files and locks are kept")
	fs.DurationVar(&cfg.Repair.Interval, "repair-interval", master.DefaultRepairInterval, "pause between repair and garbage-collection scans")
	fs.Uint64Var(&repairMiB, "repair-mib-per-sec", 0, "rebuild bandwidth of one chunkserver in MiB/s (0: unthrottled)")
	fs.IntVar(&cfg.Repair.PerServer, "repair-per-server", master.DefaultRepairPerServer, "rebuilds one chunkserver runs at once")
	fs.IntVar(&cfg.Repair.MaxOrders, "repair-max-orders", master.DefaultRepairMaxOrders, "rebuilds and deletions in flight in the whole cluster")
	fs.BoolVar(&cfg.Repair.Disabled, "repair-off", false, "turn repair, garbage collection and draining off")
	fs.DurationVar(&cfg.Compaction.Quiet, "compact-quiet", master.DefaultCompactQuiet, "how long a fragmented chunk must go unwritten before clients are asked to compact it")
	fs.IntVar(&cfg.Compaction.ForceRefs, "compact-force-refs", master.DefaultCompactForceRefs, "slices at which a chunk is compacted even while it is being written")
	fs.IntVar(&cfg.Compaction.ForceShare, "compact-force-share", master.DefaultCompactForceShare, "a chunk being written is compacted only once its writes added 1/N of its bytes")
	fs.DurationVar(&cfg.Compaction.ForceEvery, "compact-force-every", master.DefaultCompactForceEvery, "how often one chunk may be compacted while it is being written")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if repairMiB > 1<<40 {
		return fmt.Errorf("--repair-mib-per-sec %d is out of range", repairMiB)
	}
	cfg.Repair.BytesPerSecond = repairMiB << 20
	var err error
	if cfg.Peers, err = master.ParsePeers(peers); err != nil {
		return err
	}
	if keyFile == "" {
		return errors.New("--cluster-key-file is required")
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	cfg.ClusterKey = []byte(strings.TrimSpace(string(key)))
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := master.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Run(ctx)
}
