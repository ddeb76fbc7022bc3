package s3_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestDisconnectMidUpload(t *testing.T) {
	c := sdk(shared.srv, testSecretKey)
	b := newBucket(t, c, "disconnect-test")
	// Unsigned: the SDK's signer is not needed to send half a body, and an
	// anonymous request is refused before reading it; so sign a request
	// whose body will never be finished.
	r, _ := http.NewRequest(http.MethodPut, shared.srv.URL+"/"+b+"/partial", nil)
	r.ContentLength = 1 << 20
	r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	signRequest(t, r, "UNSIGNED-PAYLOAD")
	conn, err := net.Dial("tcp", shared.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", r.URL.RequestURI(), r.Host, r.ContentLength)
	for k, vs := range r.Header {
		fmt.Fprintf(&head, "%s: %s\r\n", k, vs[0])
	}
	head.WriteString("\r\n")
	conn.Write(head.Bytes())
	conn.Write(pattern(300<<10, 1))
	time.Sleep(50 * time.Millisecond) // let the gateway start writing
	conn.Close()

	// Nothing becomes visible, and the gateway removes what it wrote.
	ctx := ctxT(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("partial")}); code(err) != "NotFound" {
			t.Fatalf("HeadObject after a disconnect: %v", err)
		}
		entries, err := shared.cl.ReadDir(ctx, "/"+b+"/.cairn-multipart")
		if err == nil && len(entries) == 0 || errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hidden files left after a disconnect: %v, %v", entries, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOversizedHeaders(t *testing.T) {
	srv := &http.Server{Handler: shared.handler, MaxHeaderBytes: 8 << 10, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	defer func() { srv.Close(); wg.Wait() }()
	r, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	r.Header.Set("X-Amz-Meta-Huge", strings.Repeat("x", 64<<10))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d", resp.StatusCode)
	}
}
