package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// written is a file written under the hidden directory, not yet visible.
type written struct {
	path string
	// fi is the file's attributes after its last commit; nil when
	// finished.
	fi *client.FileInfo
	// finished: the extended attributes writeHidden's finish returned
	// were committed with the file's last bytes.
	finished bool
}

// writeHidden writes src to a new file named name in bucket's hidden
// directory and commits it. On failure nothing is left behind. ctx ending
// (the client going away) aborts the write.
//
// upload, if not "", is the multipart upload whose directory the file goes
// in; a missing upload directory is NoSuchUpload (it is never recreated).
//
// finish, if not nil, is called once src is read whole, with the file's
// size and the modification time it is given; the extended attributes it
// returns are committed with the last bytes, in the same commit
// (written.finished), unless those were committed already: then the
// caller sets them.
func (h *Handler) writeHidden(ctx context.Context, bucket, upload, name string, src io.Reader, finish func(size int64, mtime time.Time) map[string][]byte) (*written, error) {
	p := hiddenPath(bucket, name)
	if upload != "" {
		p = hiddenPath(bucket, upload, name)
	}
	f, err := h.c.Create(ctx, p)
	if errors.Is(err, fs.ErrNotExist) && upload != "" {
		return nil, h.missingObject(ctx, bucket, errNoSuchUpload)
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err := h.checkBucket(ctx, bucket); err != nil {
			return nil, err
		}
		if err := h.c.MkdirAll(ctx, path.Dir(p), 0o700); err != nil {
			return nil, fmt.Errorf("s3: make %s: %w", path.Dir(p), err)
		}
		f, err = h.c.Create(ctx, p)
	}
	if err != nil {
		return nil, err
	}
	if upload != "" {
		f.DisableInline() // a part: Complete composes parts' slices
	}
	buf := h.getBuf()
	defer h.putBuf(buf)
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, &ctxReader{ctx: ctx, r: src}, *buf)
	finished := false
	if err == nil && finish != nil {
		mtime := h.cfg.Now()
		finished = f.DeferAttrs(client.AttrChange{Mtime: &mtime}, finish(n, mtime))
	}
	if err == nil {
		err = f.Sync()
	}
	var fi *client.FileInfo
	if err == nil && !finished {
		// The caller needs the file's attributes only to record them
		// itself; finish was given the size and mtime.
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		h.discard(ctx, p)
		return nil, err
	}
	return &written{path: p, fi: fi, finished: finished}, nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// discard removes a hidden file after a failure, even if ctx has ended.
func (h *Handler) discard(ctx context.Context, p string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := h.c.Remove(ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.log.Warn("s3: remove abandoned upload file", "path", p, "err", err)
	}
}

// setMeta stores m as the S3 attributes of the file fi.
func (h *Handler) setMeta(ctx context.Context, fi *client.FileInfo, m *objectMeta) error {
	return h.c.Inodes().SetXattr(ctx, fi.Inode(), metaXattr, m.encode(), 0)
}

// publish renames the hidden file w to key, making the parent
// directories it needs. On failure w is removed.
func (h *Handler) publish(ctx context.Context, w *written, bucket, key string) error {
	dst := objectPath(bucket, key)
	var err error
	for try := 0; try < 3; try++ {
		if err = h.c.Rename(ctx, w.path, dst); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		// A parent directory is missing (or was removed by a concurrent
		// DELETE of its last object): make the parents and try again.
		if err = h.mkdirParents(ctx, bucket, key); err != nil {
			break
		}
	}
	if err != nil {
		h.discard(ctx, w.path)
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist) {
			return errKeyConflict
		}
		return objectErr(err, errNoSuchBucket)
	}
	return nil
}

// mkdirParents makes the directories of key's prefix, without ever
// making the bucket itself.
func (h *Handler) mkdirParents(ctx context.Context, bucket, key string) error {
	segs := strings.Split(key, "/")
	p := bucketPath(bucket)
	for _, s := range segs[:len(segs)-1] {
		p += "/" + s
		if err := h.c.Mkdir(ctx, p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			if errors.Is(err, syscall.ENOTDIR) {
				return errKeyConflict
			}
			return err
		}
	}
	return nil
}

// removeEmptyParents removes key's parent directories that its removal
// left empty, deepest first, as S3 prefixes vanish with their last key.
func (h *Handler) removeEmptyParents(ctx context.Context, bucket, key string) {
	for dir := path.Dir(key); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if err := h.c.Remove(ctx, objectPath(bucket, dir)); err != nil {
			return // not empty (or already gone): stop there
		}
	}
}

func hiddenName(kind string) string { return kind + "-" + newRequestID() + newRequestID() }

