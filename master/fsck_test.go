package master

import (
	"testing"

	"github.com/cairnfs/cairn/master/internal/repair"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// TestSliceHealth: fsck calls a slice lost only when it cannot be read
// even if every late server answers again.
func TestSliceHealth(t *testing.T) {
	const (
		healthy  = masterpb.FsckResponse_HEALTH_HEALTHY
		degraded = masterpb.FsckResponse_HEALTH_DEGRADED
		lost     = masterpb.FsckResponse_HEALTH_LOST
	)
	for _, tc := range []struct {
		name                        string
		readable, waiting, lostN, k int
		want                        masterpb.FsckResponse_Health
	}{
		{"all readable", 6, 0, 0, 4, healthy},
		{"two lost", 4, 0, 2, 4, degraded},
		{"three lost", 3, 0, 3, 4, lost},
		{"three late", 3, 3, 0, 4, degraded},
		{"two lost, one late", 3, 1, 2, 4, degraded},
		{"three lost, one late", 2, 1, 3, 4, lost},
		{"all late", 0, 6, 0, 4, degraded},
		{"replicas: one left", 1, 0, 2, 1, degraded},
		{"replicas: none left", 0, 0, 3, 1, lost},
	} {
		h := repair.Health{Readable: tc.readable, Waiting: tc.waiting, Needed: tc.k, Total: tc.readable + tc.waiting + tc.lostN}
		for i := range tc.lostN {
			h.Lost = append(h.Lost, uint32(i))
		}
		if got := sliceHealth(h); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
