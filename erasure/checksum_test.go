package erasure

import (
	"crypto/sha256"
	"errors"
	"math/rand"
	"strings"
	"testing"
)

func TestChecksumMatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	for _, n := range []int{0, 1, 55, 56, 63, 64, 65, 1000, 4096, 1<<20 + 3} {
		b := randBytes(rng, n)
		if Checksum(b) != sha256.Sum256(b) {
			t.Errorf("Checksum of %d bytes differs from crypto/sha256", n)
		}
	}
}

func TestVerify(t *testing.T) {
	data := []byte("cell contents")
	sum := Checksum(data)
	if err := Verify(data, sum[:]); err != nil {
		t.Fatalf("Verify good data: %v", err)
	}
	bad := append([]byte(nil), data...)
	bad[3] ^= 1
	err := Verify(bad, sum[:])
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "13 bytes hash to") {
		t.Errorf("Verify corrupt data: %v", err)
	}
	for _, s := range [][]byte{nil, sum[:31], append(sum[:], 0)} {
		if err := Verify(data, s); !errors.Is(err, ErrChecksum) {
			t.Errorf("Verify with a %d-byte sum: %v", len(s), err)
		}
	}
}

func TestChecksumCells(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	for _, sizes := range [][]int{
		nil,
		{0},
		{100, 200, 0, 5},               // small: sequential
		{1 << 20, 1 << 20, 1 << 20, 5}, // large: parallel
		{1 << 18, 3, 1 << 19, 7, 1 << 17, 1 << 20, 1, 2, 3, 4, 5},
	} {
		cells := make([][]byte, len(sizes))
		for i, n := range sizes {
			cells[i] = randBytes(rng, n)
		}
		sums := make([][ChecksumSize]byte, len(cells))
		if err := ChecksumCells(cells, sums); err != nil {
			t.Fatal(err)
		}
		for i, c := range cells {
			if sums[i] != sha256.Sum256(c) {
				t.Errorf("sizes %v: sum %d wrong", sizes, i)
			}
		}
	}
	err := ChecksumCells(make([][]byte, 3), make([][ChecksumSize]byte, 2))
	if err == nil || !strings.Contains(err.Error(), "2 sums for 3 cells") {
		t.Errorf("length mismatch: %v", err)
	}
}
