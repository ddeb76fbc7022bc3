package client

import (
	"bytes"
	"testing"
)

// TestClearHoles: what no piece covers is zeroed, what pieces cover is
// left for the slices to fill, whatever order the pieces come in.
func TestClearHoles(t *testing.T) {
	tests := []struct {
		name   string
		off    int64
		n      int
		pieces [][2]int64 // file offsets
		want   string     // x: left alone, 0: zeroed
	}{
		{"no pieces", 100, 6, nil, "000000"},
		{"covered", 100, 6, [][2]int64{{100, 106}}, "xxxxxx"},
		{"hole in the middle", 0, 8, [][2]int64{{5, 8}, {0, 2}}, "xx000xxx"},
		{"holes at both ends", 10, 8, [][2]int64{{12, 15}}, "00xxx000"},
		{"adjacent pieces", 0, 6, [][2]int64{{2, 4}, {0, 2}, {4, 6}}, "xxxxxx"},
		{"several holes", 0, 10, [][2]int64{{8, 9}, {1, 3}, {4, 5}}, "0xx0x000x0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := bytes.Repeat([]byte{'x'}, tt.n)
			var pieces []piece
			for _, p := range tt.pieces {
				pieces = append(pieces, piece{from: p[0], to: p[1]})
			}
			clearHoles(dst, tt.off, pieces)
			got := string(bytes.ReplaceAll(dst, []byte{0}, []byte{'0'}))
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
