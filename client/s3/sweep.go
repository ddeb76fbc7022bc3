package s3

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"time"
)

// Staging files.
//
// PutObject and CopyObject write the object to a file in the bucket's
// hidden directory and rename it into place when it is whole; on failure
// they remove it. A gateway that crashes, or loses the masters, between
// the two leaves the file behind: invisible to listings, holding a whole
// object's bytes, and removed by nothing but DeleteBucket. So a Server
// sweeps: files in a bucket's hidden directory itself (multipart uploads
// are directories there, listed by ListMultipartUploads and ended by
// Abort) that nobody modified for StagingTTL are removed.

// sweepEvery is how often Server.Run sweeps (and once at start), at most
// a quarter of the TTL.
const sweepEvery = time.Hour

// SweepStaging removes the staging files of every bucket unmodified since
// before cutoff and returns how many it removed. A file a request is still
// writing is modified at every commit, at least every 64 MiB (a client's
// write buffer), so only a request slower than that per StagingTTL loses
// its file, and it then fails rather than publish a partial object.
func (h *Handler) SweepStaging(ctx context.Context, cutoff time.Time) (int, error) {
	buckets, err := h.c.ReadDir(ctx, "/")
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, b := range buckets {
		if !b.IsDir() {
			continue
		}
		entries, err := h.c.ReadDir(ctx, hiddenPath(b.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			// No modification time known (an entry listed without
			// attributes) is no evidence of age.
			fi, err := e.Info()
			if err != nil || fi.ModTime().UnixNano() <= 0 || !fi.ModTime().Before(cutoff) {
				continue
			}
			p := path.Join(hiddenPath(b.Name()), e.Name())
			if err := h.c.Remove(ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			removed++
			h.log.Info("s3: removed an abandoned staging file", "path", p, "modified", fi.ModTime())
		}
	}
	return removed, errors.Join(errs...)
}

// sweep calls SweepStaging at once and then every interval until ctx
// ends; a failed sweep is logged and tried again at the next.
func (h *Handler) sweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := h.SweepStaging(ctx, h.cfg.Now().Add(-h.cfg.StagingTTL)); err != nil && ctx.Err() == nil {
			h.log.Warn("s3: sweep staging files", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
