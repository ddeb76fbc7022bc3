package s3

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
)

const (
	// maxChunkLine bounds a chunk header or trailer line of an aws-chunked
	// body.
	maxChunkLine = 4096
	// maxTrailers bounds the trailer lines after the last chunk, empty
	// ones included.
	maxTrailers = 16
)

var errChunkFormat = invalidRequest("The aws-chunked body is malformed.")

// chunkedReader decodes an aws-chunked body: chunks "<hex size>[;
// chunk-signature=<sig>]\r\n<data>\r\n", a last chunk of size 0 and
// optional trailer lines ("name:value\r\n", ending with an empty line).
// With a signer, every chunk's signature is checked against the chain
// that starts at the request's signature, and so is the trailer's
// (x-amz-trailer-signature). A chunk's data is handed on before its
// signature is checked at its end; callers must treat the body as
// untrusted until Read returns io.EOF, which they do by writing it aside
// and making it visible only afterwards.
type chunkedReader struct {
	r       *bufio.Reader
	s       *signer
	prevSig string
	left    int64 // bytes left in the current chunk
	inChunk bool
	sig     string    // the current chunk's claimed signature
	h       hash.Hash // the current chunk's SHA-256 (signed bodies)
	trailer http.Header
	err     error // sticky
}

func newChunkedReader(r io.Reader, s *signer) *chunkedReader {
	c := &chunkedReader{r: bufio.NewReaderSize(r, maxChunkLine+64), s: s, trailer: http.Header{}}
	if s != nil {
		c.prevSig = s.signature
		c.h = sha256.New()
	}
	return c
}

// Trailer returns the trailer lines read after the last chunk; complete
// only once Read has returned io.EOF.
func (c *chunkedReader) Trailer() http.Header { return c.trailer }

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if !c.inChunk {
		if err := c.nextChunk(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		c.err = err
		return n, err
	}
	if c.left == 0 {
		c.inChunk = false
		if err := c.endChunk(); err != nil {
			c.err = err
			return n, err
		}
	}
	return n, nil
}

// line reads one CRLF-terminated line, without the CRLF.
func (c *chunkedReader) line() (string, error) {
	l, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errChunkFormat
	}
	if err == io.EOF {
		return "", io.ErrUnexpectedEOF
	}
	if err != nil {
		return "", err
	}
	s := string(l)
	if !strings.HasSuffix(s, "\r\n") {
		return "", errChunkFormat
	}
	return s[:len(s)-2], nil
}

func (c *chunkedReader) nextChunk() error {
	l, err := c.line()
	if err != nil {
		return err
	}
	sizeStr, ext, _ := strings.Cut(l, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
	if err != nil || size < 0 || size > maxChunkSize {
		return errChunkFormat
	}
	if c.s != nil {
		sig, ok := strings.CutPrefix(ext, "chunk-signature=")
		if !ok || len(sig) != 64 {
			return errChunkFormat
		}
		c.sig = sig
		c.h.Reset()
	}
	if size > 0 {
		c.left, c.inChunk = size, true
		return nil
	}
	// The last chunk: check its signature, then read the trailer.
	if err := c.checkChunkSig(); err != nil {
		return err
	}
	return c.readTrailer()
}

// readTrailer reads the trailer lines, "name:value", that follow the last
// chunk up to the end of the body. Clients differ in how they write them:
// the AWS SDKs end each line with CRLF and the trailer with an empty
// line; minio-go ends the lines with a bare LF and puts an empty line
// between the checksums and the trailer signature, and another after. So
// lines may end either way, empty lines are skipped, and the trailer ends
// with the body. In a signed body, every trailer line must be covered by
// the trailer signature that follows it.
func (c *chunkedReader) readTrailer() error {
	var canonTrailer strings.Builder
	signed := false
	for lines := 0; ; lines++ {
		l, err := c.trailerLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if lines == maxTrailers {
			return errChunkFormat
		}
		if l == "" {
			continue
		}
		if signed {
			return errChunkFormat // nothing may follow the signature
		}
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			return errChunkFormat
		}
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.TrimSpace(val)
		if name == "x-amz-trailer-signature" {
			if c.s == nil {
				return errChunkFormat
			}
			sum := sha256.Sum256([]byte(canonTrailer.String()))
			want := hex.EncodeToString(hmacSHA256(c.s.key, "AWS4-HMAC-SHA256-TRAILER\n"+c.s.amzDate+"\n"+c.s.scope+"\n"+c.prevSig+"\n"+hex.EncodeToString(sum[:])))
			if !hmac.Equal([]byte(want), []byte(val)) {
				return errSignatureMismatch
			}
			signed = true
			continue
		}
		canonTrailer.WriteString(name + ":" + val + "\n")
		c.trailer.Add(name, val)
	}
	if c.s != nil && len(c.trailer) > 0 && !signed {
		// A signed body's trailer is signed too: unsigned lines could
		// be anyone's.
		return errSignatureMismatch
	}
	return io.EOF
}

// trailerLine reads one trailer line, ending in LF or CRLF (or at the
// end of the body), without its end. It returns io.EOF at the end of the
// body.
func (c *chunkedReader) trailerLine() (string, error) {
	l, err := c.r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", errChunkFormat
	case err == io.EOF && len(l) == 0:
		return "", io.EOF
	case err != nil && err != io.EOF:
		return "", err
	}
	s := strings.TrimSuffix(string(l), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// endChunk reads the CRLF after a chunk's data and checks its signature.
func (c *chunkedReader) endChunk() error {
	l, err := c.line()
	if err != nil {
		return err
	}
	if l != "" {
		return errChunkFormat
	}
	return c.checkChunkSig()
}

func (c *chunkedReader) checkChunkSig() error {
	if c.s == nil {
		return nil
	}
	want := hex.EncodeToString(hmacSHA256(c.s.key, "AWS4-HMAC-SHA256-PAYLOAD\n"+c.s.amzDate+"\n"+c.s.scope+"\n"+c.prevSig+"\n"+emptySHA256+"\n"+hex.EncodeToString(c.h.Sum(nil))))
	if !hmac.Equal([]byte(want), []byte(c.sig)) {
		return errSignatureMismatch
	}
	c.prevSig = c.sig
	return nil
}

// maxChunkSize bounds one chunk of an aws-chunked body; clients send 64
// KiB to a few MiB.
const maxChunkSize = 1 << 30
