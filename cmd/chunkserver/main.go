// Command chunkserver runs one Cairn chunkserver: it stores erasure-coded,
// checksummed shards and serves them over gRPC.
//
//	chunkserver --id cs-1 --dir /var/lib/cairn/cs-1 --listen :7100 --http :7101 --cluster-key-file /etc/cairn/key \
//		--master 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000
//
// With --master it registers with the master leader and heartbeats to it
// (package chunk/heartbeat); --advertise is the address the master hands
// to clients when --listen is a wildcard.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cairnfs/cairn/chunk"
	"github.com/cairnfs/cairn/chunk/heartbeat"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chunkserver:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg     chunk.Config
		keyFile string
		scrub   string
		masters string
		adv     string
		orders  int
	)
	fs := flag.NewFlagSet("chunkserver", flag.ContinueOnError)
	fs.StringVar(&cfg.ID, "id", "", "chunkserver ID, stable across restarts (required)")
	fs.StringVar(&cfg.Dir, "dir", "", "directory holding the shard store (required)")
	fs.StringVar(&cfg.ListenAddr, "listen", "127.0.0.1:7100", "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http", "", "address for /metrics and /healthz (empty: off)")
	fs.StringVar(&cfg.Rack, "rack", "", "rack or failure domain, for placement")
	fs.Uint64Var(&cfg.Capacity, "capacity", 0, "bytes the store may hold (0: the file system's size)")
	fs.StringVar(&keyFile, "cluster-key-file", "", "file holding the cluster key shared with the masters (required)")
	fs.StringVar(&scrub, "scrub-rate", "20MiB", "scrubber pace in bytes per second (0: off)")
	fs.DurationVar(&cfg.ScrubInterval, "scrub-interval", chunk.DefaultScrubInterval, "pause between scrub passes")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", chunk.DefaultShutdownGrace, "how long to let streams finish on shutdown")
	fs.StringVar(&masters, "master", "", "comma-separated master gRPC addresses to register with (empty: do not register)")
	fs.StringVar(&adv, "advertise", "", "address the master hands out for this chunkserver (default: the bound address)")
	fs.IntVar(&orders, "max-orders", heartbeat.DefaultMaxOrders, "repair and delete orders from the master run at once")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if keyFile == "" {
		return fmt.Errorf("--cluster-key-file is required")
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	cfg.ClusterKey = []byte(strings.TrimSpace(string(key)))
	if cfg.ScrubBytesPerSecond, err = parseBytes(scrub); err != nil {
		return fmt.Errorf("--scrub-rate: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	corrupt := heartbeat.NewCorruptQueue()
	cfg.OnCorrupt = corrupt.Add
	srv, err := chunk.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var addrs []string
	for _, a := range strings.Split(masters, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return srv.Run(ctx)
	}
	var node heartbeat.Node = srv
	if adv != "" {
		node = advertised{srv, adv}
	}
	hbCtx, hbStop := context.WithCancel(ctx)
	hbDone := make(chan error, 1)
	go func() {
		hbDone <- heartbeat.Run(hbCtx, heartbeat.Config{Masters: addrs, Node: node, Rack: cfg.Rack, MaxOrders: orders, Corrupt: corrupt, Logger: cfg.Logger})
	}()
	err = srv.Run(ctx)
	hbStop()
	if hbErr := <-hbDone; err == nil {
		err = hbErr
	}
	return err
}

// advertised reports another address than the bound one to the master.
type advertised struct {
	*chunk.Server
	addr string
}

func (a advertised) Addr() string { return a.addr }

// parseBytes reads sizes like "20MiB", "1GB", "4096".
func parseBytes(s string) (uint64, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	s = strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	var n uint64
	if _, err := fmt.Sscan(s, &n); err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}
