package registry

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cairnfs/cairn/master/internal/placement"
)

// ShardID names shard Index of slice Slice, as chunkpb.ShardID does on the
// wire.
type ShardID struct {
	Slice uint64
	Index uint32
}

// State is a chunkserver's liveness, computed from the time since its last
// heartbeat (see the package comment). The zero State is not a valid
// liveness; it prints as "unknown".
type State uint8

// Liveness states, in order of increasing silence.
const (
	// Live: heartbeated within SuspectAfter.
	Live State = iota + 1
	// Suspect: silent for at least SuspectAfter but less than DeadAfter.
	// It takes no new shards but its shards are not yet repaired.
	Suspect
	// Dead: silent for at least DeadAfter; its shards are due for repair.
	Dead
)

// String returns "live", "suspect", "dead" or "unknown".
func (s State) String() string {
	switch s {
	case Live:
		return "live"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	}
	return "unknown"
}

// ErrUnknown is wrapped by the errors of operations on a chunkserver ID that
// is not registered: a heartbeat or full report from it means the master
// has forgotten it (after a leader change, or Remove), and the master
// answers by telling the chunkserver to register again.
var ErrUnknown = errors.New("registry: unknown chunkserver")

// unknownError names the operation and the ID; it matches ErrUnknown.
type unknownError struct{ op, id string }

func (e *unknownError) Error() string {
	return fmt.Sprintf("registry: %s: unknown chunkserver %q", e.op, e.id)
}

func (e *unknownError) Is(target error) bool { return target == ErrUnknown }

// Defaults for Config fields left zero.
const (
	// DefaultHeartbeatInterval is how often chunkservers are asked to
	// heartbeat.
	DefaultHeartbeatInterval = 3 * time.Second
	// DefaultSuspectHeartbeats is how many heartbeat intervals of silence
	// make a server Suspect: one late or lost heartbeat is not enough.
	DefaultSuspectHeartbeats = 3
	// DefaultDeadAfter is the repair grace: how long a server may be silent
	// before it is Dead and its shards are rebuilt elsewhere. It is long
	// enough that a reboot or a rolling upgrade does not start a repair
	// storm.
	DefaultDeadAfter = 10 * time.Minute
)

// Config configures a Registry. Zero fields take defaults (filled in by
// Validate); New calls Validate.
type Config struct {
	// HeartbeatInterval is how often chunkservers should heartbeat; the
	// master hands it out at registration. Default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// SuspectAfter is the silence after which a server is Suspect. Default
	// DefaultSuspectHeartbeats × HeartbeatInterval.
	SuspectAfter time.Duration
	// DeadAfter is the silence after which a server is Dead; it must exceed
	// SuspectAfter. Default DefaultDeadAfter.
	DeadAfter time.Duration
	// Clock supplies the time; nil means the system clock.
	Clock Clock
}