func (h *Handler) putObject(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	m := newMeta()
	if aerr := m.setHeadersFrom(r.Header); aerr != nil {
		return aerr
	}
	b, aerr := newBody(r, rq.signer, h.cfg.MaxObjectSize)
	if aerr != nil {
		return aerr
	}
	// record completes the metadata once the body is read: its MD5 and
	// checksums, for the file's size and mtime then.
	record := func(size, mtimeNano int64) {
		m.setETagAt(b.etag(), size, mtimeNano)
		for k, v := range b.checksums() {
			m.fields.Set(k, v)
		}
	}
	// The metadata commits with the last bytes when it can, else on its
	// own.
	wr, err := h.writeHidden(ctx, rq.bucket, "", hiddenName("put"), b, func(size int64, mtime time.Time) map[string][]byte {
		record(size, mtime.UnixNano())
		return map[string][]byte{metaXattr: m.encode()}
	})
	if err != nil {
		return err
	}
	for k, v := range b.checksums() {
		w.Header().Set(k, v)
	}
	if !wr.finished {
		record(wr.fi.Size(), wr.fi.Attr().GetMtimeUnixNano())
		if err := h.setMeta(ctx, wr.fi, m); err != nil {
			h.discard(ctx, wr.path)
			return err
		}
	}
	if err := h.publish(ctx, wr, rq.bucket, rq.key); err != nil {
		return err
	}
	w.Header().Set("ETag", b.etag())
	w.WriteHeader(http.StatusOK)
	return nil
}

// object is an object found by statObject.
type object struct {
	fi   *client.FileInfo
	meta *objectMeta
	etag string
}

// statObject returns the object key of bucket, or NoSuchKey (NoSuchBucket).
func (h *Handler) statObject(ctx context.Context, bucket, key string) (*object, error) {
	fi, v, err := h.c.StatXattr(ctx, objectPath(bucket, key), metaXattr)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, h.missingObject(ctx, bucket, errNoSuchKey)
		}
		return nil, err
	}
	if fi.Attr().GetType() != masterpb.FileType_FILE_TYPE_REGULAR {
		return nil, errNoSuchKey
	}
	m := parseMeta(v)
	return &object{fi: fi, meta: m, etag: m.etag(fi)}, nil
}

// conditions are the If-* preconditions of a GET, HEAD or copy source.
type conditions struct {
	ifMatch, ifNoneMatch               string
	ifModifiedSince, ifUnmodifiedSince string
}

// check evaluates c against o as S3 does: If-Match before
// If-Unmodified-Since (412), If-None-Match before If-Modified-Since (304
// for reads, 412 for copy sources).
func (c conditions) check(o *object, copySource bool) error {
	mtime := o.fi.ModTime().Truncate(time.Second)
	if c.ifMatch != "" {
		if !etagMatches(c.ifMatch, o.etag) {
			return errPreconditionFailed
		}
	} else if t, err := http.ParseTime(c.ifUnmodifiedSince); err == nil && mtime.After(t) {
		return errPreconditionFailed
	}
	notModified := errorf("NotModified", http.StatusNotModified, "Not Modified")
	if copySource {
		notModified = errPreconditionFailed
	}
	if c.ifNoneMatch != "" {
		if etagMatches(c.ifNoneMatch, o.etag) {
			return notModified
		}
	} else if t, err := http.ParseTime(c.ifModifiedSince); err == nil && !mtime.After(t) {
		return notModified
	}
	return nil
}

// etagMatches reports whether the If-Match style list matches etag.
func etagMatches(list, etag string) bool {
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimPrefix(strings.TrimSpace(e), "W/")
		if e == "*" || strings.Trim(e, `"`) == strings.Trim(etag, `"`) {
			return true
		}
	}
	return false
}

// parseRange parses a single "bytes=" range against size. ok is false when
// the header asks for no (single, valid) range: the whole object is sent.
func parseRange(spec string, size int64) (off, n int64, ok bool, aerr *apiError) {
	spec, found := strings.CutPrefix(spec, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, nil
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, nil
	}
	if first == "" {
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return 0, 0, false, nil
		}
		if k == 0 {
			return 0, 0, false, errInvalidRange
		}
		k = min(k, size)
		return size - k, k, true, nil
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, 0, false, nil
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, 0, false, nil
		}
		b = min(b, size-1)
	}
	if a >= size {
		return 0, 0, false, errInvalidRange
	}
	return a, b - a + 1, true, nil
}

// responseOverrides are the query parameters of a signed GET that replace
// response headers.
var responseOverrides = map[string]string{
	"response-content-type":        "Content-Type",
	"response-content-language":    "Content-Language",
	"response-expires":             "Expires",
	"response-cache-control":       "Cache-Control",
	"response-content-disposition": "Content-Disposition",
	"response-content-encoding":    "Content-Encoding",
}

