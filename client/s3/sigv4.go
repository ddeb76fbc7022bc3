package s3

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	sigAlgorithm   = "AWS4-HMAC-SHA256"
	amzDateLayout  = "20060102T150405Z"
	unsignedBody   = "UNSIGNED-PAYLOAD"
	streamSigned   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamSignedTr = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamUnsigned = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	emptySHA256    = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// maxPresignExpiry is the longest validity S3 grants a presigned URL.
	maxPresignExpiry = 7 * 24 * time.Hour
)

// signer holds what a verified signature leaves for checking the rest of
// the request: aws-chunked bodies sign each chunk with the same key,
// chained from the request's signature.
type signer struct {
	key       []byte // the derived signing key
	amzDate   string
	scope     string
	signature string // the request's (seed) signature
	// payload is the request's x-amz-content-sha256: a hex digest,
	// UNSIGNED-PAYLOAD or one of the STREAMING-* values. "" for anonymous
	// requests.
	payload string
}

// authenticate checks r's signature. It returns the signer (nil for an
// anonymous request the configuration allows) or the S3 error to answer.
func (h *Handler) authenticate(r *http.Request) (*signer, *apiError) {
	auth := r.Header.Get("Authorization")
	q := r.URL.Query()
	switch {
	case strings.HasPrefix(auth, sigAlgorithm+" "):
		return h.verifyHeader(r, auth[len(sigAlgorithm)+1:])
	case q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Signature"):
		return h.verifyQuery(r, q)
	case strings.HasPrefix(auth, "AWS "), auth == "" && q.Has("AWSAccessKeyId") && q.Has("Signature"):
		// Old clients sign with Version 2, in the header or (presigned
		// URLs, as the aws CLI v1 makes by default) in the query: say so
		// rather than answer a bare AccessDenied.
		return nil, invalidRequest("Signature Version 2 is not supported; sign requests with AWS Signature Version 4.")
	case auth != "":
		return nil, malformedAuth(false, "Unsupported Authorization header.")
	case h.cfg.AllowAnonymous:
		return nil, nil
	}
	return nil, errAccessDenied
}

// credentialScope is the parsed "AK/date/region/s3/aws4_request".
type credentialScope struct {
	accessKey, date, region string
}

func parseCredential(s string, query bool) (credentialScope, *apiError) {
	parts := strings.Split(s, "/")
	if len(parts) != 5 || parts[0] == "" || len(parts[1]) != 8 || parts[2] == "" || parts[4] != "aws4_request" {
		return credentialScope{}, malformedAuth(query, "The credential is malformed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
	}
	if parts[3] != "s3" {
		return credentialScope{}, malformedAuth(query, "The credential's service must be s3.")
	}
	return credentialScope{accessKey: parts[0], date: parts[1], region: parts[2]}, nil
}

func (c credentialScope) scope() string {
	return c.date + "/" + c.region + "/s3/aws4_request"
}

func (h *Handler) verifyHeader(r *http.Request, params string) (*signer, *apiError) {
	var cred, signed, sig string
	for _, p := range strings.Split(params, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return nil, malformedAuth(false, "The Authorization header is malformed.")
		}
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			sig = v
		}
	}
	if cred == "" || signed == "" || sig == "" {
		return nil, malformedAuth(false, "The Authorization header needs Credential, SignedHeaders and Signature.")
	}
	cs, aerr := parseCredential(cred, false)
	if aerr != nil {
		return nil, aerr
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		if d, err := http.ParseTime(r.Header.Get("Date")); err == nil {
			amzDate = d.UTC().Format(amzDateLayout)
		}
	}
	t, err := time.Parse(amzDateLayout, amzDate)
	if err != nil {
		return nil, errorf("AccessDenied", http.StatusForbidden, "AWS authentication requires a valid Date or x-amz-date header.")
	}
	if amzDate[:8] != cs.date {
		return nil, malformedAuth(false, "The credential's date does not match the request's date.")
	}
	if d := h.cfg.Now().Sub(t); d > h.cfg.MaxClockSkew || d < -h.cfg.MaxClockSkew {
		return nil, errTimeSkewed
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		return nil, invalidRequest("Missing required header for this request: x-amz-content-sha256.")
	}
	if !validPayloadHash(payload) {
		return nil, errorf("InvalidArgument", http.StatusBadRequest, "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid SHA-256 hex digest.")
	}
	return h.checkSignature(r, cs, amzDate, signed, sig, payload, nil, false)
}

