package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// patternReader is a seekable stream of size bytes: stamped 1 MiB blocks
// as in the sequential files, generated on the fly so that a large object
// needs no buffer of its size. The SDK seeks it to sign the payload.
type patternReader struct {
	pattern []byte
	file    int64
	size    int64
	off     int64
	block   []byte // the current block, stamped
	blk     int64
}

func newPatternReader(pattern []byte, file, size int64) *patternReader {
	return &patternReader{pattern: pattern, file: file, size: size, block: make([]byte, len(pattern)), blk: -1}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	bs := int64(len(r.pattern))
	if blk := r.off / bs; blk != r.blk {
		stampBlock(r.block, r.pattern, r.file, blk)
		r.blk = blk
	}
	within := r.off % bs
	n := copy(p, r.block[within:min(bs, within+r.size-r.off)])
	r.off += int64(n)
	return n, nil
}

func (r *patternReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative offset")
	}
	r.off = offset
	return offset, nil
}

// verifyWriter checks a stream against the pattern as it is written.
type verifyWriter struct {
	want *patternReader
	buf  []byte
}

func (v *verifyWriter) Write(p []byte) (int, error) {
	if len(v.buf) < len(p) {
		v.buf = make([]byte, len(p))
	}
	n, _ := io.ReadFull(v.want, v.buf[:len(p)])
	if n != len(p) || !bytes.Equal(p, v.buf[:n]) {
		return 0, fmt.Errorf("wrong bytes near offset %d", v.want.off-int64(n))
	}
	return len(p), nil
}

// newS3Client returns an S3 client for ep that uses hc. It signs with
// Signature V4 over path-style URLs and asks for checksums only where
// the API requires them, which any S3-compatible server accepts.
func newS3Client(ep s3Endpoint, hc *http.Client) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint:               aws.String(ep.URL),
		Region:                     "us-east-1",
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, ""),
		HTTPClient:                 hc,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// runS3 drives the S3 endpoint with aws-sdk-go-v2 in a bucket of its own:
// PUT and GET of cfg.Clients large objects of Size/Clients bytes in
// parallel, then PUT, GET and DELETE of cfg.Files 4 KiB objects,
// cfg.Clients at a time. The bucket and objects are removed at the end.
func runS3(ctx context.Context, e *env) ([]Result, error) {
	if e.s3.URL == "" {
		return nil, notAvailable("%v", e.s3Err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: e.cfg.Clients * 2}
	defer tr.CloseIdleConnections()
	cl := newS3Client(e.s3, &http.Client{Transport: tr})
	id := make([]byte, 4)
	rand.Read(id)
	bucket := fmt.Sprintf("cairn-bench-%x", id)
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	var keys []string
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, k := range keys {
			cl.DeleteObject(cctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: aws.String(k)})
		}
		cl.DeleteBucket(cctx, &s3.DeleteBucketInput{Bucket: &bucket})
	}()

	n := e.cfg.Clients
	size := e.cfg.Size / int64(n)
	large := func(i int) string { return fmt.Sprintf("large-%d", i) }
	for i := range n {
		keys = append(keys, large(i))
	}
	var out []Result
	bar := e.prog.start("s3: put large", size*int64(n), "B")
	wall, err := concurrently(n, func(i int) error {
		// The SDK reads a seekable body twice over plain HTTP (once to
		// sign it), so the bar counts whole objects, not bytes read.
		_, err := cl.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &bucket, Key: aws.String(large(i)), ContentLength: aws.Int64(size),
			Body: newPatternReader(e.block, int64(i), size),
		})
		if err == nil {
			bar.add(size)
		}
		return err
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("put large: %w", err)
	}
	r := bytesResult("s3", "put large", size*int64(n), wall, baseDiskWrite)
	r.Note = fmt.Sprintf("%d objects of %s", n, human(size))
	out = append(out, r)

	e.evictChunkservers()
	bar = e.prog.start("s3: get large", size*int64(n), "B")
	wall, err = concurrently(n, func(i int) error {
		resp, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(large(i))})
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.Copy(&verifyWriter{want: newPatternReader(e.block, int64(i), size)}, &countingReader{r: resp.Body, bar: bar})
		if err == nil && got != size {
			err = fmt.Errorf("%s: %d bytes, want %d", large(i), got, size)
		}
		return err
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("get large: %w", err)
	}
	out = append(out, bytesResult("s3", "get large", size*int64(n), wall, baseDiskRead))

	small := func(i int) string { return fmt.Sprintf("small/%06d", i) }
	steps := []struct {
		name, baseline string
		op             func(ctx context.Context, w, i int) error
	}{
		{"put 4KiB", baseFsync, func(ctx context.Context, w, i int) error {
			_, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(small(i)), ContentLength: aws.Int64(fourKiB),
				Body: newPatternReader(e.block, int64(i), fourKiB)})
			return err
		}},
		{"get 4KiB", baseTCPRTT, func(ctx context.Context, w, i int) error {
			resp, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(small(i))})
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if len(b) != fourKiB {
				return fmt.Errorf("%s: %d bytes", small(i), len(b))
			}
			return checkBlock(b, e.block, int64(i), 0)
		}},
		{"delete 4KiB", baseFsync, func(ctx context.Context, w, i int) error {
			_, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: aws.String(small(i))})
			return err
		}},
	}
	for i := range e.cfg.Files {
		keys = append(keys, small(i))
	}
	for _, st := range steps {
		lat := &latencies{}
		bar := e.prog.start("s3: "+st.name, int64(e.cfg.Files), "objects")
		wall, err := parallel(ctx, n, e.cfg.Files, lat, bar, st.op)
		bar.done()
		if err != nil {
			return out, fmt.Errorf("%s: %w", st.name, err)
		}
		out = append(out, opsResult("s3", st.name, int64(e.cfg.Files), wall, lat, st.baseline))
	}
	return out, nil
}

// countingReader counts what passes through it on a progress bar.
type countingReader struct {
	r   io.Reader
	bar *bar
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bar.add(int64(n))
	return n, err
}