// Validate fills in defaults and reports negative durations or a DeadAfter
// not beyond SuspectAfter.
func (c *Config) Validate() error {
	if c.HeartbeatInterval < 0 || c.SuspectAfter < 0 || c.DeadAfter < 0 {
		return fmt.Errorf("registry: config: negative duration (heartbeat %v, suspect after %v, dead after %v)", c.HeartbeatInterval, c.SuspectAfter, c.DeadAfter)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.SuspectAfter == 0 {
		c.SuspectAfter = DefaultSuspectHeartbeats * c.HeartbeatInterval
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = DefaultDeadAfter
	}
	if c.DeadAfter <= c.SuspectAfter {
		return fmt.Errorf("registry: config: DeadAfter %v must exceed SuspectAfter %v", c.DeadAfter, c.SuspectAfter)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	return nil
}

// Server is a snapshot of one chunkserver, owned by the caller.
type Server struct {
	// ID names the chunkserver; stable across its restarts.
	ID string
	// Address is where it serves the Chunk service, as last registered.
	Address string
	// Rack is its failure domain; "" if it did not say.
	Rack string
	// State is its liveness at the time of the snapshot.
	State State
	// Draining is set while an operator drains it.
	Draining bool
	// Capacity and Free are the bytes it last reported.
	Capacity, Free uint64
	// ActiveStreams is the number of shard streams it last reported open.
	ActiveStreams uint32
	// Shards is the number of shards in its inventory.
	Shards int
	// Reported is whether a full report has completed since it last
	// registered. Until then its inventory is what an earlier
	// registration reported plus heartbeat deltas, and may be incomplete
	// or stale; the master asks for a report (full_report_wanted).
	Reported bool
	// Registered is when it last registered.
	Registered time.Time
	// LastHeartbeat is when it last registered or heartbeated, whichever
	// is later.
	LastHeartbeat time.Time
}

// Status returns the state shown to operators (ChunkserverInfo.state):
// "dead" if dead, else "draining" if draining, else "live" or "suspect".
func (s Server) Status() string {
	if s.Draining && s.State != Dead {
		return "draining"
	}
	return s.State.String()
}

// Candidate converts the snapshot into placement's view of it. A dead
// server is placement.Dead even if draining; otherwise draining wins over
// suspect, so a draining server is never eligible.
func (s Server) Candidate() placement.Candidate {
	c := placement.Candidate{ID: s.ID, Rack: s.Rack, Capacity: s.Capacity, Free: s.Free}
	switch {
	case s.State == Dead:
		c.Status = placement.Dead
	case s.Draining:
		c.Status = placement.Draining
	case s.State == Suspect:
		c.Status = placement.Suspect
	case s.State == Live:
		c.Status = placement.Live
	}
	return c
}

// server is the registry's record of one chunkserver. Guarded by
// Registry.mu.
type server struct {
	id, address, rack string
	capacity, free    uint64
	activeStreams     uint32
	registered        time.Time
	lastHeartbeat     time.Time
	reported          bool
	shards            shardSet
	// report is the full report being received, or nil.
	report *fullReport
}

// heardAt records contact at now. The clock is read before the lock is
// taken, so two concurrent heartbeats may arrive out of order; keeping the
// later time stops the older one from making the server look more silent
// than it is.
func (s *server) heardAt(now time.Time) {
	if now.After(s.lastHeartbeat) {
		s.lastHeartbeat = now
	}
}

// fullReport accumulates the batches of a full report until the last one.
type fullReport struct {
	// shards are the batches' shards in arrival order, duplicates and
	// all; the last batch sorts them once.
	shards []key
	// deltas records the heartbeat deltas that arrive while the report is
	// in progress: true for added, false for removed, the last one
	// winning. The chunkserver lists its store while it keeps writing and
	// deleting, so a batch may predate a change reported by heartbeat;
	// applying these on top of the report keeps such changes.
	deltas map[key]bool
}

// Registry holds the soft state of every registered chunkserver. Create it
// with New; it is safe for concurrent use.
type Registry struct {
	cfg Config // immutable after New
	// started is when New ran: for a new leader, when its registry began
	// refilling.
	started time.Time

	mu struct {
		sync.Mutex
		servers map[string]*server
		// draining holds drain marks by ID, apart from servers so a mark
		// can be set before the server registers and outlives a
		// re-registration.
		draining map[string]struct{}
		// warm latches Warm's answer once it is true.
		warm bool
		// missing are the servers Warm expected that had not registered
		// when it stopped waiting for them (see View).
		missing []string
	}
}

// New returns an empty Registry. It fails only if cfg is invalid.
func New(cfg Config) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Registry{cfg: cfg, started: cfg.Clock.Now()}
	r.mu.servers = make(map[string]*server)
	r.mu.draining = make(map[string]struct{})
	return r, nil
}

// Started returns when the registry was created.
func (r *Registry) Started() time.Time { return r.started }

// MaxWarmIntervals bounds, in heartbeat intervals, how long Warm waits
// for expected chunkservers that do not come back.
const MaxWarmIntervals = 5

// Warm reports whether the registry has refilled since it was created
// empty (at a leader change), so that its view of free space and liveness
// can be acted on. expected are the chunkservers the cluster is known to
// have (the master's directory). It is warm once every expected server
// has registered and every registered one has finished its full report —
// but never before one heartbeat interval if nothing is expected (a new
// cluster), and in any case after MaxWarmIntervals intervals, so a server
// that is gone for good holds nothing up for long. Once warm it stays
// warm.
func (r *Registry) Warm(expected []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.warm {
		return true
	}
	age := r.cfg.Clock.Now().Sub(r.started)
	refilled := true
	for _, sv := range r.mu.servers {
		refilled = refilled && sv.reported
	}
	for _, id := range expected {
		_, ok := r.mu.servers[id]
		refilled = refilled && ok
	}
	r.mu.warm = (refilled && (len(expected) > 0 || age >= r.cfg.HeartbeatInterval)) ||
		age >= MaxWarmIntervals*r.cfg.HeartbeatInterval
	if r.mu.warm {
		for _, id := range expected {
			if _, ok := r.mu.servers[id]; !ok {
				r.mu.missing = append(r.mu.missing, id)
			}
		}
	}
	return r.mu.warm
}

// IsWarm reports whether Warm has returned true.
func (r *Registry) IsWarm() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.warm
}

