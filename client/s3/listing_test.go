package s3_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func newSHA256() hash.Hash { return sha256.New() }

func crc32Base64(b []byte) string {
	var s [4]byte
	v := crc32.ChecksumIEEE(b)
	s[0], s[1], s[2], s[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return base64.StdEncoding.EncodeToString(s[:])
}

// modelList is S3's listing of keys, computed the plain way: every key
// after marker that begins with prefix, rolled up at delim.
func modelList(keys []string, prefix, delim, marker string) []string {
	var out []string
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) || k <= marker {
			continue
		}
		item := k
		if delim != "" {
			if i := strings.Index(k[len(prefix):], delim); i >= 0 {
				item = k[:len(prefix)+i+len(delim)]
				if strings.HasPrefix(marker, item) {
					continue
				}
			}
		}
		if len(out) == 0 || out[len(out)-1] != item {
			out = append(out, item)
		}
	}
	return out
}

var listKeys = []string{
	"a", "a-b", "a.txt", "a/b", "a/b/c", "a/b/d", "a/b-c", "a/bc", "a/b c/x", "a0",
	"b/1", "b/2/3", "b/2/4", "b/22", "b/2-", "c d/e", "dir/x/y/z/w", "dir/x/y/z2", "dir/x/y2",
	"ü/ñ", "u/v", "z", "z/z/z", "~tilde", "Upper/Case", "q+plus", "percent%25",
}

func TestListObjectsMatchModel(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "list-test")
	var keys []string
	for _, k := range listKeys {
		// An object cannot also be a prefix of a directory ("a" and
		// "a/b"): keep the first that maps.
		if _, err := c.PutObject(ctxT(t), &awss3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			if code(err) != "KeyConflict" {
				t.Fatalf("PutObject %q: %v", k, err)
			}
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) < 20 {
		t.Fatalf("only %d keys stored: %q", len(keys), keys)
	}
	slices.Sort(keys)
	ctx := ctxT(t)
	for _, prefix := range []string{"", "a", "a/", "b/2", "dir/x/", "nothing", "ü"} {
		for _, delim := range []string{"", "/", "-", "b"} {
			for _, max := range []int32{1, 2, 5, 1000} {
				want := modelList(keys, prefix, delim, "")
				// V2 with continuation tokens.
				var got []string
				var token *string
				for pages := 0; ; pages++ {
					if pages > 100 {
						t.Fatalf("V2 prefix %q delim %q max %d: no end", prefix, delim, max)
					}
					out, err := c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String(b), Prefix: aws.String(prefix), Delimiter: aws.String(delim), MaxKeys: aws.Int32(max), ContinuationToken: token})
					if err != nil {
						t.Fatal(err)
					}
					page := pageItems(out.Contents, out.CommonPrefixes)
					if len(page) > int(max) || int(aws.ToInt32(out.KeyCount)) != len(page) {
						t.Fatalf("V2 page of %d items, KeyCount %d, max %d", len(page), aws.ToInt32(out.KeyCount), max)
					}
					got = append(got, page...)
					if !aws.ToBool(out.IsTruncated) {
						break
					}
					token = out.NextContinuationToken
				}
				if !slices.Equal(got, want) {
					t.Errorf("V2 prefix %q delim %q max %d:\n got %q\nwant %q", prefix, delim, max, got, want)
				}
				// V1 with markers.
				got = nil
				var marker *string
				for pages := 0; ; pages++ {
					if pages > 100 {
						t.Fatalf("V1 prefix %q delim %q max %d: no end", prefix, delim, max)
					}
					out, err := c.ListObjects(ctx, &awss3.ListObjectsInput{Bucket: aws.String(b), Prefix: aws.String(prefix), Delimiter: aws.String(delim), MaxKeys: aws.Int32(max), Marker: marker})
					if err != nil {
						t.Fatal(err)
					}
					page := pageItems(out.Contents, out.CommonPrefixes)
					got = append(got, page...)
					if !aws.ToBool(out.IsTruncated) {
						break
					}
					next := aws.ToString(out.NextMarker)
					if next == "" {
						next = page[len(page)-1]
					}
					marker = &next
				}
				if !slices.Equal(got, want) {
					t.Errorf("V1 prefix %q delim %q max %d:\n got %q\nwant %q", prefix, delim, max, got, want)
				}
			}
		}
	}
	// start-after, and the ETags and sizes of listed objects.
	out, err := c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String(b), StartAfter: aws.String("b/2/3")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pageItems(out.Contents, nil), modelList(keys, "", "", "b/2/3"); !slices.Equal(got, want) {
		t.Errorf("start-after b/2/3:\n got %q\nwant %q", got, want)
	}
	for _, o := range out.Contents {
		if aws.ToString(o.ETag) != md5ETag([]byte(aws.ToString(o.Key))) || aws.ToInt64(o.Size) != int64(len(aws.ToString(o.Key))) {
			t.Errorf("listed %q with ETag %s size %d", aws.ToString(o.Key), aws.ToString(o.ETag), aws.ToInt64(o.Size))
		}
	}
	// encoding-type=url encodes keys.
	enc, err := c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String(b), Prefix: aws.String("c"), EncodingType: types.EncodingTypeUrl})
	if err != nil {
		t.Fatal(err)
	}
	if len(enc.Contents) != 1 || aws.ToString(enc.Contents[0].Key) != "c%20d/e" {
		t.Errorf("encoding-type=url listing: %v", pageItems(enc.Contents, nil))
	}
}

