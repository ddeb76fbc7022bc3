package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// benchSDK is an SDK client tuned as for bulk transfers over plain HTTP:
// an unsigned payload (no client-side SHA-256 of the body), CRC32 still
// sent and verified by default.
func benchSDK() *awss3.Client {
	return awss3.New(awss3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(shared.srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(testAccessKey, testSecretKey, ""),
		HTTPClient:  shared.srv.Client(), RetryMaxAttempts: 1,
	}, awss3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
}

func benchBucket(b *testing.B, name string) string {
	b.Helper()
	if err := shared.cl.Mkdir(context.Background(), "/"+name, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shared.cl.RemoveAll(context.Background(), "/"+name) })
	return name
}

// BenchmarkThroughputVsClient moves one object of CAIRN_S3_BENCH_SIZE
// bytes (default 64 MiB; the figure is for 1 GiB) per iteration
// through the client library and through the gateway with the SDK, in
// the same run, and reports each rate and the gateway's share.
func BenchmarkThroughputVsClient(b *testing.B) {
	size := 64 << 20
	if v, err := strconv.Atoi(os.Getenv("CAIRN_S3_BENCH_SIZE")); err == nil && v > 0 {
		size = v
	}
	bucket := benchBucket(b, "bench-throughput")
	c := benchSDK()
	ctx := context.Background()
	data := pattern(size, 7)
	var clientPut, s3Put, clientGet, s3Get time.Duration
	b.SetBytes(int64(size))
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		f, err := shared.cl.Create(ctx, fmt.Sprintf("/%s/lib-%d", bucket, i))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		clientPut += time.Since(start)

		start = time.Now()
		key := fmt.Sprintf("s3-%d", i)
		if _, err := c.PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
			b.Fatal(err)
		}
		s3Put += time.Since(start)

		start = time.Now()
		f, err = shared.cl.Open(ctx, fmt.Sprintf("/%s/lib-%d", bucket, i))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, f)
		f.Close()
		if err != nil || n != int64(size) {
			b.Fatal(n, err)
		}
		clientGet += time.Since(start)

		start = time.Now()
		out, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			b.Fatal(err)
		}
		n, err = io.Copy(io.Discard, out.Body)
		out.Body.Close()
		if err != nil || n != int64(size) {
			b.Fatal(n, err)
		}
		s3Get += time.Since(start)
		shared.cl.Remove(ctx, fmt.Sprintf("/%s/lib-%d", bucket, i))
		shared.cl.Remove(ctx, fmt.Sprintf("/%s/s3-%d", bucket, i))
	}
	mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(clientPut), "client-put-MB/s")
	b.ReportMetric(mbps(s3Put), "s3-put-MB/s")
	b.ReportMetric(mbps(clientGet), "client-get-MB/s")
	b.ReportMetric(mbps(s3Get), "s3-get-MB/s")
	b.ReportMetric(100*clientPut.Seconds()/s3Put.Seconds(), "put-%-of-client")
	b.ReportMetric(100*clientGet.Seconds()/s3Get.Seconds(), "get-%-of-client")
}

// BenchmarkSmallPuts runs 4 KiB PutObjects from 16 concurrent clients and
// reports ops/s and the 99th percentile latency.
func BenchmarkSmallPuts(b *testing.B) {
	const workers = 16
	bucket := benchBucket(b, "bench-small")
	c := benchSDK()
	data := pattern(4<<10, 3)
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				key := fmt.Sprintf("d%d/k%d", i%64, i)
				t0 := time.Now()
				if _, err := c.PutObject(context.Background(), &awss3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
					b.Error(err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkListObjectsV2 lists a bucket of 10,000 keys (in 10 prefixes,
// written through the client library) to the end, 1,000 keys a page.
func BenchmarkListObjectsV2(b *testing.B) {
	const keys = 10000
	bucket := benchBucket(b, "bench-list")
	ctx := context.Background()
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				f, err := shared.cl.Create(ctx, fmt.Sprintf("/%s/p%d/key-%05d", bucket, i%10, i))
				if err == nil {
					err = f.Close()
				}
				if err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for p := 0; p < 10; p++ {
		if err := shared.cl.Mkdir(ctx, fmt.Sprintf("/%s/p%d", bucket, p), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < keys; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	c := benchSDK()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		p := awss3.NewListObjectsV2Paginator(c, &awss3.ListObjectsV2Input{Bucket: &bucket})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				b.Fatal(err)
			}
			n += len(out.Contents)
		}
		if n != keys {
			b.Fatalf("listed %d keys, want %d", n, keys)
		}
	}
}
