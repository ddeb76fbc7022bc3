package s3

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// AWS's published example of a signed streaming upload ("Signature
// Calculations for the Authorization Header: Transferring Payload in
// Multiple Chunks"): 66,560 bytes of 'a' in chunks of 65,536 and 1,024
// bytes and the empty last chunk. The signatures are AWS's, so passing
// means the chain matches S3's, not merely itself.
const (
	exampleAccessKey = "AKIAIOSFODNN7EXAMPLE"
	exampleSecret    = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	exampleSeedSig   = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
)

func exampleChunkedBody(corrupt bool) []byte {
	var b bytes.Buffer
	for _, c := range []struct {
		size int
		sig  string
	}{
		{65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"},
		{1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"},
		{0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"},
	} {
		b.WriteString(strconv.FormatInt(int64(c.size), 16) + ";chunk-signature=" + c.sig + "\r\n")
		data := bytes.Repeat([]byte("a"), c.size)
		if corrupt && c.size == 1024 {
			data[100] = 'b'
		}
		b.Write(data)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func exampleRequest(body []byte, seedSig string) *http.Request {
	r := httptest.NewRequest(http.MethodPut, "http://s3.amazonaws.com/examplebucket/chunkObject.txt", bytes.NewReader(body))
	r.Host = "s3.amazonaws.com"
	r.Header.Set("X-Amz-Date", "20130524T000000Z")
	r.Header.Set("X-Amz-Storage-Class", "REDUCED_REDUNDANCY")
	r.Header.Set("X-Amz-Content-Sha256", streamSigned)
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", "66560")
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+exampleAccessKey+"/20130524/us-east-1/s3/aws4_request,"+
		"SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"+
		"Signature="+seedSig)
	return r
}

func exampleHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := newTestHandler(Config{
		Credentials: []Credential{{exampleAccessKey, exampleSecret}},
		Now:         func() time.Time { return time.Date(2013, 5, 24, 0, 5, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newTestHandler is NewHandler without a client, for tests of request
// parsing alone.
func newTestHandler(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, creds: map[string]string{}, log: cfg.Logger}
	for _, c := range cfg.Credentials {
		h.creds[c.AccessKey] = c.SecretKey
	}
	return h, nil
}

func TestStreamingSignatureAWSExample(t *testing.T) {
	h := exampleHandler(t)
	r := exampleRequest(exampleChunkedBody(false), exampleSeedSig)
	s, aerr := h.authenticate(r)
	if aerr != nil {
		t.Fatalf("seed signature refused: %v", aerr)
	}
	b, aerr := newBody(r, s, 1<<20)
	if aerr != nil {
		t.Fatal(aerr)
	}
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("reading the example body: %v", err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte("a"), 66560)) {
		t.Fatalf("decoded %d bytes, want 66560 'a's", len(got))
	}

	// One byte changed in the second chunk: its signature no longer holds.
	r = exampleRequest(exampleChunkedBody(true), exampleSeedSig)
	if s, aerr = h.authenticate(r); aerr != nil {
		t.Fatal(aerr)
	}
	b, _ = newBody(r, s, 1<<20)
	if _, err := io.ReadAll(b); !errors.Is(err, errSignatureMismatch) {
		t.Fatalf("corrupted chunk: %v, want SignatureDoesNotMatch", err)
	}

	// A wrong seed signature is refused before the body is read.
	bad := strings.Replace(exampleSeedSig, "4f", "5f", 1)
	if _, aerr := h.authenticate(exampleRequest(exampleChunkedBody(false), bad)); aerr != errSignatureMismatch {
		t.Fatalf("wrong seed signature: %v, want SignatureDoesNotMatch", aerr)
	}
	// A body cut short is incomplete, not accepted.
	body := exampleChunkedBody(false)
	r = exampleRequest(body, exampleSeedSig)
	r.Body = io.NopCloser(bytes.NewReader(body[:66000]))
	if s, aerr = h.authenticate(r); aerr != nil {
		t.Fatal(aerr)
	}
	b, _ = newBody(r, s, 1<<20)
	if _, err := io.ReadAll(b); !errors.Is(err, errIncompleteBody) {
		t.Fatalf("truncated aws-chunked body: %v, want IncompleteBody", err)
	}
}

func TestClockSkewRefused(t *testing.T) {
	h := exampleHandler(t)
	h.cfg.Now = func() time.Time { return time.Date(2013, 5, 24, 1, 0, 0, 0, time.UTC) }
	if _, aerr := h.authenticate(exampleRequest(exampleChunkedBody(false), exampleSeedSig)); aerr != errTimeSkewed {
		t.Fatalf("request an hour old: %v, want RequestTimeTooSkewed", aerr)
	}
}

func TestBucketNames(t *testing.T) {
	for name, want := range map[string]bool{
		"abc": true, "my-bucket.logs": true, "a1-b2": true, "123": true,
		"ab": false, strings.Repeat("a", 64): false, "ABC": false, "a_b": false,
		"-abc": false, "abc-": false, "a..b": false, "a.-b": false, "192.168.1.1": false,
		"xn--abc": false, "abc-s3alias": false, "..": false, "a/b": false, "": false,
	} {
		if got := validBucketName(name); got != want {
			t.Errorf("validBucketName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestKeys(t *testing.T) {
	for key, ok := range map[string]bool{
		"a": true, "a/b/c.txt": true, "dir/ü ñ+%.x": true, ".hidden": true, "a/...": true,
		"": false, "/a": false, "a/": false, "a//b": false, "./a": false, "a/../b": false, "..": false,
		"a\x00b": false, "\xff": false, hiddenDir + "/x": false, strings.Repeat("k", 1025): false,
	} {
		if got := checkKey(key) == nil; got != ok {
			t.Errorf("checkKey(%q) ok = %v, want %v", key, got, ok)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		spec      string
		off, n    int64
		ok, unsat bool
	}{
		{"bytes=0-9", 0, 10, true, false},
		{"bytes=5-", 5, 95, true, false},
		{"bytes=-10", 90, 10, true, false},
		{"bytes=-1000", 0, 100, true, false},
		{"bytes=90-200", 90, 10, true, false},
		{"bytes=100-", 0, 0, false, true},
		{"bytes=-0", 0, 0, false, true},
		{"bytes=9-3", 0, 0, false, false},
		{"bytes=0-1,5-6", 0, 0, false, false},
		{"items=0-1", 0, 0, false, false},
		{"bytes=x-1", 0, 0, false, false},
	} {
		off, n, ok, aerr := parseRange(c.spec, 100)
		if off != c.off || n != c.n || ok != c.ok || (aerr != nil) != c.unsat {
			t.Errorf("parseRange(%q) = %d, %d, %v, %v", c.spec, off, n, ok, aerr)
		}
	}
}

func TestParseCredentials(t *testing.T) {
	creds, err := ParseCredentials(strings.NewReader("# keys\n\nAK1 secret1\n  AK2\tsecret2  \n"))
	if err != nil || len(creds) != 2 || creds[1] != (Credential{"AK2", "secret2"}) {
		t.Fatalf("ParseCredentials = %v, %v", creds, err)
	}
	if _, err := ParseCredentials(strings.NewReader("AK1 s1 extra\n")); err == nil {
		t.Fatal("a line of three fields accepted")
	}
	if _, err := ParseCredentials(strings.NewReader("# nothing\n")); err == nil {
		t.Fatal("a file without credentials accepted")
	}
	a, b := GenerateCredentials(), GenerateCredentials()
	if len(a.AccessKey) != 20 || len(a.SecretKey) != 40 || a == b {
		t.Fatalf("GenerateCredentials = %v, %v", a, b)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := newMeta()
	h := http.Header{}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Encoding", "aws-chunked,gzip")
	h.Set("X-Amz-Meta-Colour", "blue: really")
	h.Set("Authorization", "not stored")
	if aerr := m.setHeadersFrom(h); aerr != nil {
		t.Fatal(aerr)
	}
	got := parseMeta(m.encode())
	out := http.Header{}
	got.writeHeaders(out)
	// User metadata goes out under its lower-case name, as S3 sends it.
	if out.Get("Content-Type") != "text/plain" || out.Get("Content-Encoding") != "gzip" ||
		len(out["x-amz-meta-colour"]) != 1 || out["x-amz-meta-colour"][0] != "blue: really" || out.Get("Authorization") != "" {
		t.Fatalf("round trip gave %v", out)
	}
	h.Set("X-Amz-Meta-Big", strings.Repeat("x", maxUserMeta))
	if aerr := m.setHeadersFrom(h); aerr != errMetadataTooLarge {
		t.Fatalf("oversized metadata: %v", aerr)
	}
}

// TestChunkedTrailers reads aws-chunked trailers as clients write them:
// the AWS SDKs end lines with CRLF; minio-go ends them with a bare LF and
// adds empty lines. A signed body's trailer must be signed.
func TestChunkedTrailers(t *testing.T) {
	for name, body := range map[string]string{
		"crlf":        "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",
		"lf and gaps": "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\n\r\n\r\n",
	} {
		c := newChunkedReader(strings.NewReader(body), nil)
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello" || c.Trailer().Get("x-amz-checksum-crc32") != "NhCmhg==" {
			t.Errorf("%s: read %q, trailer %v, %v", name, got, c.Trailer(), err)
		}
	}
	// An unsigned line after the signed last chunk of a signed body.
	h := exampleHandler(t)
	r := exampleRequest(exampleChunkedBody(false), exampleSeedSig)
	s, aerr := h.authenticate(r)
	if aerr != nil {
		t.Fatal(aerr)
	}
	body := append(exampleChunkedBody(false), "x-amz-checksum-crc32:AAAAAA==\r\n\r\n"...)
	if _, err := io.ReadAll(newChunkedReader(bytes.NewReader(body), s)); !errors.Is(err, errSignatureMismatch) {
		t.Errorf("unsigned trailer of a signed body: %v, want SignatureDoesNotMatch", err)
	}
}