// getObject answers GetObject (withBody) and HeadObject.
func (h *Handler) getObject(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request, withBody bool) error {
	o, err := h.statObject(ctx, rq.bucket, rq.key)
	if err != nil {
		return err
	}
	hdr := w.Header()
	hdr.Set("ETag", o.etag)
	hdr.Set("Last-Modified", o.fi.ModTime().UTC().Format(http.TimeFormat))
	cond := conditions{r.Header.Get("If-Match"), r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since"), r.Header.Get("If-Unmodified-Since")}
	if err := cond.check(o, false); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotModified {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		return err
	}
	size := o.fi.Size()
	off, n, ranged := int64(0), size, false
	if q := r.URL.Query(); q.Has("partNumber") {
		// One part of a multipart object, as parallel downloaders ask
		// for them; the whole object is part 1 of an ordinary one.
		if r.Header.Get("Range") != "" {
			return invalidArgument("Cannot specify both Range header and partNumber query parameter.")
		}
		pn, aerr := parsePartNumber(q.Get("partNumber"))
		if aerr != nil {
			return aerr
		}
		poff, plen, count, known, aerr := o.meta.part(pn, o.fi)
		switch {
		case aerr != nil:
			return aerr
		case !known:
			return errNotImplemented
		}
		if count > 1 {
			hdr.Set("X-Amz-Mp-Parts-Count", strconv.Itoa(count))
			off, n, ranged = poff, plen, plen > 0
		}
	} else if spec := r.Header.Get("Range"); spec != "" {
		var aerr *apiError
		off, n, ranged, aerr = parseRange(spec, size)
		if aerr != nil {
			hdr.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			return aerr
		}
		if !ranged {
			off, n = 0, size
		}
	}
	o.meta.writeHeaders(hdr)
	if q := r.URL.Query(); rq.signer != nil {
		for p, hname := range responseOverrides {
			if v := q.Get(p); v != "" {
				hdr.Set(hname, v)
			}
		}
	}
	if !ranged && strings.EqualFold(r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		for k, v := range o.meta.checksums() {
			hdr.Set(k, v)
		}
	}
	hdr.Set("Accept-Ranges", "bytes")
	hdr.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if ranged {
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
		status = http.StatusPartialContent
	}
	if !withBody || n == 0 {
		w.WriteHeader(status)
		return nil
	}
	f, err := h.c.Open(ctx, objectPath(rq.bucket, rq.key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errNoSuchKey
		}
		return err
	}
	defer f.Close()
	w.WriteHeader(status)
	buf := h.getBuf()
	defer h.putBuf(buf)
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, io.NewSectionReader(f, off, n), *buf); err != nil {
		// The status is sent: all that is left is to cut the response
		// short, which the client sees as a length mismatch.
		h.log.Warn("s3: GET interrupted", "bucket", rq.bucket, "key", rq.key, "request", rq.id, "err", err)
	}
	return nil
}

func (h *Handler) deleteObject(ctx context.Context, w http.ResponseWriter, rq *request) error {
	if err := h.deleteKey(ctx, rq.bucket, rq.key); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteKey removes an object. A missing key is not an error (S3's DELETE
// is idempotent), a missing bucket is.
func (h *Handler) deleteKey(ctx context.Context, bucket, key string) error {
	p := objectPath(bucket, key)
	fi, err := h.c.Lstat(ctx, p)
	if err == nil && fi.IsDir() {
		return nil // a prefix, not an object
	}
	if err == nil {
		err = h.c.Remove(ctx, p)
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return h.checkBucket(ctx, bucket)
	}
	if err != nil {
		return err
	}
	h.removeEmptyParents(ctx, bucket, key)
	return nil
}

// maxDeleteBody bounds a DeleteObjects request body (1,000 keys of up to
// 1,024 bytes, XML-escaped).
const maxDeleteBody = 8 << 20

func (h *Handler) deleteObjects(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	b, aerr := newBody(r, rq.signer, maxDeleteBody)
	if aerr != nil {
		return aerr
	}
	data, err := io.ReadAll(b)
	if err != nil {
		return err
	}
	var req deleteRequest
	if err := xmlUnmarshal(data, &req); err != nil || len(req.Objects) > 1000 || len(req.Objects) == 0 {
		return errMalformedXML
	}
	if err := h.checkBucket(ctx, rq.bucket); err != nil {
		return err
	}
	res := deleteResult{NS: s3NS}
	for _, o := range req.Objects {
		var err error
		if aerr := checkKey(o.Key); aerr != nil {
			err = aerr
		} else if o.VersionID != "" && o.VersionID != "null" {
			err = errorf("NoSuchVersion", http.StatusNotFound, "The specified version does not exist.")
		} else {
			err = h.deleteKey(ctx, rq.bucket, o.Key)
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				ae = objectErr(err, errInternal)
			}
			res.Errors = append(res.Errors, deleteError{Key: o.Key, Code: ae.Code, Message: ae.Message})
			continue
		}
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deletedObject{Key: o.Key})
		}
	}
	return writeXML(w, res)
}

