package client

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairnfs/cairn/erasure"
)

// TestResolveMatchesModel: for random stacks of refs and random reads,
// the pieces resolve returns are disjoint, cover exactly the bytes some
// ref covers, and take each byte from the newest ref covering it.
func TestResolveMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	infos := []*sliceInfo{{id: 1}, {id: 2}, {id: 3}}
	for round := range 300 {
		lay := &fileLayout{}
		for range 1 + r.IntN(60) {
			n := int64(1 + r.IntN(50))
			lay.refs = append(lay.refs, sliceRef{s: infos[r.IntN(3)], fileOff: int64(r.IntN(400)), sliceOff: int64(r.IntN(1000)), length: n})
		}
		off := int64(r.IntN(450))
		end := off + int64(r.IntN(100))
		// want[b]: "slice@offset" the byte comes from, "" for a hole.
		want := make([]string, end-off)
		for i := range lay.refs {
			ref := lay.refs[i]
			for b := max(ref.fileOff, off); b < min(ref.fileOff+ref.length, end); b++ {
				want[b-off] = fmt.Sprintf("%d@%d", ref.s.id, ref.sliceOff+b-ref.fileOff)
			}
		}
		got := make([]string, end-off)
		for _, pc := range lay.resolve(off, end) {
			if pc.from >= pc.to || pc.from < off || pc.to > end {
				t.Fatalf("round %d: piece [%d, %d) outside [%d, %d) or empty", round, pc.from, pc.to, off, end)
			}
			for b := pc.from; b < pc.to; b++ {
				if got[b-off] != "" {
					t.Fatalf("round %d: byte %d in two pieces", round, b)
				}
				got[b-off] = fmt.Sprintf("%d@%d", pc.ref.s.id, pc.sliceOff()+b-pc.from)
			}
		}
		for b := range want {
			if got[b] != want[b] {
				t.Fatalf("round %d: byte %d from %q, want %q", round, off+int64(b), got[b], want[b])
			}
		}
	}
}

// TestSpans: pieces of one slice within a cell of each other are fetched
// as one span, whatever their file order; farther apart, from another
// slice, or past maxSpan, they are not.
func TestSpans(t *testing.T) {
	const cell = 64 << 10
	a := &sliceInfo{id: 1, layout: erasure.RS(4, 2).WithCellSize(cell)}
	b := &sliceInfo{id: 2, layout: erasure.RS(4, 2).WithCellSize(cell)}
	pc := func(s *sliceInfo, fileOff, sliceOff, n int64) piece {
		return piece{ref: &sliceRef{s: s, fileOff: fileOff, sliceOff: sliceOff, length: n}, from: fileOff, to: fileOff + n}
	}
	for _, tc := range []struct {
		name   string
		pieces []piece
		want   string // spans as slice:[from,to)/pieces
	}{
		{"one", []piece{pc(a, 0, 0, 10)}, "1:[0,10)/1"},
		{"near, out of order", []piece{pc(a, 100, 8192, 4096), pc(a, 0, 0, 4096), pc(a, 50, 4096, 100)}, "1:[0,12288)/3"},
		{"a cell apart", []piece{pc(a, 0, 0, 4096), pc(a, 4096, 4096+cell, 4096)}, "1:[0,73728)/2"},
		{"farther", []piece{pc(a, 0, 0, 4096), pc(a, 4096, 4097+cell, 4096)}, "1:[0,4096)/1 1:[69633,73729)/1"},
		{"two slices", []piece{pc(a, 0, 0, 10), pc(b, 10, 10, 10), pc(a, 20, 20, 10)}, "1:[0,30)/2 2:[10,20)/1"},
		{"past maxSpan", []piece{pc(a, 0, 0, maxSpan-10), pc(a, maxSpan, maxSpan-5, 10)}, fmt.Sprintf("1:[0,%d)/1 1:[%d,%d)/1", maxSpan-10, maxSpan-5, maxSpan+5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			for i, sp := range spans(tc.pieces) {
				if i > 0 {
					got += " "
				}
				got += fmt.Sprintf("%d:[%d,%d)/%d", sp.s.id, sp.from, sp.to, len(sp.pieces))
			}
			if got != tc.want {
				t.Errorf("spans %s, want %s", got, tc.want)
			}
		})
	}
}