func (h *Handler) verifyQuery(r *http.Request, q url.Values) (*signer, *apiError) {
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return nil, malformedAuth(true, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\".")
	}
	cred, signed, sig := q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature")
	amzDate, expires := q.Get("X-Amz-Date"), q.Get("X-Amz-Expires")
	if cred == "" || signed == "" || sig == "" || amzDate == "" || expires == "" {
		return nil, malformedAuth(true, "Query-string authentication requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders and X-Amz-Expires parameters.")
	}
	cs, aerr := parseCredential(cred, true)
	if aerr != nil {
		return nil, aerr
	}
	t, err := time.Parse(amzDateLayout, amzDate)
	if err != nil || amzDate[:8] != cs.date {
		return nil, malformedAuth(true, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\" and match the credential's date.")
	}
	secs, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || secs < 0 {
		return nil, malformedAuth(true, "X-Amz-Expires should be a number.")
	}
	if time.Duration(secs)*time.Second > maxPresignExpiry {
		return nil, malformedAuth(true, "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds.")
	}
	now := h.cfg.Now()
	if t.Sub(now) > h.cfg.MaxClockSkew {
		return nil, errorf("AccessDenied", http.StatusForbidden, "Request is not valid yet.")
	}
	if now.After(t.Add(time.Duration(secs) * time.Second)) {
		return nil, errRequestExpired
	}
	payload := unsignedBody
	if v := q.Get("X-Amz-Content-Sha256"); v != "" {
		payload = v
	}
	return h.checkSignature(r, cs, amzDate, signed, sig, payload, q, true)
}

// checkSignature recomputes the signature of r and compares it with sig.
// q is the query for presigned requests (whose X-Amz-Signature is left out
// of the canonical query), nil for header-signed ones.
func (h *Handler) checkSignature(r *http.Request, cs credentialScope, amzDate, signedHeaders, sig, payload string, q url.Values, query bool) (*signer, *apiError) {
	secret, ok := h.creds[cs.accessKey]
	if !ok {
		return nil, errInvalidAccessKey
	}
	names := strings.Split(signedHeaders, ";")
	if !slices.Contains(names, "host") {
		return nil, malformedAuth(query, "The host header must be signed.")
	}
	if q == nil {
		q = r.URL.Query()
	}
	key := signingKey(secret, cs)
	// Clients sign the path encoded as SigV4 says; a few sign it as they
	// sent it (leaving sub-delimiters such as '+' or '!' unencoded), so
	// that form is accepted too.
	uris := []string{uriEncode(r.URL.Path, false)}
	if raw, _, _ := strings.Cut(r.RequestURI, "?"); raw != "" && raw != uris[0] && strings.HasPrefix(raw, "/") {
		uris = append(uris, raw)
	}
	for _, uri := range uris {
		canon := canonicalRequest(r, uri, q, names, signedHeaders, payload)
		want := hex.EncodeToString(hmacSHA256(key, stringToSign(amzDate, cs.scope(), canon)))
		if hmac.Equal([]byte(want), []byte(sig)) {
			return &signer{key: key, amzDate: amzDate, scope: cs.scope(), signature: sig, payload: payload}, nil
		}
	}
	return nil, errSignatureMismatch
}

func validPayloadHash(p string) bool {
	switch p {
	case unsignedBody, streamSigned, streamSignedTr, streamUnsigned:
		return true
	}
	if len(p) != 64 {
		return false
	}
	_, err := hex.DecodeString(p)
	return err == nil
}

// canonicalRequest builds SigV4's canonical request of r, whose path is
// uri in canonical form.
func canonicalRequest(r *http.Request, uri string, q url.Values, names []string, signedHeaders, payload string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(uri)
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(q))
	b.WriteByte('\n')
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(':')
		b.WriteString(canonicalHeader(r, n))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(signedHeaders)
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String()
}

func canonicalQuery(q url.Values) string {
	type kv struct{ k, v string }
	var pairs []kv
	for k, vs := range q {
		if k == "X-Amz-Signature" {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, kv{uriEncode(k, true), uriEncode(v, true)})
		}
	}
	slices.SortFunc(pairs, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// canonicalHeader is the canonical value of the header name (lower case)
// of r: its values trimmed, inner runs of spaces collapsed, joined by
// commas.
func canonicalHeader(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		vals = r.Header.Values(name)
		if len(vals) == 0 && r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	case "transfer-encoding":
		vals = r.Header.Values(name)
		if len(vals) == 0 {
			vals = r.TransferEncoding
		}
	default:
		vals = r.Header.Values(name)
	}
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ",")
}

// uriEncode percent-encodes s as SigV4 does: every byte but the
// unreserved characters, and '/' too when encodeSlash is set.
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' && !encodeSlash {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func stringToSign(amzDate, scope, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return sigAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

func signingKey(secret string, cs credentialScope) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), cs.date)
	k = hmacSHA256(k, cs.region)
	k = hmacSHA256(k, "s3")
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