// copySource parses x-amz-copy-source: "[/]bucket/key[?versionId=…]",
// URL-encoded.
func copySource(v string) (bucket, key string, aerr *apiError) {
	v, query, _ := strings.Cut(v, "?")
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil || (q.Get("versionId") != "" && q.Get("versionId") != "null") {
			return "", "", errorf("NoSuchVersion", http.StatusNotFound, "The specified version does not exist.")
		}
	}
	s, err := url.PathUnescape(v)
	if err != nil {
		return "", "", invalidArgument("Invalid copy source encoding.")
	}
	bucket, key, _ = strings.Cut(strings.TrimPrefix(s, "/"), "/")
	if !validBucketName(bucket) {
		return "", "", errInvalidBucketName
	}
	if aerr := checkKey(key); aerr != nil {
		return "", "", aerr
	}
	return bucket, key, nil
}

// openCopySource finds the copy source of r and checks its conditions.
func (h *Handler) openCopySource(ctx context.Context, r *http.Request) (bucket, key string, o *object, err error) {
	bucket, key, aerr := copySource(r.Header.Get("X-Amz-Copy-Source"))
	if aerr != nil {
		return "", "", nil, aerr
	}
	if o, err = h.statObject(ctx, bucket, key); err != nil {
		return "", "", nil, err
	}
	cond := conditions{
		r.Header.Get("X-Amz-Copy-Source-If-Match"), r.Header.Get("X-Amz-Copy-Source-If-None-Match"),
		r.Header.Get("X-Amz-Copy-Source-If-Modified-Since"), r.Header.Get("X-Amz-Copy-Source-If-Unmodified-Since"),
	}
	if err := cond.check(o, true); err != nil {
		return "", "", nil, err
	}
	return bucket, key, o, nil
}

// copyData copies n bytes at off of the object at src to a new hidden file
// of bucket, returning it and the copy's MD5 ETag.
func (h *Handler) copyData(ctx context.Context, src string, off, n int64, bucket, upload, kind string) (*written, string, error) {
	f, err := h.c.Open(ctx, src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", errNoSuchKey
		}
		return nil, "", err
	}
	defer f.Close()
	md := &hashingReader{r: io.NewSectionReader(f, off, n), h: newMD5()}
	wr, err := h.writeHidden(ctx, bucket, upload, hiddenName(kind), md, nil)
	if err != nil {
		return nil, "", err
	}
	return wr, md.etag(), nil
}

func (h *Handler) copyObject(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	sb, sk, src, err := h.openCopySource(ctx, r)
	if err != nil {
		return err
	}
	directive := r.Header.Get("X-Amz-Metadata-Directive")
	if directive != "" && directive != "COPY" && directive != "REPLACE" {
		return invalidArgument("Unknown metadata directive.")
	}
	m := parseMeta(src.meta.encode())
	if directive == "REPLACE" {
		if aerr := m.setHeadersFrom(r.Header); aerr != nil {
			return aerr
		}
	}
	if sb == rq.bucket && sk == rq.key {
		if directive != "REPLACE" {
			return invalidRequest("This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.")
		}
		// Only the metadata changes: no bytes move.
		m.setETag(src.etag, src.fi)
		if err := h.setMeta(ctx, src.fi, m); err != nil {
			return err
		}
		return writeXML(w, copyObjectResult{NS: s3NS, ETag: src.etag, LastModified: xmlTime(src.fi.ModTime())})
	}
	if err := h.checkBucket(ctx, rq.bucket); err != nil {
		return err
	}
	wr, etag, err := h.copyData(ctx, objectPath(sb, sk), 0, src.fi.Size(), rq.bucket, "", "copy")
	if err != nil {
		return err
	}
	if strings.Contains(src.etag, "-") {
		etag = src.etag // a multipart object keeps its ETag, as in S3
	}
	m.setETag(etag, wr.fi)
	if err := h.setMeta(ctx, wr.fi, m); err != nil {
		h.discard(ctx, wr.path)
		return err
	}
	if err := h.publish(ctx, wr, rq.bucket, rq.key); err != nil {
		return err
	}
	return writeXML(w, copyObjectResult{NS: s3NS, ETag: etag, LastModified: xmlTime(wr.fi.ModTime())})
}
