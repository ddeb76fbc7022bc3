package placement

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// FuzzPlace decodes a view and a spec from the fuzzer's bytes and checks
// that Place and Replace never panic and that every answer they give obeys
// the rules. Each 6-byte record of data is one server: rack, status, free
// space (2 bytes, in GiB) and capacity (2 bytes, in GiB).
func FuzzPlace(f *testing.F) {
	rec := func(rack, status byte, free, capacity uint16) []byte {
		b := []byte{rack, status, 0, 0, 0, 0}
		binary.LittleEndian.PutUint16(b[2:], free)
		binary.LittleEndian.PutUint16(b[4:], capacity)
		return b
	}
	var grid []byte
	for r := range byte(3) {
		for range 3 {
			grid = append(grid, rec(r, byte(Live), 900, 1000)...)
		}
	}
	f.Add(grid, uint8(6), uint64(1), uint16(10), uint16(0), uint16(100), uint8(0), uint8(2))
	f.Add(grid, uint8(9), uint64(2), uint16(0), uint16(0), uint16(0), uint8(0), uint8(0))
	f.Add(grid, uint8(10), uint64(3), uint16(0), uint16(0), uint16(0), uint8(0), uint8(0))
	f.Add(append(rec(0, byte(Dead), 1, 1), rec(1, byte(Live), 0, 0)...), uint8(1), uint64(4), uint16(0), uint16(0), uint16(0), uint8(0), uint8(0))
	f.Add([]byte{}, uint8(0), uint64(5), uint16(0), uint16(0), uint16(0), uint8(0), uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, n uint8, seed uint64, sizeGiB, reserveGiB, reservePermille uint16, exclude, index uint8) {
		var view []Candidate
		for i := 0; i+6 <= len(data) && len(view) < 64; i += 6 {
			view = append(view, Candidate{
				ID:       fmt.Sprintf("cs%d", len(view)),
				Rack:     fmt.Sprintf("r%d", data[i]%8),
				Status:   Status(data[i+1] % 6), // includes an out-of-range status
				Free:     uint64(binary.LittleEndian.Uint16(data[i+2:])) * gib,
				Capacity: uint64(binary.LittleEndian.Uint16(data[i+4:])) * gib,
			})
		}
		spec := Spec{
			Layout:    "fuzz",
			ShardSize: uint64(sizeGiB) * gib,
			Reserve:   Reserve{Bytes: uint64(reserveGiB) * gib, Fraction: float64(reservePermille) / 1000},
		}
		// exclude is a bit mask over the first 8 servers.
		for i := range min(8, len(view)) {
			if exclude&(1<<i) != 0 {
				spec.Exclude = append(spec.Exclude, view[i].ID)
			}
		}
		got, err := Place(view, int(n), spec, newRand(seed))
		if err != nil {
			var few *TooFewServersError
			if errors.As(err, &few) && few.Eligible >= int(n) {
				t.Fatalf("TooFewServersError with %d eligible for %d: %v", few.Eligible, n, err)
			}
			return
		}
		if err := checkPlace(view, int(n), spec, got); err != nil {
			t.Fatal(err)
		}
		if want := optimalMax(view, int(n), spec); maxLoad(view, got) != want {
			t.Fatalf("largest rack holds %d, optimum %d: %v", maxLoad(view, got), want, got)
		}
		idx := int(index) % len(got)
		sub, err := Replace(view, got, idx, spec, newRand(seed+1))
		if err != nil {
			if !errors.Is(err, ErrTooFewServers) {
				t.Fatalf("replace %d of %v: %v", idx, got, err)
			}
			return
		}
		if err := checkReplace(view, got, idx, spec, sub); err != nil {
			t.Fatal(err)
		}
	})
}

func maxLoad(view []Candidate, got []string) int {
	m := 0
	for _, l := range rackLoads(view, got) {
		m = max(m, l)
	}
	return m
}
