package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/fusefs"
	"github.com/cairnfs/cairn/client/s3"
)

// credentialsFile, under the data directory, keeps the S3 keys dfs up
// generated, so they stay the same across restarts.
const credentialsFile = "s3.credentials"

// upFrontends says which front ends dfs up starts: "off" disables one.
type upFrontends struct {
	mount            string // mount point; "" means DIR/mnt where FUSE works
	s3Addr           string
	s3Access, s3Secr string
}

// fuseAvailable reports whether this machine can mount FUSE file systems.
func fuseAvailable() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("no /dev/fuse")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if _, err2 := exec.LookPath("fusermount"); err2 != nil {
			return errors.New("no fusermount3 (install the fuse3 package)")
		}
	}
	return nil
}

// s3Credentials returns the keys to serve S3 with: the flags', or those
// saved in dir, or new ones (saved for the next start).
func s3Credentials(dir string, f upFrontends) (s3.Credential, error) {
	if f.s3Access != "" || f.s3Secr != "" {
		if f.s3Access == "" || f.s3Secr == "" {
			return s3.Credential{}, errors.New("--s3-access-key and --s3-secret-key go together")
		}
		return s3.Credential{AccessKey: f.s3Access, SecretKey: f.s3Secr}, nil
	}
	path := filepath.Join(dir, credentialsFile)
	if cs, err := s3.LoadCredentials(path); err == nil && len(cs) > 0 {
		return cs[0], nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return s3.Credential{}, err
	}
	c := s3.GenerateCredentials()
	if err := os.WriteFile(path, []byte(c.AccessKey+" "+c.SecretKey+"\n"), 0o600); err != nil {
		return s3.Credential{}, err
	}
	return c, nil
}

// startFrontends starts the S3 gateway and the FUSE mount dfs up serves,
// prints where they are, and returns a function that stops them. A front
// end that cannot start on this machine (no FUSE) is reported and skipped;
// one that was asked for and fails is an error.
func (e *env) startFrontends(dir string, masters []string, f upFrontends, log *slog.Logger) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()

	if f.s3Addr != "off" {
		cred, err := s3Credentials(dir, f)
		if err != nil {
			return stop, fmt.Errorf("s3: %w", err)
		}
		ln, err := net.Listen("tcp", f.s3Addr)
		if err != nil {
			return stop, fmt.Errorf("s3: %w (choose another address with --s3 ADDR, or --s3 off)", err)
		}
		srv, err := s3.NewServer(s3.ServerConfig{
			Listener: ln,
			Client:   client.ClientConfig{Masters: masters, Compaction: true},
			Handler:  s3.Config{Credentials: []s3.Credential{cred}, Logger: log},
		})
		if err != nil {
			ln.Close()
			return stop, fmt.Errorf("s3: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		stops = append(stops, func() {
			cancel()
			if err := <-done; err != nil {
				fmt.Fprintf(e.stderr, "dfs: up: s3 gateway: %v\n", err)
			}
		})
		fmt.Fprintf(e.stdout, "s3:      http://%s  access key %s  secret key %s\n", ln.Addr(), cred.AccessKey, cred.SecretKey)
	}

	if f.mount != "off" {
		mnt := f.mount
		if mnt == "" {
			if why := fuseAvailable(); why != nil {
				fmt.Fprintf(e.stdout, "mount:   none (%v)\n", why)
				return stop, nil
			}
			mnt = filepath.Join(dir, "mnt")
		}
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return stop, fmt.Errorf("mount: %w", err)
		}
		dctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		cl, err := client.Dial(dctx, client.ClientConfig{Masters: masters, IOTimeout: 2 * time.Minute, Compaction: true})
		cancel()
		if err != nil {
			return stop, fmt.Errorf("mount: %w", err)
		}
		srv, err := fusefs.Mount(e.ctx, cl, mnt, fusefs.Options{Logger: log})
		if err != nil {
			cl.Close()
			return stop, fmt.Errorf("mount %s: %w", mnt, err)
		}
		stops = append(stops, func() {
			if err := srv.Unmount(); err != nil {
				fmt.Fprintf(e.stderr, "dfs: up: unmount %s: %v\n", mnt, err)
			}
			srv.Wait()
			cl.Close()
		})
		fmt.Fprintf(e.stdout, "mount:   %s\n", mnt)
	}
	return stop, nil
}
