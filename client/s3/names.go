package s3

import (
	"net/netip"
	"strings"
	"unicode/utf8"
)

const (
	// hiddenDir is each bucket's directory for uploads in progress and for
	// files being written before they are renamed into place. It is never
	// listed and refused as a key's first segment.
	hiddenDir = ".cairn-multipart"
	// maxKeyLen is S3's bound on a key's length in bytes.
	maxKeyLen = 1024
)

// validBucketName reports whether name follows S3's rules for bucket
// names: 3 to 63 lowercase letters, digits, dots and hyphens, beginning
// and ending with a letter or digit, no two adjacent dots, not an IPv4
// address, and none of the reserved prefixes and suffixes.
func validBucketName(name string) bool {
	if len(name) < 3 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '.' || c == '-':
			if i == 0 || i == len(name)-1 {
				return false
			}
		default:
			return false
		}
	}
	if strings.Contains(name, "..") || strings.Contains(name, ".-") || strings.Contains(name, "-.") {
		return false
	}
	if a, err := netip.ParseAddr(name); err == nil && a.Is4() {
		return false
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return false
		}
	}
	return true
}

// checkKey reports why key cannot name an object of the namespace, or
// nil if it can.
func checkKey(key string) *apiError {
	switch {
	case key == "":
		return invalidArgument("The object key must not be empty.")
	case len(key) > maxKeyLen:
		return errKeyTooLong
	case !utf8.ValidString(key):
		return invalidArgument("The object key must be valid UTF-8.")
	case strings.IndexByte(key, 0) >= 0:
		return invalidArgument("The object key must not contain a NUL byte.")
	}
	for i, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return invalidArgument("The object key must not contain an empty path segment (a leading, trailing or doubled '/').")
		case seg == "." || seg == "..":
			return invalidArgument("The object key must not contain a '.' or '..' path segment.")
		case i == 0 && seg == hiddenDir:
			return invalidArgument("The object key must not begin with the reserved name " + hiddenDir + ".")
		}
	}
	return nil
}

// bucketPath is the namespace path of bucket.
func bucketPath(bucket string) string { return "/" + bucket }

// objectPath is the namespace path of key in bucket; key must have passed
// checkKey.
func objectPath(bucket, key string) string { return "/" + bucket + "/" + key }

// hiddenPath is the path of name in bucket's hidden directory.
func hiddenPath(bucket string, name ...string) string {
	p := "/" + bucket + "/" + hiddenDir
	for _, n := range name {
		p += "/" + n
	}
	return p
}
