package client

import (
	"context"
	"sync"
	"time"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// Sessions.
//
// The master ties a client's open handles and locks to its client ID and
// keeps them while the client's lease lasts. A Client renews its lease in
// the background for as long as it is open, so a mount that holds a lock
// keeps it, and a client that dies loses its locks one lease later.

// keepAliveFallback is the renewal period used until the master has said
// how long a lease lasts, and after a failed renewal.
const keepAliveFallback = 2 * time.Second

// session owns the Client's lease-renewal goroutine.
type session struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (c *Client) startSession() {
	ctx, cancel := context.WithCancel(context.Background())
	c.sess = &session{cancel: cancel}
	c.sess.wg.Add(1)
	go func() {
		defer c.sess.wg.Done()
		c.keepAlive(ctx)
	}()
}

func (c *Client) stopSession() {
	if c.sess != nil {
		c.sess.cancel()
		c.sess.wg.Wait()
	}
}

// keepAlive renews the lease at a third of its length, so that two lost
// renewals in a row still leave it standing.
//
// The first renewal waits a period too: Open and Lock start or renew the
// lease on the master themselves, so a short-lived client (one dfs
// command) sends no KeepAlive at all.
func (c *Client) keepAlive(ctx context.Context) {
	wait := keepAliveFallback
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		cctx, cancel := context.WithTimeout(ctx, c.conn.cfg.CallTimeout)
		resp, err := call(cctx, c.conn, &masterpb.KeepAliveRequest{ClientId: c.cfg.Data.ClientID}, masterpb.MasterClient.KeepAlive)
		cancel()
		wait = keepAliveFallback
		if err == nil {
			if left := time.Until(time.Unix(0, resp.LeaseUnixNano)); left > 0 {
				wait = max(left/3, 10*time.Millisecond)
			}
		}
	}
}

// ClientID is the ID this Client's requests, handles and locks carry.
func (c *Client) ClientID() string { return c.cfg.Data.ClientID }

// Concat makes dst (created, or replaced as rename(2) replaces) the
// concatenation of the files srcs, in order, and removes the srcs, in one
// atomic step. No bytes are copied: the sources' slices become dst's. Each
// source must be a regular file with one link, not open anywhere. A new
// dst gets mode 0644 (S3 multipart uploads complete through Concat).
func (c *Client) Concat(ctx context.Context, dst string, srcs []string) error {
	dir, name, err := c.parent(ctx, dst)
	if err != nil {
		return pathErr("concat", dst, err)
	}
	req := &masterpb.ConcatRequest{Header: c.header(), Parent: dir.Inode, Name: name, Mode: 0o644}
	for _, s := range srcs {
		sd, sn, err := c.parent(ctx, s)
		if err != nil {
			return pathErr("concat", s, err)
		}
		req.Sources = append(req.Sources, &masterpb.ConcatRequest_Source{Parent: sd.Inode, Name: sn})
	}
	_, err = call(ctx, c.conn, req, masterpb.MasterClient.Concat)
	return pathErr("concat", dst, err)
}
