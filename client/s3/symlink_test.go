package s3_test

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestSymlinksStayOutside: symlinks made through a mount inside a bucket
// never let a key resolve elsewhere (another bucket, a file outside every
// bucket), whether the link is the key's last name or one of its
// directories; listings do not show them either.
func TestSymlinksStayOutside(t *testing.T) {
	u := startGateway(t)
	c := awss3.New(awss3.Options{Region: "us-east-1", BaseEndpoint: aws.String(u), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, "")})
	links := newBucket(t, c, "symlink-links")
	other := newBucket(t, c, "symlink-other")
	put(t, c, other, "secret", []byte("not yours through links"))
	put(t, c, links, "plain", []byte("ok"))
	ctx := context.Background()
	top := "/symlink-top.txt"
	f, err := shared.cl.Create(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("outside every bucket")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.cl.Remove(context.Background(), top) })
	for name, target := range map[string]string{
		"to-other": "/" + other + "/secret",
		"to-top":   top,
		"relative": "../" + other + "/secret",
		"dir":      "/" + other,
	} {
		if err := shared.cl.Symlink(ctx, target, "/"+links+"/"+name); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"to-other", "to-top", "relative", "dir/secret"} {
		if _, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(links), Key: aws.String(key)}); code(err) != "NoSuchKey" {
			t.Errorf("GET %s through a symlink: %v, want NoSuchKey", key, err)
		}
		if _, err := c.HeadObject(ctxT(t), &awss3.HeadObjectInput{Bucket: aws.String(links), Key: aws.String(key)}); err == nil {
			t.Errorf("HEAD %s through a symlink succeeded", key)
		}
	}
	if _, err := c.CopyObject(ctxT(t), &awss3.CopyObjectInput{Bucket: aws.String(links), Key: aws.String("copied"), CopySource: aws.String(links + "/to-other")}); err == nil {
		t.Error("CopyObject from a symlink succeeded")
	}
	// A write through a linked directory must not land in the other bucket.
	_, _ = c.PutObject(ctxT(t), &awss3.PutObjectInput{Bucket: aws.String(links), Key: aws.String("dir/planted")})
	if _, err := shared.cl.Stat(ctx, "/"+other+"/planted"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a PUT through a linked directory reached the other bucket: %v", err)
	}
	out, err := c.ListObjectsV2(ctxT(t), &awss3.ListObjectsV2Input{Bucket: aws.String(links)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	if len(keys) != 1 || keys[0] != "plain" {
		t.Errorf("listing shows %v, want only [plain]", keys)
	}
	if got, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(links), Key: aws.String("plain")}); err != nil || string(got) != "ok" {
		t.Errorf("GET of an ordinary key: %q, %v", got, err)
	}
}
