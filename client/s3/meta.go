package s3

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/cairnfs/cairn/client"
)

const (
	// metaXattr is the extended attribute holding an object's (or an
	// upload's) S3 attributes.
	metaXattr = "user.s3"
	// maxUserMeta is S3's bound on the x-amz-meta-* headers' total size.
	maxUserMeta = 2 << 10
)

// The fields of metaXattr that are not HTTP headers of the object.
const (
	fieldETag  = "Etag"
	fieldSize  = "X-Cairn-Size"  // the size the ETag was computed for
	fieldMtime = "X-Cairn-Mtime" // the mtime (Unix ns) it was computed for
	fieldKey   = "X-Cairn-Key"   // an upload's object key
	fieldInit  = "X-Cairn-Initiated"
	// fieldParts lists a multipart object's part sizes, comma-separated,
	// for GET and HEAD with ?partNumber.
	fieldParts = "X-Cairn-Parts"
)

// contentHeaders are the standard headers S3 stores with an object and
// returns with it.
var contentHeaders = []string{"Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Type", "Expires"}

// objectMeta is the parsed metaXattr.
type objectMeta struct {
	fields http.Header
}

func newMeta() *objectMeta { return &objectMeta{fields: http.Header{}} }

// parseMeta parses a metaXattr value; nil or garbage gives empty metadata
// (the object was written by another front end).
func parseMeta(b []byte) *objectMeta {
	if len(b) == 0 {
		return newMeta()
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(slices.Clip(b), "\r\n"...))))
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return newMeta()
	}
	return &objectMeta{fields: http.Header(h)}
}

// encode returns the metaXattr value: "Name: value" lines, sorted.
func (m *objectMeta) encode() []byte {
	var b bytes.Buffer
	names := make([]string, 0, len(m.fields))
	for k := range m.fields {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range m.fields[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	return b.Bytes()
}

// setHeadersFrom copies the content headers and user metadata of a
// request into m, replacing those m had. It fails if the user metadata is
// larger than S3 allows.
func (m *objectMeta) setHeadersFrom(h http.Header) *apiError {
	for k := range m.fields {
		if isStoredHeader(k) {
			delete(m.fields, k)
		}
	}
	size := 0
	for k, vs := range h {
		if !isStoredHeader(k) {
			continue
		}
		for _, v := range vs {
			if k == "Content-Encoding" {
				// aws-chunked describes the request, not the object.
				v = stripAWSChunked(v)
				if v == "" {
					continue
				}
			}
			if strings.HasPrefix(k, "X-Amz-Meta-") {
				size += len(k) - len("X-Amz-Meta-") + len(v)
			}
			m.fields.Add(k, v)
		}
	}
	if size > maxUserMeta {
		return errMetadataTooLarge
	}
	return nil
}

func isStoredHeader(k string) bool {
	return strings.HasPrefix(k, "X-Amz-Meta-") || slices.Contains(contentHeaders, k)
}

func stripAWSChunked(v string) string {
	var keep []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" && p != "aws-chunked" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, ",")
}

// writeHeaders sets the stored headers on a response.
func (m *objectMeta) writeHeaders(h http.Header) {
	for k, vs := range m.fields {
		switch {
		case strings.HasPrefix(k, "X-Amz-Meta-"):
			// S3 sends user metadata names in lower case, and SDKs hand
			// them to programs as they arrive: "x-amz-meta-origin" is
			// the key "origin", where the canonical form would make it
			// "Origin". Setting the map directly keeps the case.
			h[strings.ToLower(k)] = vs
		case isStoredHeader(k):
			h[k] = vs
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "binary/octet-stream")
	}
}

// setETag records etag as computed for the file's current size and mtime.
func (m *objectMeta) setETag(etag string, fi *client.FileInfo) {
	m.setETagAt(etag, fi.Size(), fi.Attr().GetMtimeUnixNano())
}

// setETagAt records etag for a file of size bytes modified at mtime (in
// Unix nanoseconds): what the file will be once a commit under way lands.
func (m *objectMeta) setETagAt(etag string, size, mtimeNano int64) {
	m.fields.Set(fieldETag, etag)
	m.fields.Set(fieldSize, strconv.FormatInt(size, 10))
	m.fields.Set(fieldMtime, strconv.FormatInt(mtimeNano, 10))
}

// recordedFor reports whether the recorded ETag (and the part sizes
// recorded with it) still describe fi: the file has kept the size and
// mtime it had when they were recorded.
func (m *objectMeta) recordedFor(fi *client.FileInfo) bool {
	return m.fields.Get(fieldETag) != "" &&
		m.fields.Get(fieldSize) == strconv.FormatInt(fi.Size(), 10) &&
		m.fields.Get(fieldMtime) == strconv.FormatInt(fi.Attr().GetMtimeUnixNano(), 10)
}

// setParts records a multipart object's part sizes.
func (m *objectMeta) setParts(sizes []int64) {
	parts := make([]string, len(sizes))
	for i, n := range sizes {
		parts[i] = strconv.FormatInt(n, 10)
	}
	m.fields.Set(fieldParts, strings.Join(parts, ","))
}

// part returns where part n (from 1) of the object lies and how many parts
// it has, as GET and HEAD with ?partNumber want them: a multipart object's
// recorded parts while the file is unchanged since it was completed;
// otherwise the whole file as its only part. known is false when the
// object was completed from parts whose sizes were not recorded.
func (m *objectMeta) part(n int, fi *client.FileInfo) (off, length int64, count int, known bool, aerr *apiError) {
	recorded := m.fields.Get(fieldParts)
	unchanged := m.recordedFor(fi)
	if !unchanged || recorded == "" {
		if unchanged && strings.Contains(m.fields.Get(fieldETag), "-") {
			return 0, 0, 0, false, nil // multipart, sizes unknown
		}
		if n != 1 {
			return 0, 0, 0, true, errInvalidPartNumber
		}
		return 0, fi.Size(), 1, true, nil
	}
	sizes := strings.Split(recorded, ",")
	if n > len(sizes) {
		return 0, 0, 0, true, errInvalidPartNumber
	}
	for i, v := range sizes {
		size, err := strconv.ParseInt(v, 10, 64)
		if err != nil || size < 0 {
			return 0, 0, 0, false, nil
		}
		if i == n-1 {
			length = size
			break
		}
		off += size
	}
	if off+length > fi.Size() {
		return 0, 0, 0, false, nil
	}
	return off, length, len(sizes), true, nil
}

// etag returns the object's ETag: the recorded one if the file has not
// changed since, else one made of its inode, size and mtime (with a '-',
// so that clients do not take it for an MD5).
func (m *objectMeta) etag(fi *client.FileInfo) string {
	if m.recordedFor(fi) {
		return m.fields.Get(fieldETag)
	}
	return fmt.Sprintf(`"%x%x-%x"`, fi.Inode(), fi.Attr().GetMtimeUnixNano(), fi.Size())
}

// checksums returns the x-amz-checksum-* values stored with the object.
func (m *objectMeta) checksums() map[string]string {
	out := map[string]string{}
	for k, vs := range m.fields {
		if strings.HasPrefix(k, "X-Amz-Checksum-") && len(vs) > 0 {
			out[k] = vs[0]
		}
	}
	return out
}
