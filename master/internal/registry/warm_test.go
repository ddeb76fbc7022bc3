package registry

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/master/internal/placement"
)

// hb is newTest's heartbeat interval.
const hb = time.Second

func TestWarm(t *testing.T) {
	tests := []struct {
		name     string
		expected []string
		register []string // servers that register
		report   bool     // and complete their full reports
		after    time.Duration
		want     bool
	}{
		{name: "new cluster, fresh", after: 0, want: false},
		{name: "new cluster after one interval", after: hb, want: true},
		{name: "new cluster, registered and reported early", register: []string{"a"}, report: true, after: hb / 2, want: false},
		{name: "report pending after one interval", register: []string{"a"}, after: hb, want: false},
		{name: "expected all back before an interval", expected: []string{"a", "b"}, register: []string{"a", "b"}, report: true, want: true},
		{name: "expected server missing after an interval", expected: []string{"a", "b"}, register: []string{"a"}, report: true, after: 2 * hb, want: false},
		{name: "expected server missing for good", expected: []string{"a", "b"}, register: []string{"a"}, report: true, after: MaxWarmIntervals * hb, want: true},
		{name: "expected back, report pending", expected: []string{"a"}, register: []string{"a"}, after: 2 * hb, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, clock := newTest(t)
			for _, id := range tc.register {
				if _, err := r.Register(id, id+":1", "", 100, 100); err != nil {
					t.Fatal(err)
				}
				if tc.report {
					if err := r.FullReport(id, nil, true); err != nil {
						t.Fatal(err)
					}
				}
			}
			clock.Advance(tc.after)
			if r.IsWarm() {
				t.Fatal("warm before asked")
			}
			if got := r.Warm(tc.expected); got != tc.want {
				t.Fatalf("Warm() = %v, want %v", got, tc.want)
			}
			if r.IsWarm() != tc.want {
				t.Fatal("IsWarm disagrees with Warm")
			}
			if !r.Started().Equal(epoch) {
				t.Fatalf("Started() = %v, want %v", r.Started(), epoch)
			}
		})
	}
}

func TestWarmLatches(t *testing.T) {
	r, clock := newTest(t)
	clock.Advance(hb)
	if !r.Warm(nil) {
		t.Fatal("not warm after an interval")
	}
	if _, err := r.Register("cs-1", "a:1", "", 100, 100); err != nil {
		t.Fatal(err)
	}
	if !r.Warm([]string{"cs-9"}) {
		t.Fatal("a registration with its report pending made a warm registry cold again")
	}
}

// TestWarmMissing: servers Warm expected and stopped waiting for stay in
// the placement view as unknown, so a placement short of them is retried,
// until DeadAfter from the registry's start makes them dead; one that
// registers late appears once, as itself.
func TestWarmMissing(t *testing.T) {
	r, clock := newTest(t)
	clock.Advance(MaxWarmIntervals * hb)
	mustRegister(t, r, "a")
	if err := r.FullReport("a", nil, true); err != nil {
		t.Fatal(err)
	}
	if !r.Warm([]string{"a", "b", "c"}) {
		t.Fatal("not warm after MaxWarmIntervals")
	}
	view := func() string {
		out := ""
		for _, c := range r.View() {
			out += fmt.Sprintf("%s:%v ", c.ID, c.Status)
		}
		return out
	}
	want := func(w string) {
		t.Helper()
		if got := view(); got != w {
			t.Fatalf("view %q, want %q", got, w)
		}
	}
	want(fmt.Sprintf("a:%v b:%v c:%v ", placement.Live, placement.StatusUnknown, placement.StatusUnknown))
	mustRegister(t, r, "c")
	want(fmt.Sprintf("a:%v b:%v c:%v ", placement.Live, placement.StatusUnknown, placement.Live))
	clock.Advance(time.Minute) // DeadAfter in newTest
	if got := view(); !strings.Contains(got, fmt.Sprintf("b:%v ", placement.Dead)) {
		t.Fatalf("view %q: b not dead after DeadAfter", got)
	}
	// Removed (dfs admin remove), it is no longer expected at all (a and
	// c have been silent for as long, and are dead too).
	r.Remove("b")
	want(fmt.Sprintf("a:%v c:%v ", placement.Dead, placement.Dead))
}
