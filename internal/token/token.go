// Package token mints and checks shard access tokens: HMAC-SHA256 over what a
// token allows (operation, slice, shard, size limit, expiry), signed with the
// cluster key, in the manner of HDFS block access tokens. The master mints
// them; chunkservers check them. Both sides share only the key.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cairnfs/cairn/proto/chunkpb"
)

// MinKeyLen is the shortest cluster key accepted.
const MinKeyLen = 16

// Errors returned by Verify. Callers map them to gRPC PermissionDenied.
var (
	ErrMissing  = errors.New("token: missing")
	ErrBadMAC   = errors.New("token: bad signature")
	ErrExpired  = errors.New("token: expired")
	ErrMismatch = errors.New("token: does not cover this request")
)

// Signer mints and verifies tokens with one cluster key. It is safe for
// concurrent use.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer for key, which must be at least MinKeyLen bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("token: cluster key is %d bytes, need at least %d", len(key), MinKeyLen)
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// Mint returns a signed token for op on shard index of slice, allowing up to
// maxBytes, valid until expires.
func (s *Signer) Mint(op chunkpb.TokenOp, slice uint64, index uint32, maxBytes uint64, expires time.Time) *chunkpb.Token {
	t := &chunkpb.Token{
		Op:              op,
		SliceId:         slice,
		ShardIndex:      index,
		MaxBytes:        maxBytes,
		ExpiresUnixNano: expires.UnixNano(),
	}
	t.Mac = s.mac(t)
	return t
}

// Verify checks that t is signed with the cluster key, has not expired at
// now, and allows op on shard index of slice for a shard of length bytes.
func (s *Signer) Verify(t *chunkpb.Token, op chunkpb.TokenOp, slice uint64, index uint32, length uint64, now time.Time) error {
	if t == nil {
		return ErrMissing
	}
	if !hmac.Equal(t.GetMac(), s.mac(t)) {
		return ErrBadMAC
	}
	if now.UnixNano() > t.GetExpiresUnixNano() {
		return fmt.Errorf("%w at %s", ErrExpired, time.Unix(0, t.GetExpiresUnixNano()).UTC().Format(time.RFC3339))
	}
	switch {
	case t.GetOp() != op:
		return fmt.Errorf("%w: token is for %s, request is %s", ErrMismatch, t.GetOp(), op)
	case t.GetSliceId() != slice || t.GetShardIndex() != index:
		return fmt.Errorf("%w: token is for shard %d/%d", ErrMismatch, t.GetSliceId(), t.GetShardIndex())
	case length > t.GetMaxBytes():
		return fmt.Errorf("%w: %d bytes exceeds the token's limit of %d", ErrMismatch, length, t.GetMaxBytes())
	}
	return nil
}

func (s *Signer) mac(t *chunkpb.Token) []byte {
	var buf [4 + 8 + 4 + 8 + 8]byte
	binary.BigEndian.PutUint32(buf[0:], uint32(t.GetOp()))
	binary.BigEndian.PutUint64(buf[4:], t.GetSliceId())
	binary.BigEndian.PutUint32(buf[12:], t.GetShardIndex())
	binary.BigEndian.PutUint64(buf[16:], t.GetMaxBytes())
	binary.BigEndian.PutUint64(buf[24:], uint64(t.GetExpiresUnixNano()))
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("cairn-shard-token-v1"))
	h.Write(buf[:])
	return h.Sum(nil)
}
