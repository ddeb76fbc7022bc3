package s3

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"syscall"

	"github.com/cairnfs/cairn/client"
)

// listBuckets answers ListBuckets: the root's directories whose names are
// valid bucket names.
func (h *Handler) listBuckets(ctx context.Context, w http.ResponseWriter) error {
	entries, err := h.c.ReadDir(ctx, "/")
	if err != nil {
		return objectErr(err, errInternal)
	}
	res := listAllMyBucketsResult{NS: s3NS, Owner: gatewayOwner, Buckets: []bucketInfo{}}
	for _, e := range entries {
		if !e.IsDir() || !validBucketName(e.Name()) {
			continue
		}
		fi := e.(*client.FileInfo)
		res.Buckets = append(res.Buckets, bucketInfo{Name: e.Name(), CreationDate: xmlTime(fi.ModTime())})
	}
	return writeXML(w, res)
}

func (h *Handler) createBucket(ctx context.Context, w http.ResponseWriter, rq *request) error {
	err := h.c.Mkdir(ctx, bucketPath(rq.bucket), 0o755)
	if errors.Is(err, fs.ErrExist) {
		return errBucketExists
	}
	if err != nil {
		return objectErr(err, errInternal)
	}
	w.Header().Set("Location", "/"+rq.bucket)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (h *Handler) headBucket(ctx context.Context, w http.ResponseWriter, rq *request) error {
	if err := h.checkBucket(ctx, rq.bucket); err != nil {
		return err
	}
	w.Header().Set("X-Amz-Bucket-Region", h.cfg.Region)
	w.WriteHeader(http.StatusOK)
	return nil
}

// deleteBucket removes an empty bucket, with its uploads in progress.
func (h *Handler) deleteBucket(ctx context.Context, w http.ResponseWriter, rq *request) error {
	entries, err := h.c.ReadDir(ctx, bucketPath(rq.bucket))
	if err != nil {
		return objectErr(err, errNoSuchBucket)
	}
	for _, e := range entries {
		if e.Name() != hiddenDir {
			return errBucketNotEmpty
		}
	}
	if err := h.c.RemoveAll(ctx, hiddenPath(rq.bucket)); err != nil {
		return objectErr(err, errInternal)
	}
	if err := h.c.Remove(ctx, bucketPath(rq.bucket)); err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return errNoSuchBucket
		case errors.Is(err, syscall.ENOTEMPTY):
			return errBucketNotEmpty // an object arrived meanwhile
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) bucketLocation(ctx context.Context, w http.ResponseWriter, rq *request) error {
	if err := h.checkBucket(ctx, rq.bucket); err != nil {
		return err
	}
	region := h.cfg.Region
	if region == DefaultRegion {
		region = "" // S3's answer for us-east-1
	}
	return writeXML(w, locationConstraint{NS: s3NS, Region: region})
}
