package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/s3"
	"github.com/cairnfs/cairn/internal/cluster"
)

const (
	testAccessKey = "CAIRNTESTACCESSKEY01"
	testSecretKey = "cairn-test-secret-key-0123456789abcdefgh"
	testMinPart   = 4 << 10
)

// env is the cluster, client and gateway every test of the package
// shares (each test uses its own buckets).
type env struct {
	masters []string
	cl      *client.Client
	handler *s3.Handler
	srv     *httptest.Server // plain HTTP
	tls     *httptest.Server // HTTPS: where SDKs send aws-chunked bodies
}

var shared *env

func TestMain(m *testing.M) {
	code, err := runTests(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if code == 0 {
		// Connections closed by the servers end their goroutines a
		// little later on a loaded machine: give them a few seconds.
		err := goleak.Find()
		for i := 0; err != nil && i < 5; i++ {
			time.Sleep(time.Second)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left:", err)
			os.Exit(1)
		}
	}
	os.Exit(code)
}

func runTests(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "cairn-s3-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: dir, Chunkservers: 3, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		return 0, err
	}
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs(), IOTimeout: time.Minute})
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	h, err := s3.NewHandler(cl, s3.Config{Credentials: []s3.Credential{{AccessKey: testAccessKey, SecretKey: testSecretKey}}, MinPartSize: testMinPart})
	if err != nil {
		return 0, err
	}
	shared = &env{masters: c.MasterAddrs(), cl: cl, handler: h, srv: httptest.NewServer(h), tls: httptest.NewTLSServer(h)}
	defer shared.srv.Close()
	defer shared.tls.Close()
	return m.Run(), nil
}

// sdk returns an aws-sdk-go-v2 S3 client for srv.
func sdk(srv *httptest.Server, secret string) *awss3.Client {
	return awss3.New(awss3.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(srv.URL),
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(testAccessKey, secret, ""),
		HTTPClient:       srv.Client(),
		RetryMaxAttempts: 1,
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newBucket creates a bucket for one test and removes it afterwards.
func newBucket(t *testing.T, c *awss3.Client, name string) string {
	t.Helper()
	if _, err := c.CreateBucket(ctxT(t), &awss3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("CreateBucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := shared.cl.RemoveAll(context.Background(), "/"+name); err != nil {
			t.Errorf("remove bucket %s: %v", name, err)
		}
	})
	return name
}

// code returns the S3 error code of err ("" if err is nil).
func code(err error) string {
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return err.Error()
}

func put(t *testing.T, c *awss3.Client, bucket, key string, data []byte) *awss3.PutObjectOutput {
	t.Helper()
	out, err := c.PutObject(ctxT(t), &awss3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("PutObject %s/%s: %v", bucket, key, err)
	}
	return out
}

func get(t *testing.T, c *awss3.Client, in *awss3.GetObjectInput) ([]byte, *awss3.GetObjectOutput, error) {
	t.Helper()
	out, err := c.GetObject(ctxT(t), in)
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	return data, out, err
}

func md5ETag(data []byte) string {
	s := md5.Sum(data)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func TestBuckets(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	ctx := ctxT(t)
	b := newBucket(t, c, "buckets-test")
	if _, err := c.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(b)}); code(err) != "BucketAlreadyOwnedByYou" {
		t.Fatalf("second CreateBucket: %v", err)
	}
	for _, bad := range []string{"Bad_Name", "ab", "a..b", "192.168.0.1", "-lead"} {
		if _, err := c.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(bad)}); code(err) != "InvalidBucketName" {
			t.Errorf("CreateBucket %q: %v, want InvalidBucketName", bad, err)
		}
	}
	if _, err := c.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String("no-such-bucket")}); code(err) != "NotFound" {
		t.Fatalf("HeadBucket of a missing bucket: %v", err)
	}
	list, err := c.ListBuckets(ctx, &awss3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, bk := range list.Buckets {
		found = found || aws.ToString(bk.Name) == b
	}
	if !found {
		t.Fatalf("ListBuckets does not list %s", b)
	}
	loc, err := c.GetBucketLocation(ctx, &awss3.GetBucketLocationInput{Bucket: aws.String(b)})
	if err != nil || loc.LocationConstraint != "" {
		t.Fatalf("GetBucketLocation = %v, %v", loc, err)
	}
	put(t, c, b, "dir/obj", []byte("x"))
	if _, err := c.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(b)}); code(err) != "BucketNotEmpty" {
		t.Fatalf("DeleteBucket of a full bucket: %v", err)
	}
	if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("dir/obj")}); err != nil {
		t.Fatal(err)
	}
	// The prefix went with its last object, so the bucket is empty.
	if _, err := c.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Fatalf("DeleteBucket: %v", err)
	}
	if _, err := c.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(b)}); code(err) != "NotFound" {
		t.Fatalf("HeadBucket after delete: %v", err)
	}
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("k"), Body: strings.NewReader("x")}); code(err) != "NoSuchBucket" {
		t.Fatalf("PutObject to a deleted bucket: %v", err)
	}
}

