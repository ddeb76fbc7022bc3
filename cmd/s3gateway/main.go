// Command s3gateway serves a Cairn cluster over the S3 API.
//
//	s3gateway --listen :9000 --master m1:7000,m2:7000 --credentials creds.txt
//
// The credentials file holds one "ACCESS_KEY SECRET_KEY" pair a line.
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

	"github.com/cairnfs/cairn/client/s3"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "s3gateway:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("s3gateway", flag.ContinueOnError)
	listen := fl.String("listen", ":9000", "HTTP address to serve the S3 API on")
	masters := fl.String("master", "", "comma-separated master gRPC addresses")
	creds := fl.String("credentials", "", "file of \"ACCESS_KEY SECRET_KEY\" lines")
	anonymous := fl.Bool("anonymous", false, "allow unsigned requests (full access)")
	region := fl.String("region", s3.DefaultRegion, "region GetBucketLocation reports")
	domain := fl.String("domain", "", "serve virtual-hosted-style requests to <bucket>.DOMAIN too")
	noCompact := fl.Bool("no-compaction", false, "do not compact fragmented files in the background (another client does)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	cfg := s3.ServerConfig{ListenAddr: *listen}
	cfg.Client.Compaction = !*noCompact
	for _, m := range strings.Split(*masters, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Client.Masters = append(cfg.Client.Masters, m)
		}
	}
	cfg.Handler.Region = *region
	cfg.Handler.Domain = *domain
	cfg.Handler.AllowAnonymous = *anonymous
	cfg.Handler.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *creds != "" {
		c, err := s3.LoadCredentials(*creds)
		if err != nil {
			return err
		}
		cfg.Handler.Credentials = c
	}
	srv, err := s3.NewServer(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Handler.Logger.Info("s3 gateway listening", "addr", srv.Addr())
	return srv.Run(ctx)
}