// HeartbeatInterval returns how often chunkservers should heartbeat (for
// RegisterResponse), after defaults.
func (r *Registry) HeartbeatInterval() time.Duration { return r.cfg.HeartbeatInterval }

// Register records a chunkserver joining, or rejoining after a restart or a
// leader change, and counts as a heartbeat. An ID already registered keeps
// its inventory (a restart rarely loses data, and the full report that
// follows corrects it) but takes the new address, rack and space, any full
// report in progress is abandoned (it came from the previous process), and
// Reported is cleared. It returns the address the ID was registered with
// before, or "" for a new ID, so the caller can log an address change.
//
// id and address must not be empty.
func (r *Registry) Register(id, address, rack string, capacity, free uint64) (prevAddress string, err error) {
	if id == "" {
		return "", errors.New("registry: register: empty chunkserver ID")
	}
	if address == "" {
		return "", fmt.Errorf("registry: register %q: empty address", id)
	}
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.mu.servers[id]
	if !ok {
		s = &server{id: id}
		r.mu.servers[id] = s
	} else {
		prevAddress = s.address
	}
	s.address, s.rack = address, rack
	s.capacity, s.free = capacity, free
	s.activeStreams = 0
	s.registered = now
	s.heardAt(now)
	s.reported = false
	s.report = nil
	return prevAddress, nil
}

// Heartbeat records a heartbeat: the server's space and open streams, and
// the shards it stored (added) and deleted (removed) since its previous
// heartbeat. added is applied before removed, so a shard in both ends up
// absent. Deltas that arrive while a full report is in progress also
// override that report when it completes.
//
// A heartbeat from an ID that is not registered returns an error wrapping
// ErrUnknown and changes nothing.
func (r *Registry) Heartbeat(id string, capacity, free uint64, activeStreams uint32, added, removed []ShardID) error {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.mu.servers[id]
	if !ok {
		return &unknownError{"heartbeat", id}
	}
	s.capacity, s.free, s.activeStreams = capacity, free, activeStreams
	s.heardAt(now)
	for _, sh := range added {
		k := keyOf(sh)
		s.shards.add(k)
		if s.report != nil {
			s.report.deltas[k] = true
		}
	}
	for _, sh := range removed {
		k := keyOf(sh)
		s.shards.remove(k)
		if s.report != nil {
			s.report.deltas[k] = false
		}
	}
	return nil
}

// FullReport receives one batch of a server's full shard inventory. Batches
// accumulate, and the batch with last set replaces the server's inventory
// atomically with everything the report listed (plus the heartbeat deltas
// that arrived meanwhile) and sets Reported. Until then queries see the old
// inventory. Batches in shard order, as a chunkserver's ListShards yields
// them, let the last batch skip sorting a million keys under the lock. A report whose stream breaks must be abandoned with
// AbortFullReport, or its batches would be merged into the next report.
//
// A batch from an ID that is not registered returns an error wrapping
// ErrUnknown and changes nothing.
func (r *Registry) FullReport(id string, shards []ShardID, last bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.mu.servers[id]
	if !ok {
		return &unknownError{"full report", id}
	}
	rep := s.report
	if rep == nil {
		rep = &fullReport{deltas: make(map[key]bool)}
		s.report = rep
	}
	for _, sh := range shards {
		rep.shards = append(rep.shards, keyOf(sh))
	}
	if !last {
		return nil
	}
	inv := newShardSet(rep.shards)
	for k, added := range rep.deltas {
		if added {
			inv.add(k)
		} else {
			inv.remove(k)
		}
	}
	s.shards = inv
	s.report = nil
	s.reported = true
	return nil
}

// AbortFullReport discards the batches of a full report in progress from
// id, if any; the inventory stays as it was. The master calls it when a
// FullReport stream fails.
func (r *Registry) AbortFullReport(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.mu.servers[id]; ok {
		s.report = nil
	}
}

// Drain marks id as draining: it takes no new shards, and repair moves its
// shards elsewhere. The mark is kept by ID even if id is not registered, so
// that it applies when the server registers; after a leader change the
// master re-applies its recorded drains to the new, empty registry before
// chunkservers come back. Drain reports whether id is registered.
func (r *Registry) Drain(id string) (registered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.draining[id] = struct{}{}
	_, registered = r.mu.servers[id]
	return registered
}

// Undrain clears id's drain mark, if any, and reports whether id is
// registered.
func (r *Registry) Undrain(id string) (registered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.mu.draining, id)
	_, registered = r.mu.servers[id]
	return registered
}

