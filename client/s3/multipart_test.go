package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cairnfs/cairn/proto/masterpb"
)

func TestMultipart(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "multipart-test")
	ctx := ctxT(t)
	src := pattern(20<<10, 11)
	put(t, c, b, "copy-src", src)
	cr, err := c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("big/object"), ContentType: aws.String("video/x-test"), Metadata: map[string]string{"m": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	id := cr.UploadId
	parts := [][]byte{pattern(testMinPart+100, 1), pattern(testMinPart, 2), nil, pattern(1000, 4)}
	parts[2] = src[1000 : 1000+testMinPart+7] // by UploadPartCopy
	var completed []types.CompletedPart
	var sums []byte
	for i, p := range parts {
		n := int32(i + 1)
		var etag *string
		if i == 2 {
			out, err := c.UploadPartCopy(ctx, &awss3.UploadPartCopyInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, PartNumber: aws.Int32(n),
				CopySource: aws.String(b + "/copy-src"), CopySourceRange: aws.String(fmt.Sprintf("bytes=1000-%d", 1000+len(p)-1))})
			if err != nil {
				t.Fatal(err)
			}
			etag = out.CopyPartResult.ETag
		} else {
			out, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, PartNumber: aws.Int32(n), Body: bytes.NewReader(p)})
			if err != nil {
				t.Fatal(err)
			}
			etag = out.ETag
		}
		if aws.ToString(etag) != md5ETag(p) {
			t.Fatalf("part %d ETag %s, want %s", n, aws.ToString(etag), md5ETag(p))
		}
		s := md5.Sum(p)
		sums = append(sums, s[:]...)
		completed = append(completed, types.CompletedPart{PartNumber: aws.Int32(n), ETag: etag})
	}
	lp, err := c.ListParts(ctx, &awss3.ListPartsInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, MaxParts: aws.Int32(3)})
	if err != nil || len(lp.Parts) != 3 || !aws.ToBool(lp.IsTruncated) || aws.ToInt64(lp.Parts[0].Size) != int64(len(parts[0])) {
		t.Fatalf("ListParts = %+v, %v", lp, err)
	}
	lp, err = c.ListParts(ctx, &awss3.ListPartsInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, PartNumberMarker: lp.NextPartNumberMarker})
	if err != nil || len(lp.Parts) != 1 || aws.ToInt32(lp.Parts[0].PartNumber) != 4 {
		t.Fatalf("ListParts second page = %+v, %v", lp, err)
	}
	other, err := c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("abandoned")})
	if err != nil {
		t.Fatal(err)
	}
	lu, err := c.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(b)})
	if err != nil || len(lu.Uploads) != 2 || aws.ToString(lu.Uploads[0].Key) != "abandoned" || aws.ToString(lu.Uploads[1].UploadId) != aws.ToString(id) {
		t.Fatalf("ListMultipartUploads = %+v, %v", lu, err)
	}
	// The hidden directory never shows in listings.
	if l, err := c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String(b)}); err != nil || len(l.Contents) != 1 || len(l.CommonPrefixes) != 0 {
		t.Fatalf("listing during uploads: %v, %v", pageItems(l.Contents, l.CommonPrefixes), err)
	}
	// Refusals: a small part before the last, wrong order, a wrong ETag.
	bad := []types.CompletedPart{completed[3], completed[0]}
	if _, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: bad}}); code(err) != "InvalidPartOrder" {
		t.Fatalf("parts out of order: %v", err)
	}
	missing := []types.CompletedPart{completed[0], {PartNumber: aws.Int32(9), ETag: completed[3].ETag}}
	if _, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: missing}}); code(err) != "InvalidPart" {
		t.Fatalf("a part never uploaded: %v", err)
	}
	wrong := slices.Clone(completed)
	wrong[1].ETag = aws.String(`"00000000000000000000000000000000"`)
	if _, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: wrong}}); code(err) != "InvalidPart" {
		t.Fatalf("a wrong part ETag: %v", err)
	}
	// Complete must move the parts' slices, not copy their bytes: the
	// object's slices are the parts' own.
	var partSlices []uint64
	for i := range parts {
		partSlices = append(partSlices, sliceIDs(t, fmt.Sprintf("/%s/.cairn-multipart/%s/%d", b, aws.ToString(id), i+1))...)
	}
	done, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: completed}})
	if err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	all := bytes.Join(parts, nil)
	s := md5.Sum(sums)
	wantETag := fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(s[:]), len(parts))
	if aws.ToString(done.ETag) != wantETag {
		t.Fatalf("multipart ETag %s, want %s", aws.ToString(done.ETag), wantETag)
	}
	got, gout, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("big/object")})
	if err != nil || !bytes.Equal(got, all) || aws.ToString(gout.ETag) != wantETag || aws.ToString(gout.ContentType) != "video/x-test" || gout.Metadata["m"] != "1" {
		t.Fatalf("completed object: %d bytes (want %d), %+v, %v", len(got), len(all), gout, err)
	}
	// Parallel downloaders fetch a multipart object part by part.
	var off int
	for i, p := range parts {
		got, gout, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("big/object"), PartNumber: aws.Int32(int32(i + 1))})
		want := fmt.Sprintf("bytes %d-%d/%d", off, off+len(p)-1, len(all))
		if err != nil || !bytes.Equal(got, p) || aws.ToInt32(gout.PartsCount) != int32(len(parts)) || aws.ToString(gout.ContentRange) != want {
			t.Fatalf("GET part %d: %d bytes (want %d), parts %d, range %q (want %q), %v",
				i+1, len(got), len(p), aws.ToInt32(gout.PartsCount), aws.ToString(gout.ContentRange), want, err)
		}
		off += len(p)
	}
	if h, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("big/object"), PartNumber: aws.Int32(2)}); err != nil ||
		aws.ToInt64(h.ContentLength) != int64(len(parts[1])) || aws.ToInt32(h.PartsCount) != int32(len(parts)) {
		t.Fatalf("HEAD part 2: %+v, %v", h, err)
	}
	if _, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("big/object"), PartNumber: aws.Int32(int32(len(parts) + 1))}); code(err) != "InvalidPartNumber" {
		t.Fatalf("GET a part past the last: %v, want InvalidPartNumber", err)
	}
	// An ordinary object is its own part 1, and has no part 2.
	if got, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("copy-src"), PartNumber: aws.Int32(1)}); err != nil || !bytes.Equal(got, src) {
		t.Fatalf("GET part 1 of a plain object: %d bytes, %v", len(got), err)
	}
	if _, _, err := get(t, c, &awss3.GetObjectInput{Bucket: aws.String(b), Key: aws.String("copy-src"), PartNumber: aws.Int32(2)}); code(err) != "InvalidPartNumber" {
		t.Fatalf("GET part 2 of a plain object: %v, want InvalidPartNumber", err)
	}
	if got := sliceIDs(t, "/"+b+"/big/object"); len(partSlices) == 0 || !slices.Equal(got, partSlices) {
		t.Fatalf("completed object's slices %v, want the parts' %v", got, partSlices)
	}
	if _, err := c.ListParts(ctx, &awss3.ListPartsInput{Bucket: aws.String(b), Key: aws.String("big/object"), UploadId: id}); code(err) != "NoSuchUpload" {
		t.Fatalf("ListParts after Complete: %v", err)
	}
	// A part smaller than the minimum before the last one.
	var tiny []types.CompletedPart
	for n := int32(1); n <= 2; n++ {
		out, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: aws.String(b), Key: aws.String("abandoned"), UploadId: other.UploadId, PartNumber: aws.Int32(n), Body: strings.NewReader("tiny")})
		if err != nil {
			t.Fatal(err)
		}
		tiny = append(tiny, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("abandoned"), UploadId: other.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: tiny}}); code(err) != "EntityTooSmall" {
		t.Fatalf("a too small part: %v", err)
	}
	// A key that became a prefix meanwhile: refused, the parts kept.
	put(t, c, b, "abandoned/child", []byte("x"))
	if _, err := c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("abandoned"), UploadId: other.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: tiny[:1]}}); code(err) != "KeyConflict" {
		t.Fatalf("Complete onto a prefix: %v", err)
	}
	if lp, err := c.ListParts(ctx, &awss3.ListPartsInput{Bucket: aws.String(b), Key: aws.String("abandoned"), UploadId: other.UploadId}); err != nil || len(lp.Parts) != 2 {
		t.Fatalf("parts after a refused Complete: %+v, %v", lp, err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("abandoned"), UploadId: other.UploadId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: aws.String(b), Key: aws.String("abandoned"), UploadId: other.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("x")}); code(err) != "NoSuchUpload" {
		t.Fatalf("UploadPart after Abort: %v", err)
	}
	if _, err := c.UploadPart(ctx, &awss3.UploadPartInput{Bucket: aws.String(b), Key: aws.String("abandoned"), UploadId: aws.String("../../etc"), PartNumber: aws.Int32(1), Body: strings.NewReader("x")}); code(err) != "NoSuchUpload" {
		t.Fatalf("UploadPart with a path as upload ID: %v", err)
	}
}

// sliceIDs returns the IDs of the slices holding the file at p.
func sliceIDs(t *testing.T, p string) []uint64 {
	t.Helper()
	fi, err := shared.cl.Stat(ctxT(t), p)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	err = shared.cl.Conn().Do(ctxT(t), func(ctx context.Context, mc masterpb.MasterClient) error {
		resp, err := mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: fi.Inode()})
		if err != nil {
			return err
		}
		ids = nil
		for _, s := range resp.Slices {
			ids = append(ids, s.SliceId)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
