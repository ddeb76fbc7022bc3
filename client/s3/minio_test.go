package s3_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// newMinio returns a minio-go client for srv: a second real client
// library, with its own ways of signing (streaming signatures over plain
// HTTP, unsigned payloads over HTTPS, checksums in trailers if trailers
// is set) and of composing requests.
func newMinio(t *testing.T, srv *httptest.Server, trailers bool) *minio.Client {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	secure := u.Scheme == "https"
	c, err := minio.New(u.Host, &minio.Options{
		Creds:           credentials.NewStaticV4(testAccessKey, testSecretKey, ""),
		Secure:          secure,
		Transport:       srv.Client().Transport,
		Region:          "us-east-1",
		BucketLookup:    minio.BucketLookupPath,
		TrailingHeaders: trailers,
		MaxRetries:      1, // a failure must show, not be retried away
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// minioCode is the S3 error code of a minio-go error.
func minioCode(err error) string {
	if err == nil {
		return ""
	}
	if c := minio.ToErrorResponse(err).Code; c != "" {
		return c
	}
	return err.Error()
}

func TestMinio(t *testing.T) {
	for _, tc := range []struct {
		name     string
		srv      *httptest.Server
		trailers bool
	}{{"http", shared.srv, false}, {"http-trailers", shared.srv, true}, {"https-trailers", shared.tls, true}} {
		t.Run(tc.name, func(t *testing.T) { testMinio(t, newMinio(t, tc.srv, tc.trailers), "minio-"+tc.name) })
	}
}

func testMinio(t *testing.T, c *minio.Client, b string) {
	ctx := ctxT(t)
	cleanupBucket(t, b)
	if err := c.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(ctx, b, minio.MakeBucketOptions{}); minioCode(err) != "BucketAlreadyOwnedByYou" {
		t.Errorf("second MakeBucket: %v", err)
	}
	if ok, err := c.BucketExists(ctx, b); !ok || err != nil {
		t.Fatalf("BucketExists = %v, %v", ok, err)
	}
	if ok, err := c.BucketExists(ctx, "minio-no-such-bucket"); ok || err != nil {
		t.Fatalf("BucketExists of a missing bucket = %v, %v", ok, err)
	}

	// Put, stat, get (whole and ranged).
	small := []byte("small object through minio-go")
	info, err := c.PutObject(ctx, b, "dir/small.txt", bytes.NewReader(small), int64(len(small)), minio.PutObjectOptions{
		ContentType:  "text/plain",
		UserMetadata: map[string]string{"origin": "minio"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Trim(md5ETag(small), `"`); info.ETag != want || info.Size != int64(len(small)) {
		t.Errorf("PutObject = ETag %s size %d, want %s %d", info.ETag, info.Size, want, len(small))
	}
	st, err := c.StatObject(ctx, b, "dir/small.txt", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(small)) || st.ContentType != "text/plain" || st.ETag != info.ETag || st.UserMetadata["Origin"] != "minio" {
		t.Errorf("StatObject = size %d type %q ETag %s metadata %v", st.Size, st.ContentType, st.ETag, st.UserMetadata)
	}
	if got := minioGet(t, c, b, "dir/small.txt", minio.GetObjectOptions{}); !bytes.Equal(got, small) {
		t.Errorf("GetObject = %q", got)
	}
	var ranged minio.GetObjectOptions
	if err := ranged.SetRange(6, 11); err != nil {
		t.Fatal(err)
	}
	if got := minioGet(t, c, b, "dir/small.txt", ranged); !bytes.Equal(got, small[6:12]) {
		t.Errorf("ranged GetObject = %q, want %q", got, small[6:12])
	}
	if _, err := c.StatObject(ctx, b, "dir/missing", minio.StatObjectOptions{}); minioCode(err) != "NoSuchKey" {
		t.Errorf("StatObject of a missing key: %v", err)
	}

	// Listings, by prefix and recursive, in V2 and V1.
	for _, k := range []string{"list/a", "list/b/c", "list/b/d", "list/e f", "listing"} {
		if _, err := c.PutObject(ctx, b, k, strings.NewReader(k), int64(len(k)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, v1 := range []bool{false, true} {
		if got, want := minioList(t, c, b, minio.ListObjectsOptions{Prefix: "list/", UseV1: v1}), []string{"list/a", "list/b/", "list/e f"}; !slices.Equal(got, want) {
			t.Errorf("ListObjects list/ (V1 %v) = %q, want %q", v1, got, want)
		}
		if got, want := minioList(t, c, b, minio.ListObjectsOptions{Prefix: "list", Recursive: true, UseV1: v1}), []string{"list/a", "list/b/c", "list/b/d", "list/e f", "listing"}; !slices.Equal(got, want) {
			t.Errorf("ListObjects list recursive (V1 %v) = %q, want %q", v1, got, want)
		}
		// One key a page: the listing goes on through every page.
		if got, want := minioList(t, c, b, minio.ListObjectsOptions{Recursive: true, MaxKeys: 1, UseV1: v1}), []string{"dir/small.txt", "list/a", "list/b/c", "list/b/d", "list/e f", "listing"}; !slices.Equal(got, want) {
			t.Errorf("ListObjects one key a page (V1 %v) = %q, want %q", v1, got, want)
		}
	}

	// A multipart upload: 17 MiB in 5 MiB parts.
	big := pattern(17<<20, 5)
	info, err = c.PutObject(ctx, b, "big/object", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(info.ETag, "-4") || info.Size != int64(len(big)) {
		t.Errorf("multipart PutObject = ETag %s size %d, want a 4-part ETag and %d bytes", info.ETag, info.Size, len(big))
	}
	if got := readCairn(t, "/"+b+"/big/object"); !bytes.Equal(got, big) {
		t.Errorf("multipart object through the client: %d bytes that differ from the %d sent", len(got), len(big))
	}
	if got := minioGet(t, c, b, "big/object", minio.GetObjectOptions{}); !bytes.Equal(got, big) {
		t.Errorf("multipart object through minio-go: %d bytes that differ", len(got))
	}

	// A presigned GET, fetched with plain net/http, with a response
	// header override.
	u, err := c.PresignedGetObject(ctx, b, "dir/small.txt", 10*time.Minute, url.Values{"response-content-type": {"application/x-test"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := shared.httpClientFor(u).Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, small) || resp.Header.Get("Content-Type") != "application/x-test" {
		t.Errorf("presigned GET = %d %q (%v), Content-Type %q", resp.StatusCode, body, err, resp.Header.Get("Content-Type"))
	}
	// The same URL with its signature changed is refused.
	bad := *u
	q := bad.Query()
	q.Set("X-Amz-Signature", strings.Repeat("0", 64))
	bad.RawQuery = q.Encode()
	if resp, err := shared.httpClientFor(&bad).Get(bad.String()); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("presigned GET with a wrong signature = %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// CopyObject keeps the bytes, the ETag and the metadata, or replaces
	// the metadata.
	cp, err := c.CopyObject(ctx, minio.CopyDestOptions{Bucket: b, Object: "copy/small.txt"}, minio.CopySrcOptions{Bucket: b, Object: "dir/small.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if cp.ETag != strings.Trim(md5ETag(small), `"`) {
		t.Errorf("CopyObject ETag %s", cp.ETag)
	}
	if got := readCairn(t, "/"+b+"/copy/small.txt"); !bytes.Equal(got, small) {
		t.Errorf("copy = %q", got)
	}
	if _, err := c.CopyObject(ctx, minio.CopyDestOptions{Bucket: b, Object: "copy/replaced", ReplaceMetadata: true, UserMetadata: map[string]string{"new": "yes"}},
		minio.CopySrcOptions{Bucket: b, Object: "dir/small.txt"}); err != nil {
		t.Fatal(err)
	}
	if st, err := c.StatObject(ctx, b, "copy/replaced", minio.StatObjectOptions{}); err != nil || st.UserMetadata["New"] != "yes" || st.UserMetadata["Origin"] != "" {
		t.Errorf("copy with replaced metadata: %v, %v", st.UserMetadata, err)
	}

	// ComposeObject: a range of the big object (by UploadPartCopy) and
	// the small one.
	if _, err := c.ComposeObject(ctx, minio.CopyDestOptions{Bucket: b, Object: "composed"},
		minio.CopySrcOptions{Bucket: b, Object: "big/object", MatchRange: true, Start: 1000, End: 1000 + 5<<20 - 1},
		minio.CopySrcOptions{Bucket: b, Object: "dir/small.txt"}); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(big[1000:1000+5<<20]), small...)
	if got := readCairn(t, "/"+b+"/composed"); !bytes.Equal(got, want) {
		t.Errorf("composed object: %d bytes that differ from the %d expected", len(got), len(want))
	}

	// RemoveObject, then RemoveObjects of everything left.
	if err := c.RemoveObject(ctx, b, "dir/small.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StatObject(ctx, b, "dir/small.txt", minio.StatObjectOptions{}); minioCode(err) != "NoSuchKey" {
		t.Errorf("StatObject after RemoveObject: %v", err)
	}
	objs := c.ListObjects(ctx, b, minio.ListObjectsOptions{Recursive: true})
	var failed []string
	for e := range c.RemoveObjects(ctx, b, objs, minio.RemoveObjectsOptions{}) {
		failed = append(failed, fmt.Sprintf("%s: %v", e.ObjectName, e.Err))
	}
	if len(failed) > 0 {
		t.Errorf("RemoveObjects: %q", failed)
	}
	if left := minioList(t, c, b, minio.ListObjectsOptions{Recursive: true}); len(left) != 0 {
		t.Errorf("keys left after RemoveObjects: %q", left)
	}
	if err := c.RemoveBucket(ctx, b); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.BucketExists(ctx, b); ok || err != nil {
		t.Errorf("BucketExists after RemoveBucket = %v, %v", ok, err)
	}
}

// httpClientFor returns the HTTP client that reaches u's test server.
func (e *env) httpClientFor(u *url.URL) *http.Client {
	if u.Scheme == "https" {
		return e.tls.Client()
	}
	return e.srv.Client()
}

func minioGet(t *testing.T, c *minio.Client, b, key string, opts minio.GetObjectOptions) []byte {
	t.Helper()
	o, err := c.GetObject(ctxT(t), b, key, opts)
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	return data
}

// minioList returns the keys and prefixes a listing gives, sorted:
// minio-go hands each page's objects on before its prefixes.
func minioList(t *testing.T, c *minio.Client, b string, opts minio.ListObjectsOptions) []string {
	t.Helper()
	var out []string
	for o := range c.ListObjects(ctxT(t), b, opts) {
		if o.Err != nil {
			t.Fatalf("ListObjects %+v: %v", opts, o.Err)
		}
		out = append(out, o.Key)
	}
	slices.Sort(out)
	return out
}
