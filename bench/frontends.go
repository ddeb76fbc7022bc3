package main

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/fusefs"
	"github.com/cairnfs/cairn/client/s3"
)

// s3Endpoint is an S3 endpoint serving Cairn and the keys to sign with.
type s3Endpoint struct {
	URL       string
	AccessKey string
	SecretKey string
}

// startMount mounts the cluster whose masters are given on dir (an empty
// directory the run created and removes) for the FUSE workload of a --local
// run. The mount is usable when it returns; stop unmounts it, waits for the
// file system's goroutines and closes its client.
func startMount(ctx context.Context, masters []string, dir string) (stop func() error, err error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, client.ClientConfig{Masters: masters, IOTimeout: 2 * time.Minute})
	if err != nil {
		return nil, err
	}
	srv, err := fusefs.Mount(ctx, cl, dir, fusefs.Options{})
	if err != nil {
		cl.Close()
		return nil, err
	}
	return func() error {
		err := srv.Unmount()
		srv.Wait()
		return errors.Join(err, cl.Close())
	}, nil
}

// startS3 starts an S3 gateway over the cluster whose masters are given,
// listening on loopback with fresh credentials, for the S3 workload of a
// --local run. stop shuts it down and waits for it.
func startS3(ctx context.Context, masters []string) (ep s3Endpoint, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return s3Endpoint{}, nil, err
	}
	cred := s3.GenerateCredentials()
	srv, err := s3.NewServer(s3.ServerConfig{
		Listener: ln,
		Client:   client.ClientConfig{Masters: masters},
		Handler:  s3.Config{Credentials: []s3.Credential{cred}},
	})
	if err != nil {
		ln.Close()
		return s3Endpoint{}, nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	stop = func() error {
		cancel()
		return <-done
	}
	return s3Endpoint{URL: "http://" + ln.Addr().String(), AccessKey: cred.AccessKey, SecretKey: cred.SecretKey}, stop, nil
}
