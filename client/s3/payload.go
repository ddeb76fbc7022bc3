package s3

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// checksumAlgorithms are the x-amz-checksum-* algorithms the gateway
// verifies, by header suffix.
var checksumAlgorithms = map[string]func() hash.Hash{
	"crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"crc64nvme": func() hash.Hash { return crc64.New(crc64.MakeTable(0x9a6c9329ac4bc9b5)) },
	"sha1":      sha1.New,
	"sha256":    sha256.New,
}

// checksum is one checksum to verify: from a header (want set) or from
// the aws-chunked trailer (want read at the end).
type checksum struct {
	header string // "x-amz-checksum-crc32"
	h      hash.Hash
	want   string
}

// body reads a request's payload, decoding aws-chunked encoding, and
// checks at its end everything the request claimed about it: the length,
// x-amz-content-sha256, Content-MD5 and the x-amz-checksum-* values. Until
// Read returns io.EOF the bytes are unverified. It also computes the MD5
// that becomes the ETag.
type body struct {
	r        io.Reader
	chunked  *chunkedReader
	n        int64
	declared int64 // -1 when unknown
	max      int64
	md5      hash.Hash
	sha      hash.Hash // when x-amz-content-sha256 is a digest
	wantSHA  string
	wantMD5  []byte
	sums     []checksum
	err      error // sticky
}

// newBody prepares r's payload for reading; max bounds its length.
func newBody(r *http.Request, s *signer, max int64) (*body, *apiError) {
	b := &body{r: r.Body, declared: r.ContentLength, max: max, md5: md5.New()}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if s != nil {
		payload = s.payload
	}
	switch payload {
	case streamSigned, streamSignedTr, streamUnsigned:
		var cs *signer
		if payload != streamUnsigned {
			if s == nil {
				return nil, errAccessDenied
			}
			cs = s
		}
		b.chunked = newChunkedReader(r.Body, cs)
		b.r = b.chunked
		dl := r.Header.Get("X-Amz-Decoded-Content-Length")
		if dl == "" {
			return nil, errMissingContentLength
		}
		n, err := strconv.ParseInt(dl, 10, 64)
		if err != nil || n < 0 {
			return nil, invalidArgument("x-amz-decoded-content-length is not a valid length.")
		}
		b.declared = n
	case "", unsignedBody:
	default:
		if s != nil {
			b.sha, b.wantSHA = sha256.New(), payload
		}
	}
	if b.declared > max {
		return nil, errEntityTooLarge
	}
	if v := r.Header.Get("Content-Md5"); v != "" {
		d, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(d) != md5.Size {
			return nil, errInvalidDigest
		}
		b.wantMD5 = d
	}
	for alg, mk := range checksumAlgorithms {
		name := "x-amz-checksum-" + alg
		if v := r.Header.Get(name); v != "" {
			b.sums = append(b.sums, checksum{header: name, h: mk(), want: v})
		}
	}
	for _, t := range strings.Split(r.Header.Get("X-Amz-Trailer"), ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		if t == "" {
			continue
		}
		mk, ok := checksumAlgorithms[strings.TrimPrefix(t, "x-amz-checksum-")]
		if !strings.HasPrefix(t, "x-amz-checksum-") || !ok {
			return nil, invalidArgument("Unsupported trailer " + t + ".")
		}
		if b.chunked == nil {
			return nil, invalidRequest("x-amz-trailer needs an aws-chunked body.")
		}
		b.sums = append(b.sums, checksum{header: t, h: mk()})
	}
	return b, nil
}

// ignoreChecksums stops b from verifying the x-amz-checksum-* headers.
// On CompleteMultipartUpload they are the object's checksum (COMPOSITE
// or FULL_OBJECT, computed over the parts), not the XML body's, and the
// gateway keeps no part checksums to check them against.
func (b *body) ignoreChecksums() {
	b.sums = nil
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	b.md5.Write(p[:n])
	if b.sha != nil {
		b.sha.Write(p[:n])
	}
	for _, c := range b.sums {
		c.h.Write(p[:n])
	}
	switch {
	case b.declared >= 0 && b.n > b.declared:
		err = errIncompleteBody // more than announced
	case b.n > b.max:
		err = errEntityTooLarge
	}
	if err == io.EOF {
		err = b.finish()
	} else if err == io.ErrUnexpectedEOF {
		err = errIncompleteBody
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// finish checks the claims about the payload once it has all been read,
// returning io.EOF if they hold.
func (b *body) finish() error {
	if b.declared >= 0 && b.n != b.declared {
		return errIncompleteBody
	}
	if b.sha != nil && hex.EncodeToString(b.sha.Sum(nil)) != strings.ToLower(b.wantSHA) {
		return errContentSHA256Mismatch
	}
	if b.wantMD5 != nil && string(b.md5.Sum(nil)) != string(b.wantMD5) {
		return errBadDigest
	}
	for i := range b.sums {
		c := &b.sums[i]
		if c.want == "" && b.chunked != nil {
			c.want = b.chunked.Trailer().Get(c.header)
			if c.want == "" {
				return invalidRequest("The trailer " + c.header + " announced in x-amz-trailer is missing.")
			}
		}
		if base64.StdEncoding.EncodeToString(c.h.Sum(nil)) != c.want {
			return errorf("BadDigest", http.StatusBadRequest, "The "+strings.TrimPrefix(c.header, "x-amz-checksum-")+" checksum you specified did not match the calculated checksum.")
		}
	}
	return io.EOF
}

// etag is the payload's MD5 as S3's quoted hex ETag; valid after io.EOF.
func (b *body) etag() string { return `"` + hex.EncodeToString(b.md5.Sum(nil)) + `"` }

// checksums returns the verified x-amz-checksum-* headers with their
// values, to echo in the response; valid after io.EOF.
func (b *body) checksums() map[string]string {
	out := map[string]string{}
	for _, c := range b.sums {
		out[c.header] = c.want
	}
	return out
}

// hashingReader computes the MD5 of what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	return n, err
}

// etag is the MD5 read so far as a quoted hex ETag.
func (r *hashingReader) etag() string { return `"` + hex.EncodeToString(r.h.Sum(nil)) + `"` }

func newMD5() hash.Hash { return md5.New() }

// xmlUnmarshal decodes an XML request body into v.
func xmlUnmarshal(data []byte, v any) error {
	return xml.Unmarshal(data, v)
}
