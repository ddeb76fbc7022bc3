package token

import (
	"errors"
	"testing"
	"time"

	"github.com/cairnfs/cairn/proto/chunkpb"
)

func TestVerify(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	s, err := NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSigner([]byte("fedcba9876543210fedc"))
	now := time.Unix(1_700_000_000, 0)
	good := s.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1000, now.Add(time.Minute))
	tampered := s.Mint(chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1000, now.Add(time.Minute))
	tampered.MaxBytes = 1 << 40

	tests := []struct {
		name   string
		signer *Signer
		tok    *chunkpb.Token
		op     chunkpb.TokenOp
		slice  uint64
		index  uint32
		length uint64
		now    time.Time
		want   error
	}{
		{"ok", s, good, chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1000, now, nil},
		{"missing", s, nil, chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1, now, ErrMissing},
		{"other key", other, good, chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1, now, ErrBadMAC},
		{"tampered", s, tampered, chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1, now, ErrBadMAC},
		{"expired", s, good, chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1, now.Add(2 * time.Minute), ErrExpired},
		{"wrong op", s, good, chunkpb.TokenOp_TOKEN_OP_DELETE, 7, 3, 0, now, ErrMismatch},
		{"wrong slice", s, good, chunkpb.TokenOp_TOKEN_OP_WRITE, 8, 3, 1, now, ErrMismatch},
		{"wrong shard", s, good, chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 2, 1, now, ErrMismatch},
		{"too long", s, good, chunkpb.TokenOp_TOKEN_OP_WRITE, 7, 3, 1001, now, ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.signer.Verify(tt.tok, tt.op, tt.slice, tt.index, tt.length, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestShortKey(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("NewSigner accepted a 5-byte key")
	}
}
