package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/cairnfs/cairn/client"
)

// Handler serves the S3 API over a client.Client. It is safe for
// concurrent use; it starts no goroutine that outlives a request.
type Handler struct {
	c     *client.Client
	cfg   Config
	creds map[string]string // access key -> secret
	log   *slog.Logger
	bufs  sync.Pool // *[]byte of copyBufSize, for moving object bytes
}

// copyBufSize is the buffer one request moves object bytes with.
const copyBufSize = 1 << 20

// NewHandler returns a Handler serving cl's namespace. cfg is validated
// and defaulted (see Config). cl stays the caller's to close, after the
// Handler's last request. Dial cl with ClientConfig.NoSymlinks, as Server
// does, so that a symlink made through a mount cannot make a key resolve
// outside its bucket.
func NewHandler(cl *client.Client, cfg Config) (*Handler, error) {
	if cl == nil {
		return nil, errors.New("s3: nil client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{c: cl, cfg: cfg, creds: map[string]string{}, log: cfg.Logger}
	for _, cr := range cfg.Credentials {
		h.creds[cr.AccessKey] = cr.SecretKey
	}
	h.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	return h, nil
}

// request is one S3 request being served.
type request struct {
	id     string
	bucket string
	key    string
	signer *signer
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rq := &request{id: newRequestID()}
	w.Header().Set("X-Amz-Request-Id", rq.id)
	w.Header().Set("X-Amz-Id-2", rq.id)
	w.Header().Set("Server", "Cairn")
	err := h.serve(w, r, rq)
	if err == nil {
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = objectErr(err, errInternal)
	}
	if ae.Status >= 500 {
		h.log.Error("s3 request failed", "method", r.Method, "path", r.URL.Path, "request", rq.id, "err", err)
	} else {
		h.log.Debug("s3 request refused", "method", r.Method, "path", r.URL.Path, "request", rq.id, "code", ae.Code, "err", err)
	}
	h.writeError(w, r, rq, ae)
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails
	return strings.ToUpper(hex.EncodeToString(b))
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, rq *request, ae *apiError) {
	w.Header().Del("ETag")
	w.Header().Del("Last-Modified")
	if r.Method == http.MethodHead {
		w.WriteHeader(ae.Status)
		return
	}
	body, err := xml.Marshal(errorResponse{Code: ae.Code, Message: ae.Message, Resource: r.URL.Path, RequestID: rq.id, HostID: rq.id})
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", fmt.Sprint(len(xml.Header)+len(body)))
	w.WriteHeader(ae.Status)
	io.WriteString(w, xml.Header)
	w.Write(body)
}

// writeXML answers 200 with v as the XML body.
func writeXML(w http.ResponseWriter, v any) error {
	body, err := xml.Marshal(v)
	if err != nil {
		return fmt.Errorf("s3: encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", fmt.Sprint(len(xml.Header)+len(body)))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, xml.Header)
	w.Write(body)
	return nil
}

// subresources are the query parameters that turn a request on a bucket
// or an object into one on a sub-resource of it: S3's configurations
// (acl, policy, versioning, …) and object operations other than the
// plain GET, PUT and DELETE. The gateway serves a few read-only ones (see
// serveSubresource) and answers NotImplemented to the others, which must
// never be taken for a request on the bucket or object itself: PUT
// /b/k?retention is not an upload that would overwrite k, nor DELETE
// /b/k?tagging a deletion of k.
var subresources = []string{
	"acl", "policy", "policyStatus", "cors", "lifecycle", "tagging", "website", "logging", "notification",
	"replication", "encryption", "object-lock", "retention", "legal-hold", "torrent", "versioning",
	"requestPayment", "accelerate", "analytics", "inventory", "metrics", "intelligent-tiering",
	"ownershipControls", "publicAccessBlock", "restore", "select", "versions", "attributes", "location",
	"renameObject", "session", "metadataTable", "metadataConfiguration",
}

// subresource returns the sub-resource q names, if any.
func subresource(q url.Values) (string, bool) {
	for _, sub := range subresources {
		if q.Has(sub) {
			return sub, true
		}
	}
	return "", false
}

// serveSubresource answers a request on a sub-resource of the bucket (or
// object) of rq. Only the reads clients make routinely, and that have an
// answer true of every bucket and object of the gateway, are served: the
// location, an ACL granting the owner full control, an empty versioning
// configuration (versioning was never enabled) and an empty tag set.
func (h *Handler) serveSubresource(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request, sub string) error {
	notImplemented := errorf("NotImplemented", http.StatusNotImplemented, "The "+sub+" sub-resource is not implemented.")
	if r.Method != http.MethodGet || rq.bucket == "" {
		return notImplemented
	}
	if !validBucketName(rq.bucket) {
		return errInvalidBucketName
	}
	if rq.key == "" {
		switch sub {
		case "location":
			return h.bucketLocation(ctx, w, rq)
		case "acl", "versioning", "tagging":
			if err := h.checkBucket(ctx, rq.bucket); err != nil {
				return err
			}
		default:
			return notImplemented
		}
	} else {
		if aerr := checkKey(rq.key); aerr != nil {
			return aerr
		}
		switch sub {
		case "acl", "tagging":
			if _, err := h.statObject(ctx, rq.bucket, rq.key); err != nil {
				return err
			}
		default:
			return notImplemented
		}
	}
	switch sub {
	case "acl":
		return writeXML(w, ownerFullControl())
	case "versioning":
		return writeXML(w, versioningConfiguration{NS: s3NS})
	default: // tagging
		return writeXML(w, tagging{NS: s3NS})
	}
}

// serve authenticates r and routes it to its operation.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, rq *request) error {
	s, aerr := h.authenticate(r)
	if aerr != nil {
		return aerr
	}
	rq.signer = s
	p := strings.TrimPrefix(r.URL.Path, "/")
	if b, ok := h.virtualHost(r.Host); ok {
		rq.bucket, rq.key = b, p
	} else {
		rq.bucket, rq.key, _ = strings.Cut(p, "/")
	}
	q := r.URL.Query()
	ctx := r.Context()
	if sub, ok := subresource(q); ok {
		return h.serveSubresource(ctx, w, r, rq, sub)
	}
	if rq.bucket == "" {
		if r.Method != http.MethodGet {
			return errMethodNotAllowed
		}
		return h.listBuckets(ctx, w)
	}
	if !validBucketName(rq.bucket) {
		return errInvalidBucketName
	}
	if rq.key == "" {
		switch r.Method {
		case http.MethodPut:
			if len(q) > 0 {
				return errNotImplemented // a bucket configuration (versioning, …)
			}
			return h.createBucket(ctx, w, rq)
		case http.MethodHead:
			return h.headBucket(ctx, w, rq)
		case http.MethodDelete:
			return h.deleteBucket(ctx, w, rq)
		case http.MethodPost:
			if q.Has("delete") {
				return h.deleteObjects(ctx, w, r, rq)
			}
		case http.MethodGet:
			if q.Has("uploads") {
				return h.listUploads(ctx, w, r, rq)
			}
			return h.listObjects(ctx, w, r, rq)
		}
		return errMethodNotAllowed
	}
	if aerr := checkKey(rq.key); aerr != nil {
		return aerr
	}
	upload := q.Get("uploadId")
	switch r.Method {
	case http.MethodPut:
		switch {
		case q.Has("partNumber") || q.Has("uploadId"):
			return h.uploadPart(ctx, w, r, rq)
		case r.Header.Get("X-Amz-Copy-Source") != "":
			return h.copyObject(ctx, w, r, rq)
		}
		return h.putObject(ctx, w, r, rq)
	case http.MethodGet:
		if upload != "" {
			return h.listParts(ctx, w, r, rq)
		}
		return h.getObject(ctx, w, r, rq, true)
	case http.MethodHead:
		return h.getObject(ctx, w, r, rq, false)
	case http.MethodDelete:
		if upload != "" {
			return h.abortUpload(ctx, w, rq, upload)
		}
		return h.deleteObject(ctx, w, rq)
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return h.createUpload(ctx, w, r, rq)
		case upload != "":
			return h.completeUpload(ctx, w, r, rq, upload)
		}
	}
	return errMethodNotAllowed
}

// virtualHost returns the bucket a virtual-hosted-style Host names.
func (h *Handler) virtualHost(host string) (string, bool) {
	if h.cfg.Domain == "" {
		return "", false
	}
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	b, ok := strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(h.cfg.Domain))
	return b, ok && b != ""
}

// checkBucket returns nil if bucket exists, NoSuchBucket if not.
func (h *Handler) checkBucket(ctx context.Context, bucket string) error {
	fi, err := h.c.Stat(ctx, bucketPath(bucket))
	if err != nil {
		return objectErr(err, errNoSuchBucket)
	}
	if !fi.IsDir() {
		return errNoSuchBucket
	}
	return nil
}

// missingObject is the error for an object that was not found: NoSuchKey,
// or NoSuchBucket if the bucket is missing too.
func (h *Handler) missingObject(ctx context.Context, bucket string, missing *apiError) error {
	if err := h.checkBucket(ctx, bucket); err != nil {
		return err
	}
	return missing
}

func (h *Handler) getBuf() *[]byte  { return h.bufs.Get().(*[]byte) }
func (h *Handler) putBuf(b *[]byte) { h.bufs.Put(b) }
