package s3_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestSubresources sends every method to S3's sub-resources of a bucket
// and of an object: the few reads the gateway serves answer them, all
// else is NotImplemented, and nothing ever changes the object or the
// bucket (a PUT ?retention taken for an upload would overwrite it, a
// DELETE ?tagging taken for a deletion would remove it).
func TestSubresources(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	ctx := ctxT(t)
	b := newBucket(t, c, "subresource-test")
	data := []byte("must survive every sub-resource request")
	put(t, c, b, "dir/obj", data)

	// served: the reads that have an answer, by sub-resource, with what
	// the answer must contain; "bucket" and "object" say where.
	type answer struct{ bucket, object string }
	served := map[string]answer{
		"acl":        {"<Permission>FULL_CONTROL</Permission>", "<Permission>FULL_CONTROL</Permission>"},
		"versioning": {"<VersioningConfiguration", ""},
		"tagging":    {"<TagSet></TagSet>", "<TagSet></TagSet>"},
		"location":   {"<LocationConstraint", ""},
	}
	subs := []string{
		"acl", "policy", "policyStatus", "versioning", "lifecycle", "cors", "tagging", "encryption",
		"replication", "website", "logging", "notification", "object-lock", "retention", "legal-hold",
		"torrent", "restore", "select", "versions", "accelerate", "requestPayment", "ownershipControls",
		"publicAccessBlock", "intelligent-tiering", "analytics", "metrics", "inventory", "attributes",
		"location", "renameObject", "session",
	}
	overwrite := []byte("this body must never become the object")
	for _, sub := range subs {
		for _, target := range []string{"bucket", "object"} {
			path := "/" + b
			if target == "object" {
				path += "/dir/obj"
			}
			for _, method := range []string{"GET", "HEAD", "PUT", "POST", "DELETE"} {
				var body []byte
				if method == "PUT" || method == "POST" {
					body = overwrite
				}
				resp := rawRequest(t, method, path+"?"+sub, body, nil, sha256Hex(body))
				want := served[sub].bucket
				if target == "object" {
					want = served[sub].object
				}
				if method == "GET" && want != "" {
					var got bytes.Buffer
					got.ReadFrom(resp.Body)
					if resp.StatusCode != http.StatusOK || !strings.Contains(got.String(), want) {
						t.Errorf("%s %s?%s = %d %s, want 200 with %s", method, path, sub, resp.StatusCode, got.String(), want)
					}
					continue
				}
				if resp.StatusCode != http.StatusNotImplemented {
					t.Errorf("%s %s?%s = %d, want 501", method, path, sub, resp.StatusCode)
					continue
				}
				if method != "HEAD" {
					if code := errorCode(t, resp); code != "NotImplemented" {
						t.Errorf("%s %s?%s: code %s, want NotImplemented", method, path, sub, code)
					}
				}
			}
		}
	}

	// Nothing changed: the object, its ETag, the bucket's keys.
	if got := readCairn(t, "/"+b+"/dir/obj"); !bytes.Equal(got, data) {
		t.Errorf("object changed to %q", got)
	}
	if head, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("dir/obj")}); err != nil || aws.ToString(head.ETag) != md5ETag(data) {
		t.Errorf("HeadObject after the sub-resource requests: %v", err)
	}
	l, err := c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String(b)})
	if err != nil || len(l.Contents) != 1 || aws.ToString(l.Contents[0].Key) != "dir/obj" {
		t.Errorf("bucket's keys after the sub-resource requests: %v, %v", pageItems(l.Contents, l.CommonPrefixes), err)
	}

	// The served reads parse as the SDK expects them.
	acl, err := c.GetBucketAcl(ctx, &awss3.GetBucketAclInput{Bucket: aws.String(b)})
	if err != nil || len(acl.Grants) != 1 || acl.Grants[0].Permission != types.PermissionFullControl ||
		acl.Grants[0].Grantee.Type != types.TypeCanonicalUser || aws.ToString(acl.Owner.ID) == "" || aws.ToString(acl.Grants[0].Grantee.ID) != aws.ToString(acl.Owner.ID) {
		t.Errorf("GetBucketAcl = %+v, %v", acl, err)
	}
	oacl, err := c.GetObjectAcl(ctx, &awss3.GetObjectAclInput{Bucket: aws.String(b), Key: aws.String("dir/obj")})
	if err != nil || len(oacl.Grants) != 1 || oacl.Grants[0].Permission != types.PermissionFullControl {
		t.Errorf("GetObjectAcl = %+v, %v", oacl, err)
	}
	if v, err := c.GetBucketVersioning(ctx, &awss3.GetBucketVersioningInput{Bucket: aws.String(b)}); err != nil || v.Status != "" {
		t.Errorf("GetBucketVersioning = %+v, %v", v, err)
	}
	if tg, err := c.GetObjectTagging(ctx, &awss3.GetObjectTaggingInput{Bucket: aws.String(b), Key: aws.String("dir/obj")}); err != nil || len(tg.TagSet) != 0 {
		t.Errorf("GetObjectTagging = %+v, %v", tg, err)
	}
	if tg, err := c.GetBucketTagging(ctx, &awss3.GetBucketTaggingInput{Bucket: aws.String(b)}); err != nil || len(tg.TagSet) != 0 {
		t.Errorf("GetBucketTagging = %+v, %v", tg, err)
	}
	if _, err := c.GetObjectAcl(ctx, &awss3.GetObjectAclInput{Bucket: aws.String(b), Key: aws.String("dir/missing")}); code(err) != "NoSuchKey" {
		t.Errorf("GetObjectAcl of a missing key: %v", err)
	}
	if _, err := c.GetBucketAcl(ctx, &awss3.GetBucketAclInput{Bucket: aws.String("subresource-missing")}); code(err) != "NoSuchBucket" {
		t.Errorf("GetBucketAcl of a missing bucket: %v", err)
	}
	// The SDK's own calls of unserved sub-resources get NotImplemented.
	if _, err := c.PutObjectTagging(ctx, &awss3.PutObjectTaggingInput{Bucket: aws.String(b), Key: aws.String("dir/obj"), Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}}); code(err) != "NotImplemented" {
		t.Errorf("PutObjectTagging: %v", err)
	}
	if _, err := c.PutBucketVersioning(ctx, &awss3.PutBucketVersioningInput{Bucket: aws.String(b), VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); code(err) != "NotImplemented" {
		t.Errorf("PutBucketVersioning: %v", err)
	}
	if got := readCairn(t, "/"+b+"/dir/obj"); !bytes.Equal(got, data) {
		t.Errorf("object changed to %q", got)
	}
}
