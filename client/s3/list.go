package s3

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// maxListKeys is S3's largest page.
const maxListKeys = 1000

// listItem is one result of a listing: an object or a common prefix.
type listItem struct {
	key    string
	prefix bool
	fi     *client.FileInfo
}

// lister walks a bucket's tree in S3's key order (UTF-8 byte order) and
// collects up to max items after marker that begin with prefix, rolling
// keys up to common prefixes at delim. The order comes from visiting each
// directory's entries sorted by name, a directory's name taken with its
// trailing '/', since that is how its keys begin.
type lister struct {
	h                     *Handler
	bucket                string
	prefix, delim, marker string
	max                   int
	items                 []listItem
	truncated             bool
	lastPrefix            string
	done                  bool
}

func (l *lister) run(ctx context.Context) error {
	start := l.prefix[:strings.LastIndex(l.prefix, "/")+1]
	return l.walk(ctx, start)
}

// emit adds an item, or notes that there are more than max.
func (l *lister) emit(it listItem) {
	if len(l.items) == l.max {
		l.truncated, l.done = true, true
		return
	}
	l.items = append(l.items, it)
}

// rollup returns the common prefix key rolls up to, or "".
func (l *lister) rollup(key string) string {
	if l.delim == "" || !strings.HasPrefix(key, l.prefix) {
		return ""
	}
	rest := key[len(l.prefix):]
	i := strings.Index(rest, l.delim)
	if i < 0 {
		return ""
	}
	return l.prefix + rest[:i+len(l.delim)]
}

// emitPrefix adds the common prefix cp once; a marker inside cp means an
// earlier page already returned it.
func (l *lister) emitPrefix(cp string) {
	if cp == l.lastPrefix || strings.HasPrefix(l.marker, cp) {
		return
	}
	l.lastPrefix = cp
	l.emit(listItem{key: cp, prefix: true})
}

type dirItem struct {
	name string // with a trailing '/' for directories
	fi   *client.FileInfo
}

