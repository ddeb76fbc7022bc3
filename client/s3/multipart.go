package s3

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairnfs/cairn/client"
)

const (
	maxPartNumber = 10000
	// maxCompleteBody bounds a CompleteMultipartUpload body (10,000 parts).
	maxCompleteBody = 2 << 20
	// uploadIDLen is the length of the upload IDs the gateway makes: hex
	// digits only, so an ID can never name anything but its directory.
	uploadIDLen = 32
)

func validUploadID(id string) bool {
	if len(id) != uploadIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (h *Handler) createUpload(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	m := newMeta()
	if aerr := m.setHeadersFrom(r.Header); aerr != nil {
		return aerr
	}
	m.fields.Set(fieldKey, rq.key)
	m.fields.Set(fieldInit, h.cfg.Now().UTC().Format(time.RFC3339Nano))
	id := newRequestID() + newRequestID()
	dir := hiddenPath(rq.bucket, id)
	err := h.c.Mkdir(ctx, dir, 0o700)
	if errors.Is(err, fs.ErrNotExist) {
		if err := h.checkBucket(ctx, rq.bucket); err != nil {
			return err
		}
		if err := h.c.MkdirAll(ctx, dir, 0o700); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := h.c.SetXattr(ctx, dir, metaXattr, m.encode(), 0); err != nil {
		h.c.RemoveAll(context.WithoutCancel(ctx), dir)
		return err
	}
	return writeXML(w, initiateMultipartUploadResult{NS: s3NS, Bucket: rq.bucket, Key: rq.key, UploadID: id})
}

// upload returns the metadata of upload id of key, or NoSuchUpload.
func (h *Handler) upload(ctx context.Context, bucket, key, id string) (*objectMeta, error) {
	if !validUploadID(id) {
		return nil, errNoSuchUpload
	}
	v, err := h.c.GetXattr(ctx, hiddenPath(bucket, id), metaXattr)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODATA) {
		return nil, h.missingObject(ctx, bucket, errNoSuchUpload)
	}
	if err != nil {
		return nil, err
	}
	m := parseMeta(v)
	if m.fields.Get(fieldKey) != key {
		return nil, errNoSuchUpload
	}
	return m, nil
}

func parsePartNumber(s string) (int, *apiError) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPartNumber {
		return 0, invalidArgument("Part number must be an integer between 1 and 10000, inclusive.")
	}
	return n, nil
}

// uploadPart answers UploadPart and UploadPartCopy.
func (h *Handler) uploadPart(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	q := r.URL.Query()
	n, aerr := parsePartNumber(q.Get("partNumber"))
	if aerr != nil {
		return aerr
	}
	id := q.Get("uploadId")
	if _, err := h.upload(ctx, rq.bucket, rq.key, id); err != nil {
		return err
	}
	var (
		wr   *written
		etag string
		m    = newMeta()
	)
	copying := r.Header.Get("X-Amz-Copy-Source") != ""
	if copying {
		sb, sk, src, err := h.openCopySource(ctx, r)
		if err != nil {
			return err
		}
		off, size := int64(0), src.fi.Size()
		if spec := r.Header.Get("X-Amz-Copy-Source-Range"); spec != "" {
			var ok bool
			var aerr *apiError
			off, size, ok, aerr = parseRange(spec, src.fi.Size())
			if aerr != nil || !ok || strings.HasPrefix(strings.TrimPrefix(spec, "bytes="), "-") {
				return invalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy.")
			}
		}
		if wr, etag, err = h.copyData(ctx, objectPath(sb, sk), off, size, rq.bucket, id, "part"); err != nil {
			return err
		}
	} else {
		b, aerr := newBody(r, rq.signer, h.cfg.MaxObjectSize)
		if aerr != nil {
			return aerr
		}
		var err error
		if wr, err = h.writeHidden(ctx, rq.bucket, id, hiddenName("part"), b, nil); err != nil {
			return err
		}
		etag = b.etag()
		for k, v := range b.checksums() {
			w.Header().Set(k, v)
		}
	}
	m.setETag(etag, wr.fi)
	if err := h.setMeta(ctx, wr.fi, m); err != nil {
		h.discard(ctx, wr.path)
		return err
	}
	if err := h.c.Rename(ctx, wr.path, hiddenPath(rq.bucket, id, strconv.Itoa(n))); err != nil {
		h.discard(ctx, wr.path)
		return objectErr(err, errNoSuchUpload)
	}
	if copying {
		return writeXML(w, copyPartResult{NS: s3NS, ETag: etag, LastModified: xmlTime(wr.fi.ModTime())})
	}
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
	return nil
}