func TestObjectRoundTrip(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	ctx := ctxT(t)
	b := newBucket(t, c, "objects-test")
	data := pattern(300<<10, 1)
	out, err := c.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: aws.String(b), Key: aws.String("docs/2026/report one.bin"), Body: bytes.NewReader(data),
		ContentType: aws.String("application/x-report"), CacheControl: aws.String("max-age=60"),
		Metadata:          map[string]string{"colour": "blue", "owner": "ops"},
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.ETag) != md5ETag(data) {
		t.Fatalf("PutObject ETag %s, want %s", aws.ToString(out.ETag), md5ETag(data))
	}
	got, gout, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("docs/2026/report one.bin")})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetObject: %d bytes, %v", len(got), err)
	}
	if aws.ToString(gout.ETag) != md5ETag(data) || aws.ToString(gout.ContentType) != "application/x-report" ||
		aws.ToString(gout.CacheControl) != "max-age=60" || gout.Metadata["colour"] != "blue" || gout.Metadata["owner"] != "ops" {
		t.Fatalf("GetObject headers: etag %s type %s cache %s meta %v", aws.ToString(gout.ETag), aws.ToString(gout.ContentType), aws.ToString(gout.CacheControl), gout.Metadata)
	}
	head, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("docs/2026/report one.bin"), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || aws.ToInt64(head.ContentLength) != int64(len(data)) || head.ChecksumCRC32C == nil {
		t.Fatalf("HeadObject = %+v, %v", head, err)
	}
	// The object is a file of the namespace, its attributes an xattr.
	f, err := shared.cl.Open(ctx, "/"+b+"/docs/2026/report one.bin")
	if err != nil {
		t.Fatal(err)
	}
	fromFS, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(fromFS, data) {
		t.Fatalf("reading the object through the client: %d bytes, %v", len(fromFS), err)
	}
	if v, err := shared.cl.GetXattr(ctx, "/"+b+"/docs/2026/report one.bin", "user.s3"); err != nil || !bytes.Contains(v, []byte(md5ETag(data))) {
		t.Fatalf("user.s3 xattr = %q, %v", v, err)
	}
	// And a file written through the client is an object.
	wf, err := shared.cl.Create(ctx, "/"+b+"/from-fs.txt")
	if err != nil {
		t.Fatal(err)
	}
	wf.Write([]byte("written by the client"))
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
	got, gout, err = get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("from-fs.txt")})
	if err != nil || string(got) != "written by the client" || !strings.Contains(aws.ToString(gout.ETag), "-") {
		t.Fatalf("GetObject of a client-written file = %q, etag %s, %v", got, aws.ToString(gout.ETag), err)
	}
	// Overwrite, then delete.
	put(t, c, b, "docs/2026/report one.bin", []byte("short"))
	got, _, err = get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("docs/2026/report one.bin")})
	if err != nil || string(got) != "short" {
		t.Fatalf("after overwrite: %q, %v", got, err)
	}
	if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("docs/2026/report one.bin")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("docs/2026/report one.bin")}); code(err) != "NoSuchKey" {
		t.Fatalf("GetObject after delete: %v", err)
	}
	if _, err := shared.cl.Stat(ctx, "/"+b+"/docs"); err == nil {
		t.Fatal("the emptied prefix directory docs/ is still there")
	}
	if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("never-was")}); err != nil {
		t.Fatalf("DeleteObject of a missing key: %v", err)
	}
	// An empty object.
	put(t, c, b, "empty", nil)
	got, _, err = get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("empty")})
	if err != nil || len(got) != 0 {
		t.Fatalf("empty object: %q, %v", got, err)
	}
}

