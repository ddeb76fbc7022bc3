package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnfs/cairn/master/internal/placement"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newTest returns a registry with a 1 s heartbeat (Suspect after 3 s), Dead
// after one minute, and its fake clock.
func newTest(t *testing.T) (*Registry, *FakeClock) {
	t.Helper()
	clock := NewFakeClock(epoch)
	r, err := New(Config{HeartbeatInterval: time.Second, DeadAfter: time.Minute, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return r, clock
}

func mustRegister(t *testing.T, r *Registry, id string) {
	t.Helper()
	if _, err := r.Register(id, id+":7100", "rack-"+id, 1000, 900); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, r *Registry, id string) Server {
	t.Helper()
	s, ok := r.Get(id)
	if !ok {
		t.Fatalf("Get(%q): not registered", id)
	}
	return s
}

func shardsOn(t *testing.T, r *Registry, id string) []ShardID {
	t.Helper()
	got, err := r.ShardsOn(id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func ids(sh ...uint64) []ShardID {
	out := make([]ShardID, 0, len(sh)/2)
	for i := 0; i+1 < len(sh); i += 2 {
		out = append(out, ShardID{Slice: sh[i], Index: uint32(sh[i+1])})
	}
	return out
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config // Clock ignored
		wantErr string
	}{
		{name: "defaults", want: Config{HeartbeatInterval: 3 * time.Second, SuspectAfter: 9 * time.Second, DeadAfter: 10 * time.Minute}},
		{name: "suspect follows interval", cfg: Config{HeartbeatInterval: 2 * time.Second}, want: Config{HeartbeatInterval: 2 * time.Second, SuspectAfter: 6 * time.Second, DeadAfter: 10 * time.Minute}},
		{name: "explicit", cfg: Config{HeartbeatInterval: time.Second, SuspectAfter: 5 * time.Second, DeadAfter: time.Minute}, want: Config{HeartbeatInterval: time.Second, SuspectAfter: 5 * time.Second, DeadAfter: time.Minute}},
		{name: "dead not after suspect", cfg: Config{SuspectAfter: time.Minute, DeadAfter: time.Minute}, wantErr: "DeadAfter 1m0s must exceed SuspectAfter 1m0s"},
		{name: "negative", cfg: Config{DeadAfter: -time.Second}, wantErr: "negative duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := cfg.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
				}
				if _, err := New(tt.cfg); err == nil {
					t.Fatal("New accepted an invalid config")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Clock == nil {
				t.Fatal("Validate left Clock nil")
			}
			cfg.Clock = nil
			if cfg != tt.want {
				t.Fatalf("Validate() filled %+v, want %+v", cfg, tt.want)
			}
		})
	}
}

// TestLiveness steps the clock to each boundary and one nanosecond short of
// it.
func TestLiveness(t *testing.T) {
	tests := []struct {
		name  string
		since time.Duration // from the last heartbeat
		want  State
	}{
		{"just heard", 0, Live},
		{"one interval", time.Second, Live},
		{"just before suspect", 3*time.Second - 1, Live},
		{"suspect", 3 * time.Second, Suspect},
		{"just before dead", time.Minute - 1, Suspect},
		{"dead", time.Minute, Dead},
		{"long dead", 24 * time.Hour, Dead},
		{"clock went backwards", -time.Hour, Live},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, clock := newTest(t)
			mustRegister(t, r, "a")
			clock.Advance(10 * time.Second)
			if err := r.Heartbeat("a", 1000, 800, 0, nil, nil); err != nil {
				t.Fatal(err)
			}
			heard := clock.Now()
			clock.Advance(tt.since)
			s := get(t, r, "a")
			if s.State != tt.want {
				t.Fatalf("%v after the last heartbeat: %v, want %v", tt.since, s.State, tt.want)
			}
			if !s.LastHeartbeat.Equal(heard) {
				t.Fatalf("LastHeartbeat %v, want %v", s.LastHeartbeat, heard)
			}
			if got := r.Servers()[0].State; got != tt.want {
				t.Fatalf("Servers() state %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLivenessTransitions(t *testing.T) {
	r, clock := newTest(t)
	mustRegister(t, r, "a")
	steps := []struct {
		advance   time.Duration
		heartbeat bool
		want      State
	}{
		{0, false, Live}, // registering counts as a heartbeat
		{3 * time.Second, false, Suspect},
		{0, true, Live}, // a suspect server comes back
		{time.Minute, false, Dead},
		{time.Hour, true, Live}, // so does a dead one
		{2 * time.Second, true, Live},
		{2 * time.Second, true, Live}, // regular heartbeats keep it live
		{3*time.Second - 1, false, Live},
		{1, false, Suspect},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		if st.heartbeat {
			if err := r.Heartbeat("a", 1000, 900, 0, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := get(t, r, "a").State; got != st.want {
			t.Fatalf("step %d: %v, want %v", i, got, st.want)
		}
	}
}

func TestUnknown(t *testing.T) {
	r, _ := newTest(t)
	mustRegister(t, r, "a")
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"heartbeat", func() error { return r.Heartbeat("b", 1, 1, 0, ids(1, 0), nil) }, `registry: heartbeat: unknown chunkserver "b"`},
		{"full report", func() error { return r.FullReport("b", ids(1, 0), true) }, `registry: full report: unknown chunkserver "b"`},
		{"shards on", func() error { _, err := r.ShardsOn("b"); return err }, `registry: shards on: unknown chunkserver "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrUnknown) {
				t.Fatalf("got %v, want an error wrapping ErrUnknown", err)
			}
			if err.Error() != tt.want {
				t.Fatalf("got %q, want %q", err, tt.want)
			}
			if _, ok := r.Get("b"); ok {
				t.Fatal("the unknown server was registered by the failed call")
			}
			if h := r.Holders(ShardID{1, 0}); len(h) != 0 {
				t.Fatalf("Holders = %v after a rejected call", h)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	r, clock := newTest(t)
	prev, err := r.Register("a", "10.0.0.1:7100", "r1", 1000, 900)
	if err != nil || prev != "" {
		t.Fatalf("first Register = %q, %v; want \"\", nil", prev, err)
	}
	if err := r.FullReport("a", ids(1, 0, 2, 0), true); err != nil {
		t.Fatal(err)
	}
	if err := r.Heartbeat("a", 1000, 800, 4, nil, nil); err != nil {
		t.Fatal(err)
	}
	// A half-finished report from the old process.
	if err := r.FullReport("a", ids(9, 9), false); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour) // dead by now

	// The server restarts on a new address and rack.
	prev, err = r.Register("a", "10.0.0.2:7100", "r2", 2000, 1500)
	if err != nil || prev != "10.0.0.1:7100" {
		t.Fatalf("re-Register = %q, %v; want the old address", prev, err)
	}
	s := get(t, r, "a")
	want := Server{
		ID: "a", Address: "10.0.0.2:7100", Rack: "r2", State: Live,
		Capacity: 2000, Free: 1500, Shards: 2, Reported: false,
		Registered: clock.Now(), LastHeartbeat: clock.Now(),
	}
	if s != want {
		t.Fatalf("after re-register:\n got %+v\nwant %+v", s, want)
	}
	// The old process's batch was dropped with the registration.
	if err := r.FullReport("a", ids(3, 0), true); err != nil {
		t.Fatal(err)
	}
	if got := shardsOn(t, r, "a"); !slices.Equal(got, ids(3, 0)) {
		t.Fatalf("inventory %v, want only the new report's [3/0]", got)
	}

	tests := []struct {
		name, id, addr, want string
	}{
		{"empty ID", "", "x:1", "registry: register: empty chunkserver ID"},
		{"empty address", "b", "", `registry: register "b": empty address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Register(tt.id, tt.addr, "", 1, 1)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Register(%q, %q) = %v, want %q", tt.id, tt.addr, err, tt.want)
			}
		})
	}
	if n := len(r.Servers()); n != 1 {
		t.Fatalf("%d servers after rejected registrations, want 1", n)
	}
}

func TestHeartbeatDeltas(t *testing.T) {
	type hb struct{ added, removed []ShardID }
	tests := []struct {
		name  string
		beats []hb
		want  []ShardID
	}{
		{"nothing", []hb{{}}, ids()},
		{"adds", []hb{{added: ids(5, 1, 1, 0)}, {added: ids(1, 3)}}, ids(1, 0, 1, 3, 5, 1)},
		{"add then remove", []hb{{added: ids(1, 0, 2, 0)}, {removed: ids(1, 0)}}, ids(2, 0)},
		{"remove missing is harmless", []hb{{added: ids(1, 0)}, {removed: ids(7, 7)}}, ids(1, 0)},
		{"added twice counts once", []hb{{added: ids(1, 0, 1, 0)}, {added: ids(1, 0)}}, ids(1, 0)},
		{"same beat: added then removed", []hb{{added: ids(1, 0, 2, 0), removed: ids(1, 0)}}, ids(2, 0)},
		{"re-added later", []hb{{added: ids(1, 0)}, {removed: ids(1, 0)}, {added: ids(1, 0)}}, ids(1, 0)},
		{"large slice IDs", []hb{{added: ids(1<<63|1<<32|7, 31, 1<<32, 0, 0xffffffff, 2)}}, ids(0xffffffff, 2, 1<<32, 0, 1<<63|1<<32|7, 31)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTest(t)
			mustRegister(t, r, "a")
			for _, b := range tt.beats {
				if err := r.Heartbeat("a", 1000, 900, 2, b.added, b.removed); err != nil {
					t.Fatal(err)
				}
			}
			if got := shardsOn(t, r, "a"); !slices.Equal(got, tt.want) {
				t.Fatalf("inventory %v, want %v", got, tt.want)
			}
			s := get(t, r, "a")
			if s.Shards != len(tt.want) || s.ActiveStreams != 2 {
				t.Fatalf("snapshot Shards=%d ActiveStreams=%d, want %d and 2", s.Shards, s.ActiveStreams, len(tt.want))
			}
		})
	}
}

func TestFullReport(t *testing.T) {
	type step struct {
		report    []ShardID // a batch
		last      bool
		abort     bool
		added     []ShardID // a heartbeat instead of a batch
		removed   []ShardID
		want      []ShardID // inventory after the step
		reported  bool
		isBeat    bool
		wantAfter string
	}
	tests := []struct {
		name  string
		start []ShardID // inventory from heartbeats before the report
		steps []step
	}{
		{
			name:  "single batch replaces",
			start: ids(1, 0, 2, 0),
			steps: []step{{report: ids(2, 0, 3, 0), last: true, want: ids(2, 0, 3, 0), reported: true}},
		},
		{
			name:  "batches accumulate until last",
			start: ids(9, 0),
			steps: []step{
				{report: ids(1, 0, 1, 1), want: ids(9, 0)},
				{report: ids(2, 0), want: ids(9, 0)},
				{report: ids(3, 0), last: true, want: ids(1, 0, 1, 1, 2, 0, 3, 0), reported: true},
			},
		},
		{
			name:  "empty report empties",
			start: ids(1, 0),
			steps: []step{{last: true, want: ids(), reported: true}},
		},
		{
			name:  "deltas during the report survive it",
			start: ids(1, 0, 2, 0),
			steps: []step{
				{report: ids(1, 0, 2, 0), want: ids(1, 0, 2, 0)},
				// The store wrote 8/0 and deleted 1/0 after listing them.
				{isBeat: true, added: ids(8, 0), removed: ids(1, 0), want: ids(2, 0, 8, 0)},
				{report: ids(5, 0), last: true, want: ids(2, 0, 5, 0, 8, 0), reported: true},
				// Afterwards deltas are plain deltas again.
				{isBeat: true, removed: ids(8, 0), want: ids(2, 0, 5, 0), reported: true},
			},
		},
		{
			name:  "later delta wins",
			start: ids(),
			steps: []step{
				{report: ids(4, 0), want: ids()},
				{isBeat: true, removed: ids(4, 0), want: ids()},
				{isBeat: true, added: ids(4, 0), want: ids(4, 0)},
				{last: true, want: ids(4, 0), reported: true},
			},
		},
		{
			name:  "abort discards the batches",
			start: ids(1, 0),
			steps: []step{
				{report: ids(6, 0), want: ids(1, 0)},
				{abort: true, want: ids(1, 0)},
				{report: ids(7, 0), last: true, want: ids(7, 0), reported: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTest(t)
			mustRegister(t, r, "a")
			if err := r.Heartbeat("a", 1000, 900, 0, tt.start, nil); err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				switch {
				case st.abort:
					r.AbortFullReport("a")
				case st.isBeat:
					if err := r.Heartbeat("a", 1000, 900, 0, st.added, st.removed); err != nil {
						t.Fatal(err)
					}
				default:
					if err := r.FullReport("a", st.report, st.last); err != nil {
						t.Fatal(err)
					}
				}
				if got := shardsOn(t, r, "a"); !slices.Equal(got, st.want) {
					t.Fatalf("step %d: inventory %v, want %v", i, got, st.want)
				}
				if got := get(t, r, "a").Reported; got != st.reported {
					t.Fatalf("step %d: Reported %v, want %v", i, got, st.reported)
				}
			}
		})
	}
}

func TestHolders(t *testing.T) {
	r, clock := newTest(t)
	for _, id := range []string{"c", "a", "b"} {
		mustRegister(t, r, id)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.FullReport("a", ids(1, 0, 1, 1), true))
	must(r.FullReport("b", ids(1, 2), true))
	// c holds a stale copy of 1/0 that repair rebuilt elsewhere.
	must(r.Heartbeat("c", 1000, 900, 0, ids(1, 0), nil))
	clock.Advance(time.Hour) // every server dead: Holders does not filter

	tests := []struct {
		shard ShardID
		want  []string
	}{
		{ShardID{1, 0}, []string{"a", "c"}},
		{ShardID{1, 1}, []string{"a"}},
		{ShardID{1, 2}, []string{"b"}},
		{ShardID{1, 3}, nil},
		{ShardID{2, 0}, nil},
	}
	for _, tt := range tests {
		if got := r.Holders(tt.shard); !slices.Equal(got, tt.want) {
			t.Errorf("Holders(%v) = %v, want %v", tt.shard, got, tt.want)
		}
	}
	if !r.Remove("c") {
		t.Fatal("Remove(c) = false")
	}
	if got := r.Holders(ShardID{1, 0}); !slices.Equal(got, []string{"a"}) {
		t.Errorf("after Remove(c): Holders = %v, want [a]", got)
	}
	if r.Remove("c") {
		t.Fatal("second Remove(c) = true")
	}
	if err := r.Heartbeat("c", 1, 1, 0, nil, nil); !errors.Is(err, ErrUnknown) {
		t.Fatalf("heartbeat after Remove: %v, want ErrUnknown", err)
	}
}

func TestDrain(t *testing.T) {
	r, clock := newTest(t)
	// A drain recorded before the server registers (after a leader change).
	if r.Drain("a") {
		t.Fatal("Drain of an unregistered ID reported it registered")
	}
	mustRegister(t, r, "a")
	mustRegister(t, r, "b")

	tests := []struct {
		name       string
		act        func()
		wantA      Server // only State, Draining checked
		status     string
		candidateA placement.Status
	}{
		{"drained before registering", func() {}, Server{State: Live, Draining: true}, "draining", placement.Draining},
		{"survives re-register", func() { mustRegister(t, r, "a") }, Server{State: Live, Draining: true}, "draining", placement.Draining},
		{"suspect and draining", func() { clock.Advance(3 * time.Second) }, Server{State: Suspect, Draining: true}, "draining", placement.Draining},
		{"dead and draining", func() { clock.Advance(time.Minute) }, Server{State: Dead, Draining: true}, "dead", placement.Dead},
		{"back and undrained", func() {
			if !r.Undrain("a") {
				t.Fatal("Undrain(a) = false")
			}
			if err := r.Heartbeat("a", 1000, 900, 0, nil, nil); err != nil {
				t.Fatal(err)
			}
		}, Server{State: Live}, "live", placement.Live},
		{"suspect", func() { clock.Advance(3 * time.Second) }, Server{State: Suspect}, "suspect", placement.Suspect},
		{"drained again", func() {
			if err := r.Heartbeat("a", 1000, 900, 0, nil, nil); err != nil {
				t.Fatal(err)
			}
			if !r.Drain("a") {
				t.Fatal("Drain(a) = false")
			}
		}, Server{State: Live, Draining: true}, "draining", placement.Draining},
	}
	for _, tt := range tests {
		tt.act()
		a := get(t, r, "a")
		if a.State != tt.wantA.State || a.Draining != tt.wantA.Draining {
			t.Fatalf("%s: a is %v draining=%v, want %v draining=%v", tt.name, a.State, a.Draining, tt.wantA.State, tt.wantA.Draining)
		}
		if got := a.Status(); got != tt.status {
			t.Fatalf("%s: Status() = %q, want %q", tt.name, got, tt.status)
		}
		view := r.View()
		if len(view) != 2 || view[0].ID != "a" || view[1].ID != "b" {
			t.Fatalf("%s: View() = %+v, want a then b", tt.name, view)
		}
		if view[0].Status != tt.candidateA {
			t.Fatalf("%s: a's candidate status %v, want %v", tt.name, view[0].Status, tt.candidateA)
		}
	}
	if r.Undrain("zz") {
		t.Fatal("Undrain of an unknown ID reported it registered")
	}
}

// TestViewFeedsPlacement checks the registry's view through placement: only
// the live, undrained server can be chosen, and the error counts the rest.
func TestViewFeedsPlacement(t *testing.T) {
	r, clock := newTest(t)
	for _, id := range []string{"dead", "draining", "live", "suspect"} {
		mustRegister(t, r, id)
	}
	clock.Advance(time.Minute)
	for _, id := range []string{"draining", "live"} {
		if err := r.Heartbeat(id, 1000, 900, 0, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute - 3*time.Second)
	if err := r.Heartbeat("suspect", 1000, 900, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Second) // dead: 2 min; draining, live: 1 min; suspect: 3 s
	if err := r.Heartbeat("live", 1000, 900, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Heartbeat("draining", 1000, 900, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	r.Drain("draining")
	view := r.View()
	rng := rand.New(rand.NewPCG(1, 2))
	_, err := placement.Place(view, 2, placement.Spec{Layout: "Replicated(2)"}, rng)
	want := "placement: Replicated(2) needs 2 chunkservers, 1 is eligible (1 suspect, 1 dead, 1 draining)"
	if err == nil || err.Error() != want {
		t.Fatalf("Place(2) = %v, want %q", err, want)
	}
	for range 20 {
		got, err := placement.Place(view, 1, placement.Spec{Layout: "Replicated(1)"}, rng)
		if err != nil || !slices.Equal(got, []string{"live"}) {
			t.Fatalf("Place(1) = %v, %v; want [live]", got, err)
		}
	}
}

func TestServersSnapshot(t *testing.T) {
	r, clock := newTest(t)
	for i := 5; i > 0; i-- {
		id := fmt.Sprintf("cs%d", i)
		mustRegister(t, r, id)
		if err := r.Heartbeat(id, uint64(i)*1000, uint64(i)*100, uint32(i), ids(uint64(i), 0, uint64(i), 1), nil); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	got := r.Servers()
	if len(got) != 5 {
		t.Fatalf("%d servers, want 5", len(got))
	}
	for i, s := range got {
		n := i + 1
		if s.ID != fmt.Sprintf("cs%d", n) {
			t.Fatalf("Servers()[%d] = %q, not in ID order", i, s.ID)
		}
		// cs5 registered first, 5 s ago: suspect; cs1 1 s ago.
		wantState := Live
		if n >= 3 {
			wantState = Suspect
		}
		if s.Capacity != uint64(n)*1000 || s.Free != uint64(n)*100 || s.ActiveStreams != uint32(n) || s.Shards != 2 || s.State != wantState {
			t.Fatalf("Servers()[%d] = %+v", i, s)
		}
	}
	// A snapshot is a copy: later changes do not show through.
	if err := r.Heartbeat("cs1", 1, 1, 0, ids(9, 9), nil); err != nil {
		t.Fatal(err)
	}
	if got[0].Shards != 2 || got[0].Free != 100 {
		t.Fatalf("snapshot changed under the caller: %+v", got[0])
	}
}

// TestConcurrent exercises every method from several goroutines; run with
// -race.
func TestConcurrent(t *testing.T) {
	r, clock := newTest(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("cs%d", g)
			for i := range 200 {
				if _, err := r.Register(id, id+":1", "", 1000, 500); err != nil {
					t.Error(err)
					return
				}
				sh := ids(uint64(i), uint64(g))
				if err := r.Heartbeat(id, 1000, 500, 1, sh, nil); err != nil {
					t.Error(err)
					return
				}
				if err := r.FullReport(id, sh, i%3 == 0); err != nil {
					t.Error(err)
					return
				}
				r.Drain(id)
				r.Holders(sh[0])
				r.Servers()
				r.View()
				if _, err := r.ShardsOn(id); err != nil {
					t.Error(err)
					return
				}
				r.Undrain(id)
				clock.Advance(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if n := len(r.Servers()); n != 4 {
		t.Fatalf("%d servers, want 4", n)
	}
}

// TestInventoryMemory checks the memory promise for a server holding a
// million shards, reported in full and then changed by heartbeats.
func TestInventoryMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a million-shard inventory")
	}
	const n = 1_000_000
	r, _ := newTest(t)
	mustRegister(t, r, "big")
	batch := make([]ShardID, 0, 10_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range uint64(n) {
		batch = append(batch, ShardID{Slice: i / 6 * 7, Index: uint32(i % 6)})
		if len(batch) == cap(batch) {
			if err := r.FullReport("big", batch, i == n-1); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	// Heartbeats then add 50,000 shards and remove 50,000.
	for i := range uint64(50) {
		var added, removed []ShardID
		for j := range uint64(1000) {
			added = append(added, ShardID{Slice: (i*1000+j)*7 + 3})
			removed = append(removed, ShardID{Slice: (i*1000 + j) * 7, Index: 1})
		}
		if err := r.Heartbeat("big", 1, 1, 0, added, removed); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s := get(t, r, "big"); s.Shards != n {
		t.Fatalf("%d shards, want %d", s.Shards, n)
	}
	perShard := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	t.Logf("inventory: %.1f bytes per shard", perShard)
	if perShard > 20 {
		t.Fatalf("inventory uses %.1f bytes per shard, want at most 20", perShard)
	}
	runtime.KeepAlive(r)
}