// part is one uploaded part.
type part struct {
	n    int
	fi   *client.FileInfo
	etag string
}

// parts returns the parts of upload id, by part number. With etags set
// it reads each part's ETag.
func (h *Handler) parts(ctx context.Context, bucket, id string, etags bool) ([]part, error) {
	entries, err := h.c.ReadDir(ctx, hiddenPath(bucket, id))
	if err != nil {
		return nil, objectErr(err, errNoSuchUpload)
	}
	var out []part
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		fi := e.(*client.FileInfo)
		if err != nil || n < 1 || n > maxPartNumber || strconv.Itoa(n) != e.Name() || fi.IsDir() {
			continue // a part still being written, or not ours
		}
		out = append(out, part{n: n, fi: fi})
	}
	slices.SortFunc(out, func(a, b part) int { return a.n - b.n })
	if etags {
		for i := range out {
			v, err := h.c.Inodes().GetXattr(ctx, out[i].fi.Inode(), metaXattr)
			if err != nil && !errors.Is(err, syscall.ENODATA) {
				return nil, objectErr(err, errInvalidPart)
			}
			out[i].etag = parseMeta(v).etag(out[i].fi)
		}
	}
	return out, nil
}

func (h *Handler) listParts(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	q := r.URL.Query()
	id := q.Get("uploadId")
	if _, err := h.upload(ctx, rq.bucket, rq.key, id); err != nil {
		return err
	}
	max, marker := 1000, 0
	if v := q.Get("max-parts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return invalidArgument("max-parts must be a non-negative integer.")
		}
		max = min(n, 1000)
	}
	if v := q.Get("part-number-marker"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return invalidArgument("part-number-marker must be a non-negative integer.")
		}
		marker = n
	}
	all, err := h.parts(ctx, rq.bucket, id, true)
	if err != nil {
		return err
	}
	res := listPartsResult{NS: s3NS, Bucket: rq.bucket, Key: rq.key, UploadID: id, Initiator: gatewayOwner, Owner: gatewayOwner, StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: max}
	for _, p := range all {
		if p.n <= marker {
			continue
		}
		if len(res.Parts) == max {
			res.IsTruncated = true
			break
		}
		res.Parts = append(res.Parts, partInfo{PartNumber: p.n, LastModified: xmlTime(p.fi.ModTime()), ETag: p.etag, Size: p.fi.Size()})
		res.NextPartNumberMarker = p.n
	}
	return writeXML(w, res)
}