func TestBadKeys(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "badkeys-test")
	put(t, c, b, "file", []byte("x"))
	for key, want := range map[string]string{
		"a/../b":                  "InvalidArgument",
		"../escape":               "InvalidArgument",
		"a//b":                    "InvalidArgument",
		"a/./b":                   "InvalidArgument",
		"trailing/":               "InvalidArgument",
		"nul\x00byte":             "InvalidArgument",
		".cairn-multipart/x":      "InvalidArgument",
		strings.Repeat("k", 1100): "KeyTooLongError",
		"file/below":              "KeyConflict",
	} {
		_, err := c.PutObject(ctxT(t), &awss3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(key), Body: strings.NewReader("data")})
		if code(err) != want {
			t.Errorf("PutObject %q: %v, want %s", key, err, want)
		}
	}
	if _, err := shared.cl.Stat(ctxT(t), "/escape"); err == nil {
		t.Fatal("a key escaped its bucket")
	}
}

func TestRangeAndConditions(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "range-test")
	data := pattern(100<<10, 3)
	put(t, c, b, "obj", data)
	for spec, want := range map[string][]byte{
		"bytes=0-9":              data[:10],
		"bytes=1000-":            data[1000:],
		"bytes=-100":             data[len(data)-100:],
		"bytes=5000-5000":        data[5000:5001],
		"bytes=100000-999999999": data[100000:],
	} {
		got, out, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("obj"), Range: aws.String(spec)})
		if err != nil || !bytes.Equal(got, want) || out.ContentRange == nil {
			t.Errorf("Range %s: %d bytes, %v", spec, len(got), err)
		}
	}
	if _, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("obj"), Range: aws.String("bytes=200000-")}); code(err) != "InvalidRange" {
		t.Errorf("unsatisfiable range: %v", err)
	}
	etag := md5ETag(data)
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for _, c2 := range []struct {
		name string
		in   awss3.GetObjectInput
		want string
	}{
		{"If-Match hit", awss3.GetObjectInput{IfMatch: aws.String(etag)}, ""},
		{"If-Match miss", awss3.GetObjectInput{IfMatch: aws.String(`"0123"`)}, "PreconditionFailed"},
		{"If-None-Match hit", awss3.GetObjectInput{IfNoneMatch: aws.String(etag)}, "NotModified"},
		{"If-None-Match miss", awss3.GetObjectInput{IfNoneMatch: aws.String(`"0123"`)}, ""},
		{"If-Modified-Since future", awss3.GetObjectInput{IfModifiedSince: &future}, "NotModified"},
		{"If-Modified-Since past", awss3.GetObjectInput{IfModifiedSince: &past}, ""},
		{"If-Unmodified-Since past", awss3.GetObjectInput{IfUnmodifiedSince: &past}, "PreconditionFailed"},
		{"If-Match beats If-Unmodified-Since", awss3.GetObjectInput{IfMatch: aws.String(etag), IfUnmodifiedSince: &past}, ""},
	} {
		in := c2.in
		in.Bucket, in.Key = aws.String(b), aws.String("obj")
		got, _, err := get(t, c, &in)
		if code(err) != c2.want {
			t.Errorf("%s: %v, want %q", c2.name, err, c2.want)
		}
		if err == nil && !bytes.Equal(got, data) {
			t.Errorf("%s: wrong body", c2.name)
		}
	}
}