// walk lists the directory whose keys begin with dirKey ("" or ending in
// '/').
func (l *lister) walk(ctx context.Context, dirKey string) error {
	entries, err := l.h.c.ReadDir(ctx, bucketPath(l.bucket)+"/"+strings.TrimSuffix(dirKey, "/"))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		if dirKey == "" {
			return errNoSuchBucket
		}
		return l.h.checkBucket(ctx, l.bucket)
	}
	if err != nil {
		return err
	}
	items := make([]dirItem, 0, len(entries))
	for _, e := range entries {
		fi := e.(*client.FileInfo)
		switch {
		case dirKey == "" && e.Name() == hiddenDir:
		case fi.IsDir():
			items = append(items, dirItem{e.Name() + "/", fi})
		case fi.Attr().GetType() == masterpb.FileType_FILE_TYPE_REGULAR:
			items = append(items, dirItem{e.Name(), fi})
		}
	}
	slices.SortFunc(items, func(a, b dirItem) int { return strings.Compare(a.name, b.name) })
	for _, it := range items {
		if l.done {
			return nil
		}
		key := dirKey + it.name
		if !it.fi.IsDir() {
			if !strings.HasPrefix(key, l.prefix) || key <= l.marker {
				continue
			}
			if cp := l.rollup(key); cp != "" {
				l.emitPrefix(cp)
				continue
			}
			l.emit(listItem{key: key, fi: it.fi})
			continue
		}
		// A directory: every key below begins with key.
		if !strings.HasPrefix(key, l.prefix) && !strings.HasPrefix(l.prefix, key) {
			continue
		}
		if key < l.marker && !strings.HasPrefix(l.marker, key) {
			continue // every key below sorts before the marker
		}
		if cp := l.rollup(key); cp != "" && len(cp) <= len(key) {
			// Every key below rolls up to cp: no need to list them, only
			// to know that there is one.
			if cp == l.lastPrefix || strings.HasPrefix(l.marker, cp) {
				continue
			}
			ok, err := l.hasObject(ctx, key)
			if err != nil {
				return err
			}
			if ok {
				l.emitPrefix(cp)
			}
			continue
		}
		if err := l.walk(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// hasObject reports whether any object lies below dirKey.
func (l *lister) hasObject(ctx context.Context, dirKey string) (bool, error) {
	entries, err := l.h.c.ReadDir(ctx, bucketPath(l.bucket)+"/"+strings.TrimSuffix(dirKey, "/"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.(*client.FileInfo).Attr().GetType() == masterpb.FileType_FILE_TYPE_REGULAR {
			return true, nil
		}
	}
	for _, e := range entries {
		if e.IsDir() {
			if ok, err := l.hasObject(ctx, dirKey+e.Name()+"/"); ok || err != nil {
				return ok, err
			}
		}
	}
	return false, nil
}

// etags fetches the ETags of the listed objects, a few at a time.
func (l *lister) etags(ctx context.Context) ([]string, error) {
	out := make([]string, len(l.items))
	const parallel = 16
	sem := make(chan struct{}, parallel)
	errs := make(chan error, len(l.items))
	for i, it := range l.items {
		if it.prefix {
			continue
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			v, err := l.h.c.Inodes().GetXattr(ctx, it.fi.Inode(), metaXattr)
			if err != nil && !errors.Is(err, syscall.ENODATA) {
				if errors.Is(err, fs.ErrNotExist) {
					err = nil // removed since: its fallback ETag will do
				} else {
					errs <- err
					return
				}
			}
			out[i] = parseMeta(v).etag(it.fi)
		}()
	}
	for range parallel {
		sem <- struct{}{}
	}
	close(errs)
	return out, <-errs
}

// listParams are the parameters common to ListObjects V1 and V2.
type listParams struct {
	prefix, delim, encoding string
	max                     int
}

func parseListParams(r *http.Request) (listParams, *apiError) {
	q := r.URL.Query()
	p := listParams{prefix: q.Get("prefix"), delim: q.Get("delimiter"), encoding: q.Get("encoding-type"), max: maxListKeys}
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, invalidArgument("max-keys must be a non-negative integer.")
		}
		p.max = min(n, maxListKeys)
	}
	if p.encoding != "" && p.encoding != "url" {
		return p, invalidArgument("Invalid Encoding Method specified in Request.")
	}
	return p, nil
}

// enc applies encoding-type=url.
func (p listParams) enc(s string) string {
	if p.encoding == "url" {
		return uriEncode(s, false)
	}
	return s
}

func (h *Handler) listObjects(ctx context.Context, w http.ResponseWriter, r *http.Request, rq *request) error {
	p, aerr := parseListParams(r)
	if aerr != nil {
		return aerr
	}
	q := r.URL.Query()
	v2 := q.Get("list-type") == "2"
	marker := q.Get("marker")
	var token string
	if v2 {
		marker = q.Get("start-after")
		if token = q.Get("continuation-token"); token != "" {
			b, err := base64.RawURLEncoding.DecodeString(token)
			if err != nil {
				return invalidArgument("The continuation token provided is incorrect.")
			}
			marker = string(b)
		}
	}
	l := &lister{h: h, bucket: rq.bucket, prefix: p.prefix, delim: p.delim, marker: marker, max: p.max}
	if err := l.run(ctx); err != nil {
		return err
	}
	etags, err := l.etags(ctx)
	if err != nil {
		return err
	}
	res := listBucketResult{NS: s3NS, Name: rq.bucket, Prefix: p.enc(p.prefix), MaxKeys: p.max, Delimiter: p.enc(p.delim), EncodingType: p.encoding, IsTruncated: l.truncated}
	fetchOwner := !v2 || q.Get("fetch-owner") == "true"
	for i, it := range l.items {
		if it.prefix {
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: p.enc(it.key)})
			continue
		}
		oi := objectInfo{Key: p.enc(it.key), LastModified: xmlTime(it.fi.ModTime()), ETag: etags[i], Size: it.fi.Size(), StorageClass: "STANDARD"}
		if fetchOwner {
			o := gatewayOwner
			oi.Owner = &o
		}
		res.Contents = append(res.Contents, oi)
	}
	last := ""
	if n := len(l.items); n > 0 {
		last = l.items[n-1].key
	}
	if v2 {
		n := len(l.items)
		res.KeyCount = &n
		res.ContinuationToken = token
		res.StartAfter = p.enc(q.Get("start-after"))
		if l.truncated {
			res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(last))
		}
	} else {
		m := p.enc(marker)
		res.Marker = &m
		if l.truncated && p.delim != "" {
			res.NextMarker = p.enc(last)
		}
	}
	return writeXML(w, res)
}
