// Command dfsmount mounts a Cairn cluster's namespace as a POSIX file
// system through FUSE and serves it in the foreground until SIGINT or
// SIGTERM, which unmount it.
//
//	dfsmount /mnt/cairn --master 127.0.0.1:7000,127.0.0.1:7010 -o allow_other,ro
//
// -o takes the usual comma-separated mount options: allow_other, ro,
// root_squash, entry_timeout=SECONDS, attr_timeout=SECONDS,
// negative_timeout=SECONDS, fsname=NAME; anything else goes to the kernel
// as is. --http ADDR serves Go's profiles under /debug/pprof/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/fusefs"
	"github.com/cairnfs/cairn/internal/profiling"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dfsmount:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("dfsmount", flag.ContinueOnError)
	masters := fl.String("master", os.Getenv("CAIRN_MASTERS"), "comma-separated master gRPC addresses (default $CAIRN_MASTERS)")
	var mountOpts []string
	fl.Func("o", "mount options, comma-separated (repeatable)", func(s string) error {
		mountOpts = append(mountOpts, strings.Split(s, ",")...)
		return nil
	})
	timeout := fl.Duration("timeout", time.Minute, "how long an operation retries an unreachable cluster before failing with EIO")
	debug := fl.Bool("debug", false, "log every FUSE request")
	logLevel := fl.String("log-level", "info", "debug, info, warn or error")
	noCompact := fl.Bool("no-compaction", false, "do not compact fragmented files in the background (another client does)")
	httpAddr := fl.String("http", "", "serve Go's profiles under /debug/pprof/ on this address (off when empty)")
	// Flags may come before or after the mount point.
	if err := fl.Parse(args); err != nil {
		return err
	}
	rest := fl.Args()
	if len(rest) == 0 {
		return errors.New("usage: dfsmount MOUNTPOINT --master ADDRS [-o OPTIONS]")
	}
	dir := rest[0]
	if err := fl.Parse(rest[1:]); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *masters == "" {
		return errors.New("--master is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	opts := fusefs.Options{OpTimeout: *timeout, Debug: *debug, Logger: logger}
	if err := parseMountOptions(mountOpts, &opts); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cl, err := client.Dial(dctx, client.ClientConfig{
		Masters:      strings.Split(*masters, ","),
		RetryTimeout: *timeout,
		IOTimeout:    *timeout,
		Data:         client.Config{Logger: logger},
		Compaction:   !*noCompact,
	})
	if err != nil {
		return err
	}
	defer cl.Close()
	var profSrv *http.Server
	if *httpAddr != "" {
		lis, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("--http: %w", err)
		}
		mux := http.NewServeMux()
		profiling.Register(mux)
		profSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = profSrv.Serve(lis)
		}()
		defer func() {
			_ = profSrv.Close()
			<-served
		}()
		logger.Info("serving profiles", "addr", lis.Addr().String())
	}
	srv, err := fusefs.Mount(ctx, cl, dir, opts)
	if err != nil {
		return err
	}
	logger.Info("mounted", "dir", srv.Dir(), "masters", *masters)
	// A signal ends ctx, which unmounts.
	srv.Wait()
	logger.Info("unmounted", "dir", srv.Dir())
	return nil
}

// parseMountOptions applies -o options to opts.
func parseMountOptions(list []string, opts *fusefs.Options) error {
	seconds := func(v string) (time.Duration, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("-o: bad number of seconds %q", v)
		}
		if f == 0 {
			return -1, nil // no caching
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	for _, o := range list {
		key, val, _ := strings.Cut(strings.TrimSpace(o), "=")
		var err error
		switch key {
		case "":
		case "allow_other":
			opts.AllowOther = true
		case "ro":
			opts.ReadOnly = true
		case "rw":
			opts.ReadOnly = false
		case "root_squash":
			opts.RootSquash = true
		case "fsname":
			opts.FSName = val
		case "entry_timeout":
			opts.EntryTimeout, err = seconds(val)
		case "attr_timeout":
			opts.AttrTimeout, err = seconds(val)
		case "negative_timeout":
			opts.NegativeTimeout, err = seconds(val)
			if opts.NegativeTimeout < 0 {
				opts.NegativeTimeout = 0
			}
		default:
			opts.MountOptions = append(opts.MountOptions, o)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