// rawRequest sends a request signed with the SDK's SigV4 signer.
func rawRequest(t *testing.T, method, path string, body []byte, hdr map[string]string, payloadHash string) *http.Response {
	t.Helper()
	r, err := http.NewRequest(method, shared.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	r.Header.Set("X-Amz-Content-Sha256", payloadHash)
	signRequest(t, r, payloadHash)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// signRequest signs r as the SDK does, in another region's scope.
func signRequest(t *testing.T, r *http.Request, payloadHash string) {
	t.Helper()
	creds := aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, payloadHash, "s3", "eu-west-3", time.Now(), func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(b []byte) string {
	h := newSHA256()
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// errorCode reads an S3 XML error body's code and checks it carries a
// request ID.
func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Amz-Request-Id") == "" || !bytes.Contains(body, []byte("<RequestId>")) {
		t.Errorf("error without a request ID: %s", body)
	}
	s := string(body)
	i, j := strings.Index(s, "<Code>"), strings.Index(s, "</Code>")
	if i < 0 || j < i {
		return fmt.Sprintf("status %d: %s", resp.StatusCode, s)
	}
	return s[i+len("<Code>") : j]
}

func TestPayloadVerification(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "payload-test")
	data := []byte("payload that must arrive intact")
	// A signed payload hash that holds; another region's scope is fine.
	if resp := rawRequest(t, "PUT", "/"+b+"/ok", data, nil, sha256Hex(data)); resp.StatusCode != 200 {
		t.Fatalf("signed payload: %d %s", resp.StatusCode, errorCode(t, resp))
	}
	for name, tc := range map[string]struct {
		hdr  map[string]string
		hash string
		want string
	}{
		"content sha256 mismatch":  {nil, sha256Hex([]byte("something else")), "XAmzContentSHA256Mismatch"},
		"crc32 mismatch":           {map[string]string{"x-amz-checksum-crc32": "AAAAAA=="}, "UNSIGNED-PAYLOAD", "BadDigest"},
		"sha256 checksum mismatch": {map[string]string{"x-amz-checksum-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}, "UNSIGNED-PAYLOAD", "BadDigest"},
		"content-md5 mismatch":     {map[string]string{"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, "UNSIGNED-PAYLOAD", "BadDigest"},
		"bad trailer":              {map[string]string{"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": fmt.Sprint(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "BadDigest"},
	} {
		body := data
		if tc.hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" {
			body = []byte(fmt.Sprintf("%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", len(data), data))
		}
		resp := rawRequest(t, "PUT", "/"+b+"/bad", body, tc.hdr, tc.hash)
		if got := errorCode(t, resp); got != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
	// Nothing of the refused uploads became visible.
	if _, err := c.HeadObject(ctxT(t), &awss3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("bad")}); code(err) != "NotFound" {
		t.Fatalf("HeadObject of a refused upload: %v", err)
	}
	// A correct trailer is accepted.
	body := []byte(fmt.Sprintf("%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n", len(data), data, crc32Base64(data)))
	resp := rawRequest(t, "PUT", "/"+b+"/trailer", body, map[string]string{"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": fmt.Sprint(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
	if resp.StatusCode != 200 {
		t.Fatalf("good trailer: %s", errorCode(t, resp))
	}
	got, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("trailer")})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object sent with a trailer = %q, %v", got, err)
	}
	// Malformed XML to DeleteObjects.
	xmlBody := []byte("<Delete><Object><Key>x</Key></Object")
	if got := errorCode(t, rawRequest(t, "POST", "/"+b+"?delete", xmlBody, nil, sha256Hex(xmlBody))); got != "MalformedXML" {
		t.Errorf("malformed Delete XML: %s", got)
	}
}

// TestAWSChunkedUpload sends PutObject over HTTPS with an unseekable body,
// which makes the SDK stream it aws-chunked with a trailing checksum.
func TestAWSChunkedUpload(t *testing.T) {
	c := sdk(shared.tls, testSecretKey)
	b := newBucket(t, c, "chunked-test")
	data := pattern(200<<10, 5)
	for _, alg := range []types.ChecksumAlgorithm{types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc32c, types.ChecksumAlgorithmSha256} {
		key := "chunked-" + string(alg)
		_, err := c.PutObject(ctxT(t), &awss3.PutObjectInput{
			Bucket: aws.String(b), Key: aws.String(key), Body: io.MultiReader(bytes.NewReader(data)),
			ContentLength: aws.Int64(int64(len(data))), ChecksumAlgorithm: alg,
		})
		if err != nil {
			t.Fatalf("aws-chunked PutObject with %s: %v", alg, err)
		}
		got, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String(key)})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GetObject after aws-chunked PUT (%s): %d bytes, %v", alg, len(got), err)
		}
	}
}

func TestAuth(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "auth-test")
	put(t, c, b, "secret.txt", []byte("top secret"))
	ctx := ctxT(t)
	if _, err := sdk(shared.srv, "wrong-secret").ListBuckets(ctx, &awss3.ListBucketsInput{}); code(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	other := awss3.New(awss3.Options{Region: "us-east-1", BaseEndpoint: aws.String(shared.srv.URL), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("UNKNOWNKEY", testSecretKey, "")})
	if _, err := other.ListBuckets(ctx, &awss3.ListBucketsInput{}); code(err) != "InvalidAccessKeyId" {
		t.Fatalf("unknown access key: %v", err)
	}
	resp, err := http.Get(shared.srv.URL + "/" + b + "/secret.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := errorCode(t, resp); resp.StatusCode != 403 || got != "AccessDenied" {
		t.Fatalf("anonymous GET: %d %s", resp.StatusCode, got)
	}
	resp.Body.Close()

	pre := awss3.NewPresignClient(c)
	req, err := pre.PresignGetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("secret.txt")}, awss3.WithPresignExpires(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(req.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "top secret" {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, body)
	}
	tampered := strings.Replace(req.URL, "secret.txt", "secret.txx", 1)
	resp, err = http.Get(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if got := errorCode(t, resp); got != "SignatureDoesNotMatch" {
		t.Fatalf("presigned URL for another key: %s", got)
	}
	resp.Body.Close()

	// A presigned PUT.
	preq, err := pre.PresignPutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("uploaded.txt")}, awss3.WithPresignExpires(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	hr, _ := http.NewRequest(http.MethodPut, preq.URL, strings.NewReader("via presigned PUT"))
	for k, vs := range preq.SignedHeader {
		if k != "Host" {
			hr.Header[k] = vs
		}
	}
	resp, err = http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("presigned PUT: %d", resp.StatusCode)
	}

	// An expired URL: a gateway whose clock is two hours ahead.
	late, err := s3.NewHandler(shared.cl, s3.Config{
		Credentials: []s3.Credential{{AccessKey: testAccessKey, SecretKey: testSecretKey}},
		Now:         func() time.Time { return time.Now().Add(2 * time.Hour) },
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	late.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, req.URL, nil))
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "Request has expired") {
		t.Fatalf("expired presigned URL: %d %s", rec.Code, rec.Body.String())
	}
}

// TestServerRun runs the gateway as cmd/s3gateway does: a Server with its
// own client, stopped by its context.
func TestServerRun(t *testing.T) {
	srv := runServer(t, s3.Config{Credentials: []s3.Credential{{AccessKey: testAccessKey, SecretKey: testSecretKey}}})
	c := awss3.New(awss3.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://" + srv.Addr()), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, "")})
	if _, err := c.CreateBucket(ctxT(t), &awss3.CreateBucketInput{Bucket: aws.String("server-test")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.cl.RemoveAll(context.Background(), "/server-test") })
	if _, err := c.HeadBucket(ctxT(t), &awss3.HeadBucketInput{Bucket: aws.String("server-test")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3.NewServer(s3.ServerConfig{ListenAddr: "127.0.0.1:0", Client: client.ClientConfig{Masters: shared.masters}}); err == nil {
		t.Fatal("a server without credentials or anonymous access was accepted")
	}
}

// TestVirtualHostedStyle addresses a bucket by host name.
func TestVirtualHostedStyle(t *testing.T) {
	h, err := s3.NewHandler(shared.cl, s3.Config{Credentials: []s3.Credential{{AccessKey: testAccessKey, SecretKey: testSecretKey}}, Domain: "s3.cairn.test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	// Every host name dials the test server, as DNS would for the domain.
	addr := srv.Listener.Addr().String()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	_, port, _ := net.SplitHostPort(addr)
	hosts := make(chan string, 100)
	c := awss3.New(awss3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String("http://s3.cairn.test:" + port), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, ""),
		HTTPClient:  &http.Client{Transport: hostRecorder{tr, hosts}},
	})
	b := newBucket(t, c, "vhost-test")
	put(t, c, b, "dir/obj", []byte("by host name"))
	if got, _, err := get(t, sdk(shared.srv, testSecretKey), &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("dir/obj")}); err != nil || string(got) != "by host name" {
		t.Fatalf("path-style GET of a virtual-hosted PUT: %q, %v", got, err)
	}
	out, err := c.ListObjectsV2(ctxT(t), &awss3.ListObjectsV2Input{Bucket: aws.String(b)})
	if err != nil || len(out.Contents) != 1 || aws.ToString(out.Contents[0].Key) != "dir/obj" {
		t.Fatalf("virtual-hosted listing: %v, %v", pageItems(out.Contents, nil), err)
	}
	if host := <-hosts; host != "vhost-test.s3.cairn.test:"+port {
		t.Fatalf("the SDK sent its first request to %s, not to the bucket's host", host)
	}
}

// hostRecorder sends the Host of each request to hosts.
type hostRecorder struct {
	rt    http.RoundTripper
	hosts chan<- string
}

func (h hostRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case h.hosts <- r.URL.Host:
	default:
	}
	return h.rt.RoundTrip(r)
}

// runServer runs a Server of the shared cluster with handler config h
// until the test ends.
func runServer(t *testing.T, h s3.Config) *s3.Server {
	t.Helper()
	return runGateway(t, s3.ServerConfig{
		ListenAddr: "127.0.0.1:0", Client: client.ClientConfig{Masters: shared.masters}, Handler: h,
	})
}

// runGateway runs a Server of cfg until the test ends; a listener in cfg
// is closed if the Server cannot be made.
func runGateway(t *testing.T, cfg s3.ServerConfig) *s3.Server {
	t.Helper()
	srv, err := s3.NewServer(cfg)
	if err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

// TestStagingSweep: a staging file left in a bucket's hidden directory
// by a PutObject cut short (a gateway crash) is removed by the sweep of a
// running Server once it is older than the TTL; a recent one, an upload
// in progress and the objects stay.
func TestStagingSweep(t *testing.T) {
	ctx := ctxT(t)
	c := sdk(shared.srv, testSecretKey)
	bucket := newBucket(t, c, "sweep")
	put(t, c, bucket, "kept", []byte("object"))
	up, err := c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	hidden := "/" + bucket + "/.cairn-multipart"
	stage := func(name string, age time.Duration) string {
		p := hidden + "/" + name
		f, err := shared.cl.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(pattern(100_000, 3)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		if err := shared.cl.Chtimes(ctx, p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	abandoned := stage("put-abandoned", 48*time.Hour)
	recent := stage("put-recent", time.Minute)

	runServer(t, s3.Config{Credentials: []s3.Credential{{AccessKey: testAccessKey, SecretKey: testSecretKey}}, StagingTTL: time.Hour})
	for {
		_, err := shared.cl.Stat(ctx, abandoned)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the abandoned staging file is still there: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := shared.cl.Stat(ctx, recent); err != nil {
		t.Errorf("the recent staging file: %v", err)
	}
	if _, _, err := get(t, c, &awss3.GetObjectInput{Bucket: &bucket, Key: aws.String("kept")}); err != nil {
		t.Errorf("object after the sweep: %v", err)
	}
	ups, err := c.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil || len(ups.Uploads) != 1 || *ups.Uploads[0].UploadId != *up.UploadId {
		t.Errorf("uploads after the sweep: %v, %v", ups, err)
	}
	// Nothing else is that old: a second sweep removes nothing.
	if n, err := shared.handler.SweepStaging(ctx, time.Now().Add(-time.Hour)); n != 0 || err != nil {
		t.Errorf("second sweep removed %d: %v", n, err)
	}
}
