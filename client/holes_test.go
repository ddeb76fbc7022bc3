package client

import (
	"bytes"
	"testing"
)

// TestFillHoles: what no piece covers is filled from the inline bytes
// where they reach and zeroed beyond, what pieces cover is left for the
// slices to fill, whatever order the pieces come in.
func TestFillHoles(t *testing.T) {
	tests := []struct {
		name   string
		off    int64
		n      int
		pieces [][2]int64 // file offsets
		inline string
		want   string // x: left alone, 0: zeroed, other: from inline
	}{
		{"no pieces", 100, 6, nil, "", "000000"},
		{"covered", 100, 6, [][2]int64{{100, 106}}, "", "xxxxxx"},
		{"hole in the middle", 0, 8, [][2]int64{{5, 8}, {0, 2}}, "", "xx000xxx"},
		{"holes at both ends", 10, 8, [][2]int64{{12, 15}}, "", "00xxx000"},
		{"adjacent pieces", 0, 6, [][2]int64{{2, 4}, {0, 2}, {4, 6}}, "", "xxxxxx"},
		{"several holes", 0, 10, [][2]int64{{8, 9}, {1, 3}, {4, 5}}, "", "0xx0x000x0"},
		{"inline only", 0, 6, nil, "abcd", "abcd00"},
		{"inline under pieces", 0, 8, [][2]int64{{1, 3}}, "abcdef", "axxdef00"},
		{"read past the inline bytes", 4, 4, nil, "abcdef", "ef00"},
		{"read beyond the inline bytes", 10, 4, [][2]int64{{11, 12}}, "abcdef", "0x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := bytes.Repeat([]byte{'x'}, tt.n)
			var pieces []piece
			for _, p := range tt.pieces {
				pieces = append(pieces, piece{from: p[0], to: p[1]})
			}
			fillHoles(dst, tt.off, pieces, []byte(tt.inline))
			got := string(bytes.ReplaceAll(dst, []byte{0}, []byte{'0'}))
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