func pageItems(objs []types.Object, cps []types.CommonPrefix) []string {
	var out []string
	for _, o := range objs {
		out = append(out, aws.ToString(o.Key))
	}
	for _, p := range cps {
		out = append(out, aws.ToString(p.Prefix))
	}
	slices.Sort(out)
	return out
}

func TestCopyAndDeleteObjects(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "copy-test")
	b2 := newBucket(t, c, "copy-test-dst")
	ctx := ctxT(t)
	data := pattern(50<<10, 9)
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("src"), Body: bytes.NewReader(data), ContentType: aws.String("text/x-src"), Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	out, err := c.CopyObject(ctx, &awss3.CopyObjectInput{Bucket: aws.String(b2), Key: aws.String("deep/copy"), CopySource: aws.String(b + "/src")})
	if err != nil || aws.ToString(out.CopyObjectResult.ETag) != md5ETag(data) {
		t.Fatalf("CopyObject = %v, %v", out, err)
	}
	got, gout, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b2), Key: aws.String("deep/copy")})
	if err != nil || !bytes.Equal(got, data) || gout.Metadata["k"] != "v" || aws.ToString(gout.ContentType) != "text/x-src" {
		t.Fatalf("copied object: %d bytes, meta %v, %v", len(got), gout, err)
	}
	if _, err := c.CopyObject(ctx, &awss3.CopyObjectInput{Bucket: aws.String(b), Key: aws.String("replaced"), CopySource: aws.String(b + "/src"),
		MetadataDirective: types.MetadataDirectiveReplace, Metadata: map[string]string{"new": "1"}, ContentType: aws.String("text/new")}); err != nil {
		t.Fatal(err)
	}
	head, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("replaced")})
	if err != nil || head.Metadata["new"] != "1" || head.Metadata["k"] != "" || aws.ToString(head.ContentType) != "text/new" {
		t.Fatalf("REPLACE directive: %v, %v", head, err)
	}
	if _, err := c.CopyObject(ctx, &awss3.CopyObjectInput{Bucket: aws.String(b), Key: aws.String("src"), CopySource: aws.String(b + "/src")}); code(err) != "InvalidRequest" {
		t.Fatalf("copy onto itself without REPLACE: %v", err)
	}
	if _, err := c.CopyObject(ctx, &awss3.CopyObjectInput{Bucket: aws.String(b), Key: aws.String("src"), CopySource: aws.String(b + "/src"),
		MetadataDirective: types.MetadataDirectiveReplace, Metadata: map[string]string{"self": "yes"}}); err != nil {
		t.Fatalf("copy onto itself with REPLACE: %v", err)
	}
	if head, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("src")}); err != nil || head.Metadata["self"] != "yes" || aws.ToString(head.ETag) != md5ETag(data) {
		t.Fatalf("after self-copy: %v, %v", head, err)
	}
	if _, err := c.CopyObject(ctx, &awss3.CopyObjectInput{Bucket: aws.String(b), Key: aws.String("x"), CopySource: aws.String(b + "/src"), CopySourceIfMatch: aws.String(`"nope"`)}); code(err) != "PreconditionFailed" {
		t.Fatalf("copy-source-if-match miss: %v", err)
	}
	if _, err := c.CopyObject(ctx, &awss3.CopyObjectInput{Bucket: aws.String(b), Key: aws.String("x"), CopySource: aws.String(b + "/missing")}); code(err) != "NoSuchKey" {
		t.Fatalf("copy of a missing source: %v", err)
	}

	for _, k := range []string{"d/1", "d/2", "d/e/3"} {
		put(t, c, b, k, []byte(k))
	}
	del, err := c.DeleteObjects(ctx, &awss3.DeleteObjectsInput{Bucket: aws.String(b), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
		{Key: aws.String("d/1")}, {Key: aws.String("d/e/3")}, {Key: aws.String("never")}, {Key: aws.String("bad/../key")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, d := range del.Deleted {
		deleted = append(deleted, aws.ToString(d.Key))
	}
	slices.Sort(deleted)
	if !slices.Equal(deleted, []string{"d/1", "d/e/3", "never"}) || len(del.Errors) != 1 || aws.ToString(del.Errors[0].Code) != "InvalidArgument" {
		t.Fatalf("DeleteObjects: deleted %q, errors %+v", deleted, del.Errors)
	}
	if _, err := shared.cl.Stat(ctx, "/"+b+"/d/e"); err == nil {
		t.Fatal("emptied directory d/e left behind")
	}
	if _, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("d/2")}); err != nil {
		t.Fatalf("an object not in the delete list: %v", err)
	}
}
