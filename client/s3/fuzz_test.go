package s3_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzGateway sends signed requests of arbitrary method, path, query,
// headers and body to the gateway over the shared cluster. Signing them
// gets them past authentication, so parsing and routing are what is
// exercised. Whatever the input, the answer is a well-formed response:
// never a panic, never a 500 (the cluster is healthy), and errors carry
// S3's XML with a request ID.
func FuzzGateway(f *testing.F) {
	f.Add("PUT", "/fuzz-bucket", "", "", []byte(nil))
	f.Add("PUT", "/fuzz-bucket/a/b", "", "Content-Type: text/plain\nX-Amz-Meta-A: b", []byte("data"))
	f.Add("GET", "/fuzz-bucket", "list-type=2&prefix=a/&delimiter=/&max-keys=1", "", []byte(nil))
	f.Add("GET", "/fuzz-bucket/a/b", "", "Range: bytes=1-2\nIf-None-Match: *", []byte(nil))
	f.Add("POST", "/fuzz-bucket", "delete", "", []byte("<Delete><Object><Key>a/b</Key></Object></Delete>"))
	f.Add("POST", "/fuzz-bucket/m", "uploads", "", []byte(nil))
	f.Add("POST", "/fuzz-bucket/m", "uploadId=0123456789ABCDEF0123456789ABCDEF", "", []byte("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"))
	f.Add("PUT", "/fuzz-bucket/c", "", "X-Amz-Copy-Source: /fuzz-bucket/a%2Fb?versionId=1", []byte(nil))
	f.Add("PUT", "/fuzz-bucket/d", "partNumber=0&uploadId=zz", "", []byte("x"))
	f.Add("GET", "/fuzz-bucket/../etc", "uploads&max-uploads=-1", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, path, query, headers string, body []byte) {
		u := shared.srv.URL + path
		if query != "" {
			u += "?" + query
		}
		r, err := http.NewRequest(method, u, bytes.NewReader(body))
		if err != nil || !strings.HasPrefix(r.URL.Path, "/") {
			return
		}
		for _, line := range strings.Split(headers, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if k = strings.TrimSpace(k); ok && k != "" && !strings.EqualFold(k, "Authorization") && !strings.EqualFold(k, "Content-Length") {
				r.Header.Set(k, strings.TrimSpace(v))
			}
		}
		payload := r.Header.Get("X-Amz-Content-Sha256")
		if payload == "" {
			payload = "UNSIGNED-PAYLOAD"
			r.Header.Set("X-Amz-Content-Sha256", payload)
		}
		signRequest(t, r, payload)
		rec := httptest.NewRecorder()
		shared.handler.ServeHTTP(rec, r)
		if rec.Code >= 500 && rec.Code != http.StatusNotImplemented {
			t.Fatalf("%s %s?%s: status %d: %s", method, path, query, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && method != http.MethodHead && !strings.Contains(rec.Body.String(), "<RequestId>") {
			t.Fatalf("%s %s?%s: error %d without S3 XML: %q", method, path, query, rec.Code, rec.Body.String())
		}
	})
}
