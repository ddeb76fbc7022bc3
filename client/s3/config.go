package s3

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultRegion       = "us-east-1"
	DefaultMaxClockSkew = 15 * time.Minute
	// DefaultMinPartSize is S3's smallest part other than an upload's
	// last.
	DefaultMinPartSize = 5 << 20
	// DefaultMaxObjectSize bounds one PutObject or UploadPart body, as
	// S3 does (5 GiB).
	DefaultMaxObjectSize = 5 << 30
	// DefaultStagingTTL is how long a PutObject or CopyObject staging
	// file may go unmodified before a Server removes it (see
	// Handler.SweepStaging).
	DefaultStagingTTL = 24 * time.Hour
)

// Credential is one access key and its secret.
type Credential struct {
	AccessKey string
	SecretKey string
}

// Config configures a Handler.
type Config struct {
	// Credentials are the keys requests may be signed with. At least one
	// unless AllowAnonymous.
	Credentials []Credential
	// AllowAnonymous lets unsigned requests through (with full access).
	AllowAnonymous bool
	// Region is what GetBucketLocation answers (DefaultRegion). Signatures
	// are checked against the region in their own scope.
	Region string
	// Domain, if set, enables virtual-hosted-style requests: a request
	// to "<bucket>.<Domain>" (any port) addresses that bucket, its path
	// being the key. Path-style requests work either way.
	Domain string
	// MaxClockSkew bounds the difference between a signed request's time
	// and the gateway's (DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// MinPartSize is the smallest part CompleteMultipartUpload accepts
	// before the last (DefaultMinPartSize); tests lower it.
	MinPartSize int64
	// MaxObjectSize bounds one PUT body (DefaultMaxObjectSize).
	MaxObjectSize int64
	// StagingTTL is how long an object's staging file may go unmodified
	// before Server.Run's sweeper removes it (DefaultStagingTTL; negative:
	// never). Writing a body commits at least every 64 MiB, so only an
	// upload cut short by a crash or a lost master is that old.
	StagingTTL time.Duration
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// Now reads the clock (signature times, Last-Modified of new
	// uploads); nil means time.Now.
	Now func() time.Time
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if len(c.Credentials) == 0 && !c.AllowAnonymous {
		return errors.New("s3: no credentials and anonymous access not allowed")
	}
	for _, cr := range c.Credentials {
		if cr.AccessKey == "" || cr.SecretKey == "" || strings.ContainsAny(cr.AccessKey, "/ \t") {
			return fmt.Errorf("s3: invalid credential %q: need an access key without '/' or blanks and a secret", cr.AccessKey)
		}
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.MaxClockSkew <= 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.MinPartSize <= 0 {
		c.MinPartSize = DefaultMinPartSize
	}
	if c.MaxObjectSize <= 0 {
		c.MaxObjectSize = DefaultMaxObjectSize
	}
	if c.StagingTTL == 0 {
		c.StagingTTL = DefaultStagingTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// LoadCredentials reads a credentials file: one "ACCESS_KEY SECRET_KEY"
// pair a line, separated by blanks; blank lines and lines starting with
// '#' are ignored.
func LoadCredentials(path string) ([]Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("s3: credentials: %w", err)
	}
	defer f.Close()
	creds, err := ParseCredentials(f)
	if err != nil {
		return nil, fmt.Errorf("s3: credentials %s: %w", path, err)
	}
	return creds, nil
}

// ParseCredentials reads credentials in LoadCredentials' format from r.
func ParseCredentials(r io.Reader) ([]Credential, error) {
	var out []Credential
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"ACCESS_KEY SECRET_KEY\"", n)
		}
		out = append(out, Credential{AccessKey: fields[0], SecretKey: fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no credentials")
	}
	return out, nil
}

// GenerateCredentials returns a random access key (20 upper-case letters
// and digits, as AWS's) and secret (40 characters).
func GenerateCredentials() Credential {
	return Credential{
		AccessKey: randomString(20, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
		SecretKey: randomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
	}
}

// randomString returns n characters drawn from alphabet, whose length
// must divide 256 so that every character is equally likely.
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	rand.Read(b) // never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