// Remove forgets id entirely — inventory, drain mark and all — after an
// operator decommissions it. If the server is in fact still running, its
// next heartbeat gets ErrUnknown and it registers afresh. Remove reports
// whether id was registered.
func (r *Registry) Remove(id string) (registered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.mu.draining, id)
	_, registered = r.mu.servers[id]
	delete(r.mu.servers, id)
	// Nor is it any longer a server Warm expected (see View).
	r.mu.missing = slices.DeleteFunc(r.mu.missing, func(m string) bool { return m == id })
	return registered
}

// Get returns a snapshot of server id, and false if it is not registered.
func (r *Registry) Get(id string) (Server, bool) {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.mu.servers[id]
	if !ok {
		return Server{}, false
	}
	return r.snapshotLocked(s, now), true
}

// Servers returns a snapshot of every registered server, ordered by ID, all
// with liveness computed at the same instant.
func (r *Registry) Servers() []Server {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	out := make([]Server, 0, len(r.mu.servers))
	for _, s := range r.mu.servers {
		out = append(out, r.snapshotLocked(s, now))
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Server) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// View returns every registered server as a placement candidate, and the
// servers Warm expected but stopped waiting for, ordered by ID: the input
// placement.Place and placement.Replace expect.
func (r *Registry) View() []placement.Candidate {
	servers := r.Servers()
	view := make([]placement.Candidate, len(servers))
	known := make(map[string]bool, len(servers))
	for i, s := range servers {
		view[i] = s.Candidate()
		known[s.ID] = true
	}
	// Servers Warm expected but stopped waiting for are unknown (a
	// placement short of them is worth retrying: on a loaded machine they
	// find a new leader late) until DeadAfter has passed since this
	// registry started, then dead.
	r.mu.Lock()
	missing := r.mu.missing
	r.mu.Unlock()
	dead := r.cfg.Clock.Now().Sub(r.started) >= r.cfg.DeadAfter
	for _, id := range missing {
		if known[id] {
			continue
		}
		c := placement.Candidate{ID: id}
		if dead {
			c.Status = placement.Dead
		}
		view = append(view, c)
	}
	if len(view) > len(servers) {
		slices.SortFunc(view, func(a, b placement.Candidate) int { return cmp.Compare(a.ID, b.ID) })
	}
	return view
}

// Holders returns the IDs of the registered servers whose inventory holds
// shard, in order, whatever their state; the caller filters by liveness
// with Get or Servers. It costs one lookup (a binary search) per registered
// server.
func (r *Registry) Holders(shard ShardID) []string {
	k := keyOf(shard)
	r.mu.Lock()
	var out []string
	for id, s := range r.mu.servers {
		if s.shards.has(k) {
			out = append(out, id)
		}
	}
	r.mu.Unlock()
	slices.Sort(out)
	return out
}

// Holds reports whether server id's inventory holds shard (false for an
// unregistered id): one binary search.
func (r *Registry) Holds(id string, shard ShardID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.mu.servers[id]
	return ok && s.shards.has(keyOf(shard))
}

// ShardsOn returns the inventory of server id in shard order (slice, then
// index), for planning the repair of a dead server or the emptying of a
// draining one. The slice is a fresh copy: for a million shards, 16 MB. An
// unregistered id returns an error wrapping ErrUnknown.
func (r *Registry) ShardsOn(id string) ([]ShardID, error) {
	r.mu.Lock()
	s, ok := r.mu.servers[id]
	if !ok {
		r.mu.Unlock()
		return nil, &unknownError{"shards on", id}
	}
	keys := s.shards.sorted()
	r.mu.Unlock()
	out := make([]ShardID, len(keys))
	for i, k := range keys {
		out[i] = k.shard()
	}
	return out, nil
}

// stateAt returns the liveness of a server last heard from at last, seen
// at now. A clock that went backwards (last in the future) reads as Live.
func (r *Registry) stateAt(last, now time.Time) State {
	switch e := now.Sub(last); {
	case e >= r.cfg.DeadAfter:
		return Dead
	case e >= r.cfg.SuspectAfter:
		return Suspect
	}
	return Live
}

func (r *Registry) snapshotLocked(s *server, now time.Time) Server {
	_, draining := r.mu.draining[s.id]
	return Server{
		ID:            s.id,
		Address:       s.address,
		Rack:          s.rack,
		State:         r.stateAt(s.lastHeartbeat, now),
		Draining:      draining,
		Capacity:      s.capacity,
		Free:          s.free,
		ActiveStreams: s.activeStreams,
		Shards:        s.shards.len(),
		Reported:      s.reported,
		Registered:    s.registered,
		LastHeartbeat: s.lastHeartbeat,
	}
}