func (h *Handler) abortUpload(ctx context.Context, w http.ResponseWriter, rq *request, id string) error {
	if _, err := h.upload(ctx, rq.bucket, rq.key, id); err != nil {
		return err
	}
	if err := h.c.RemoveAll(ctx, hiddenPath(rq.bucket, id)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// completeUpload composes the listed parts into the object: the parts'
// slices move into one file (client.Client.Concat, no bytes copied),
// which gets the upload's metadata and is renamed into place.
func (h *Handler) completeUpload(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request, id string) error {
	um, err := h.upload(ctx, rq.bucket, rq.key, id)
	if err != nil {
		return err
	}
	b, aerr := newBody(r, rq.signer, maxCompleteBody)
	if aerr != nil {
		return aerr
	}
	b.ignoreChecksums()
	data, err := io.ReadAll(b)
	if err != nil {
		return err
	}
	var req completeMultipartUpload
	if err := xmlUnmarshal(data, &req); err != nil || len(req.Parts) == 0 || len(req.Parts) > maxPartNumber {
		return errMalformedXML
	}
	for i, p := range req.Parts {
		if p.PartNumber < 1 || p.PartNumber > maxPartNumber {
			return errInvalidPart
		}
		if i > 0 && p.PartNumber <= req.Parts[i-1].PartNumber {
			return errInvalidPartOrder
		}
	}
	have, err := h.parts(ctx, rq.bucket, id, true)
	if err != nil {
		return err
	}
	byNum := map[int]part{}
	for _, p := range have {
		byNum[p.n] = p
	}
	sums := md5.New()
	srcs := make([]string, 0, len(req.Parts))
	sizes := make([]int64, 0, len(req.Parts))
	for i, rp := range req.Parts {
		p, ok := byNum[rp.PartNumber]
		if !ok || strings.Trim(rp.ETag, `" `) != strings.Trim(p.etag, `"`) {
			return errInvalidPart
		}
		if i < len(req.Parts)-1 && p.fi.Size() < h.cfg.MinPartSize {
			return errEntityTooSmall
		}
		d, err := hex.DecodeString(strings.Trim(p.etag, `"`))
		if err != nil {
			return errInvalidPart // a part changed behind our back
		}
		sums.Write(d)
		sizes = append(sizes, p.fi.Size())
		srcs = append(srcs, hiddenPath(rq.bucket, id, strconv.Itoa(p.n)))
	}
	etag := fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(sums.Sum(nil)), len(req.Parts))
	// Concat consumes the parts: refuse a key that cannot be published
	// before, so that a refused Complete leaves the upload as it was.
	if err := h.mkdirParents(ctx, rq.bucket, rq.key); err != nil {
		return objectErr(err, errNoSuchBucket)
	}
	if fi, err := h.c.Lstat(ctx, objectPath(rq.bucket, rq.key)); err == nil && fi.IsDir() {
		return errKeyConflict
	}
	dst := hiddenPath(rq.bucket, id, hiddenName("complete"))
	if err := h.c.Concat(ctx, dst, srcs); err != nil {
		return objectErr(err, errNoSuchUpload)
	}
	fi, err := h.c.Stat(ctx, dst)
	if err != nil {
		return err
	}
	m := newMeta()
	for k, vs := range um.fields {
		if isStoredHeader(k) {
			m.fields[k] = vs
		}
	}
	m.setETag(etag, fi)
	m.setParts(sizes)
	if err := h.setMeta(ctx, fi, m); err != nil {
		return err
	}
	if err := h.publish(ctx, &written{path: dst, fi: fi}, rq.bucket, rq.key); err != nil {
		return err
	}
	if err := h.c.RemoveAll(ctx, hiddenPath(rq.bucket, id)); err != nil {
		h.log.Warn("s3: remove completed upload", "bucket", rq.bucket, "upload", id, "err", err)
	}
	return writeXML(w, completeMultipartUploadResult{NS: s3NS, Location: "/" + rq.bucket + "/" + rq.key, Bucket: rq.bucket, Key: rq.key, ETag: etag})
}

// listUploads answers ListMultipartUploads.
func (h *Handler) listUploads(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	q := r.URL.Query()
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	keyMarker, idMarker := q.Get("key-marker"), q.Get("upload-id-marker")
	max := 1000
	if v := q.Get("max-uploads"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return invalidArgument("max-uploads must be a non-negative integer.")
		}
		max = min(n, 1000)
	}
	entries, err := h.c.ReadDir(ctx, hiddenPath(rq.bucket))
	if errors.Is(err, fs.ErrNotExist) {
		if err := h.checkBucket(ctx, rq.bucket); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	type up struct{ key, id, init string }
	var ups []up
	for _, e := range entries {
		if !e.IsDir() || !validUploadID(e.Name()) {
			continue
		}
		v, err := h.c.Inodes().GetXattr(ctx, e.(*client.FileInfo).Inode(), metaXattr)
		if err != nil {
			continue // removed since, or not an upload
		}
		m := parseMeta(v)
		k := m.fields.Get(fieldKey)
		if k == "" || !strings.HasPrefix(k, prefix) {
			continue
		}
		if k < keyMarker || k == keyMarker && (idMarker == "" || e.Name() <= idMarker) {
			continue
		}
		ups = append(ups, up{k, e.Name(), m.fields.Get(fieldInit)})
	}
	slices.SortFunc(ups, func(a, b up) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	res := listMultipartUploadsResult{NS: s3NS, Bucket: rq.bucket, KeyMarker: keyMarker, UploadIDMarker: idMarker, Prefix: prefix, Delimiter: delim, MaxUploads: max}
	lastCP := ""
	n := 0
	for _, u := range ups {
		cp := ""
		if delim != "" {
			if i := strings.Index(u.key[len(prefix):], delim); i >= 0 {
				cp = u.key[:len(prefix)+i+len(delim)]
			}
		}
		if cp != "" && cp == lastCP {
			continue
		}
		if n == max {
			res.IsTruncated = true
			break
		}
		n++
		if cp != "" {
			lastCP = cp
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: cp})
			res.NextKeyMarker, res.NextUploadIDMarker = cp, ""
			continue
		}
		t, _ := time.Parse(time.RFC3339Nano, u.init)
		res.Uploads = append(res.Uploads, uploadInfo{Key: u.key, UploadID: u.id, Initiator: gatewayOwner, Owner: gatewayOwner, StorageClass: "STANDARD", Initiated: xmlTime(t)})
		res.NextKeyMarker, res.NextUploadIDMarker = u.key, u.id
	}
	return writeXML(w, res)
}
